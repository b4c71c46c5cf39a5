"""Benchmark: ingestion and retrieval, Doc Bot vs the seed recipe (the peer), in one run, side by side.

Corpus: Git's HTML documentation (`apt-get install -y git-doc`: /usr/share/doc/git-doc, 242 pages).
Questions: ../shared/eval/git_qa.jsonl (50 questions, each with the page that answers it).
Held-out: --docs /usr/share/doc/zsh-common/html --questions bench/data/zsh_qa.jsonl (zsh-doc, 40 questions).

peer    = the seed recipe: pages as text (BeautifulSoup get_text), RecursiveCharacterTextSplitter(1024, 40),
          sentence-transformers all-MiniLM-L6-v2 (HuggingFaceEmbeddings, float32), LangChain's Milvus store
          with its defaults (drop and rebuild), dense search;
Doc Bot = docbot_lib.ingest + docbot_lib.store: main content only, structure-aware token-sized chunks with
          title/section headers, the same model (bf16 where the CPU has it), hybrid dense + BM25 with weighted
          RRF; and, from the same collection, dense search only.
Both write to their own Milvus Lite database. Prints, for each: pages, chunks, ingest wall time,
chunks/s, hit@4, hit@10, MRR@10, p50 search latency (query embedding included); for Doc Bot also the
unchanged re-ingest time. Ranks count chunks.

    .venv/bin/python bench/ingest_retrieval.py [--docs DIR] [--questions FILE] [--dtype auto|float32|bfloat16]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peer(docs: Path, questions, db: str) -> dict:
    from bs4 import BeautifulSoup
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_milvus import Milvus
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from docbot_lib.embeddings import model_path

    start = time.perf_counter()
    pages = [Document(BeautifulSoup(p.read_bytes(), "lxml").get_text(), metadata={"source": str(p.relative_to(docs))})
             for p in sorted(docs.glob("**/*.html"))]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1024, chunk_overlap=40).split_documents(pages)
    embeddings = HuggingFaceEmbeddings(model_name=model_path("all-MiniLM-L6-v2"))
    store = Milvus.from_documents(chunks, embeddings, connection_args={"uri": db}, collection_name="peer",
                                  drop_old=True)
    ingest_s = time.perf_counter() - start
    ranked, latencies = [], []
    store.similarity_search("warm up", k=10)
    for q in questions:
        t = time.perf_counter()
        hits = store.similarity_search(q.question, k=10)
        latencies.append(time.perf_counter() - t)
        ranked.append([h.metadata["source"] for h in hits])
    return {"pages": len(pages), "chunks": len(chunks), "ingest_s": ingest_s, "ranked": ranked,
            "latencies": latencies}


def docbot(docs: Path, questions, db: str, dtype: str) -> dict:
    from docbot_lib.ingest import ingest
    from docbot_lib.settings import Settings
    from docbot_lib.store import ChunkStore

    settings = Settings.load(milvus_uri=db, embedding_dtype=dtype)
    start = time.perf_counter()
    report = ingest(settings, [str(docs)], collection="docbot", pattern="**/*.html", progress=False)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    again = ingest(settings, [str(docs)], collection="docbot", pattern="**/*.html", progress=False)
    reingest_s = time.perf_counter() - start
    assert again.chunks_written == 0 and again.unchanged == report.new, str(again)

    from docbot_lib.embeddings import get_embeddings

    embedder = get_embeddings(settings)
    store = ChunkStore(settings, "docbot", create=False)
    store.search(embedder.embed_query("warm up"), "warm up", k=10)
    runs = {}
    for hybrid in (True, False):
        ranked, latencies = [], []
        for q in questions:
            t = time.perf_counter()
            hits = store.search(embedder.embed_query(q.question), q.question, k=10, hybrid=hybrid)
            latencies.append(time.perf_counter() - t)
            ranked.append([h.source for h in hits])
        runs[hybrid] = ranked, latencies
    common = {"pages": report.documents, "chunks": report.chunks_written, "ingest_s": ingest_s,
              "reingest_s": reingest_s, "report": str(report), "dtype": embedder.dtype}
    return ({**common, "ranked": runs[True][0], "latencies": runs[True][1], "retrieval": store.describe()},
            {**common, "ranked": runs[False][0], "latencies": runs[False][1]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/git-doc"))
    parser.add_argument("--questions", type=Path, default=REPO.parent / "shared" / "eval" / "git_qa.jsonl")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    if not args.docs.is_dir():
        raise SystemExit(f"{args.docs} is missing: apt-get install -y git-doc")
    os.environ.setdefault("DOCBOT_ENV_FILE", os.devnull)

    from docbot_lib.evaluate import load_questions, median_ms, score_retrieval

    questions = load_questions(args.questions)
    work = Path(tempfile.mkdtemp(prefix="docbot-bench-"))
    try:
        results = {}
        if not args.skip_peer:
            results["peer (seed recipe)"] = peer(args.docs, questions, str(work / "peer.db"))
        results["Doc Bot"], results["Doc Bot, dense only"] = docbot(args.docs, questions, str(work / "docbot.db"),
                                                                    args.dtype)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ncorpus {args.docs} · {len(questions)} questions ({args.questions.name}) · {os.cpu_count()} cores")
    header = f"{'':<22}{'pages':>6}{'chunks':>8}{'ingest s':>10}{'chunks/s':>10}{'hit@4':>7}{'hit@10':>8}" \
             f"{'MRR@10':>8}{'p50 ms':>8}"
    print(header)
    scores = {}
    for name, r in results.items():
        s = score_retrieval(questions, r["ranked"])
        scores[name] = s
        print(f"{name:<22}{r['pages']:>6}{r['chunks']:>8}{r['ingest_s']:>10.1f}{r['chunks'] / r['ingest_s']:>10.1f}"
              f"{s.hit_at[4]:>7.2f}{s.hit_at[10]:>8.2f}{s.mrr_at_10:>8.3f}{median_ms(r['latencies']):>8.1f}")
    mine = results["Doc Bot"]
    print(f"\nDoc Bot: {mine['retrieval']}; embeddings in {mine['dtype']}")
    print(f"Doc Bot unchanged re-ingest: {mine['reingest_s']:.2f} s "
          f"({100 * mine['reingest_s'] / mine['ingest_s']:.1f} % of the first ingest; target <= 5 %)")
    for level, row in scores["Doc Bot"].by_difficulty.items():
        print(f"Doc Bot {level:<7} hit@4 {row['hit@4']:.2f}  MRR@10 {row['mrr@10']:.3f}  ({row['questions']} q)")
    if "peer (seed recipe)" in results:
        p, d = scores["peer (seed recipe)"], scores["Doc Bot"]
        pr = results["peer (seed recipe)"]
        print("targets vs the peer in this run:")
        print(f"  misses at 4:  Doc Bot {1 - d.hit_at[4]:.2f} vs peer {1 - p.hit_at[4]:.2f} "
              f"(target <= {(1 - p.hit_at[4]) / 2:.2f})")
        print(f"  1 - MRR@10:   Doc Bot {1 - d.mrr_at_10:.3f} vs peer {1 - p.mrr_at_10:.3f} "
              f"(target <= {(1 - p.mrr_at_10) / 2:.3f})")
        print(f"  ingest time:  {mine['ingest_s'] / pr['ingest_s']:.2f} x the peer's (target <= 0.5)")
        print(f"  p50 search:   {median_ms(mine['latencies']):.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
