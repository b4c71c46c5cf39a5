"""Measure the bot: retrieval quality, answer checks, where the time goes, and the GPU's view.

A question set is JSON Lines: {"question", "source", optional "also": [...], "answer", "difficulty"}.
`source` (and each of `also`) names a page as ingested (path relative to the ingested folder, or URL).
Ranks count chunks: hit@k = a chunk from an expected page is among the first k chunks returned;
MRR@10 = mean over questions of 1 / rank of the first such chunk within the first 10 (0 if none).

    questions = load_questions(SAMPLE_QUESTIONS)
    scores = compare_retrieval(settings, questions, {"hybrid": {}, "dense": {"hybrid": False}})
    checks = check_answers(settings, questions[:3], off_topic=["Who won the 1998 World Cup?"])

Answer checks need no judge model: are the cited passages among those retrieved, does the answer cite an
expected page, how much of it is found in the cited text (content-word overlap), does the bot refuse
what the documentation does not cover. With `judge_base_url` set, a judge model scores 1-5 as well.
Plots: docbot_lib.pipeline.evaluate_plots.

Layer: pipeline, step `evaluate`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from docbot_lib.core.errors import BadInput, ConfigError, NotFound, ServiceUnavailable
from docbot_lib.core.settings import Settings

# support, content words and refusals are measured in rag: the chatbot flags an answer on the same measure
from docbot_lib.pipeline.rag import REFUSAL, STOPWORDS, content_words, is_refusal, support  # noqa: F401

SAMPLE_QUESTIONS = Path(__file__).resolve().parents[1] / "data" / "sample_questions.jsonl"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    expected: frozenset[str]  # source plus the equally good pages in `also`
    difficulty: str = ""
    answer: str = ""


def load_questions(path: str | Path) -> list[Question]:
    """Read a JSON Lines question set; a bad line is one clear error naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise NotFound(
            f"cannot read the question set {path} ({type(exc).__name__})",
            "give the path of a JSON Lines file, e.g. docbot_lib/data/sample_questions.jsonl",
        ) from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(
                    str(row.get("id", number)),
                    row["question"],
                    frozenset([row["source"], *row.get("also", [])]),
                    row.get("difficulty", ""),
                    row.get("answer", ""),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInput(
                f"{path}, line {number}: not a question ({type(exc).__name__}: {exc})",
                'each line needs at least {"question": ..., "source": ...}',
            ) from None
    if not questions:
        raise BadInput(f"{path} holds no questions", 'write one JSON object per line: {"question", "source"}')
    return questions


def first_hit_rank(ranked_sources: list[str], expected: frozenset[str]) -> int | None:
    """1-based rank of the first chunk from an expected page, or None."""
    return next((rank for rank, source in enumerate(ranked_sources, start=1) if source in expected), None)


@dataclass
class RetrievalScores:
    questions: int
    hit_at: dict[int, float]  # k -> share of questions with a hit in the first k chunks
    mrr_at_10: float
    by_difficulty: dict[str, dict[str, float]] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"hit@1 {self.hit_at[1]:.2f}  hit@4 {self.hit_at[4]:.2f}  hit@10 {self.hit_at[10]:.2f}  "
            f"MRR@10 {self.mrr_at_10:.3f}  ({self.questions} questions)"
        )


def score_retrieval(questions: list[Question], ranked: list[list[str]], max_k: int = 10) -> RetrievalScores:
    """hit@1..max_k and MRR@10 from each question's ranked chunk sources (same order as `questions`)."""
    if len(questions) != len(ranked):
        raise ValueError("one ranked list per question")
    ranks = [first_hit_rank(r[:max_k], q.expected) for q, r in zip(questions, ranked, strict=True)]

    def summarise(selected: list[int | None]) -> tuple[dict[int, float], float]:
        n = max(len(selected), 1)
        hits = {k: sum(1 for r in selected if r is not None and r <= k) / n for k in range(1, max_k + 1)}
        mrr = sum(1 / r for r in selected if r is not None and r <= 10) / n
        return hits, mrr

    hit_at, mrr = summarise(ranks)
    by_difficulty = {}
    for level in sorted({q.difficulty for q in questions if q.difficulty}):
        selected = [r for q, r in zip(questions, ranks, strict=True) if q.difficulty == level]
        hits, level_mrr = summarise(selected)
        by_difficulty[level] = {
            "questions": len(selected),
            "hit@1": hits[1],
            "hit@4": hits[min(4, max_k)],
            "hit@10": hits[max_k],
            "mrr@10": level_mrr,
        }
    return RetrievalScores(len(questions), hit_at, mrr, by_difficulty)


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000 if seconds else float("nan")


def p95_ms(seconds: list[float]) -> float:
    if not seconds:
        return float("nan")
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


LEVELS = ("easy", "medium", "hard")


def difficulty_order(levels: Iterable[str]) -> list[str]:
    """easy, medium, hard first, then any other level alphabetically."""
    levels = set(levels)
    return [level for level in LEVELS if level in levels] + sorted(levels - set(LEVELS))


# -- retrieval, compared across settings ------------------------------------------------------------
@dataclass
class RetrievalRun:
    """One setting's retrieval over the question set: the scores, each question's ranked sources, timings."""

    name: str
    scores: RetrievalScores
    ranked: list[list[str]]
    embed_s: list[float]
    search_s: list[float]
    overrides: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"{self.name:<14} {self.scores.row()}  embed p50 {median_ms(self.embed_s):.0f} ms, "
            f"search p50 {median_ms(self.search_s):.0f} ms"
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "overrides": self.overrides,
            "questions": self.scores.questions,
            "hit_at": self.scores.hit_at,
            "mrr_at_10": self.scores.mrr_at_10,
            "by_difficulty": self.scores.by_difficulty,
            "embed_ms_p50": median_ms(self.embed_s),
            "search_ms_p50": median_ms(self.search_s),
        }


def retrieve_ranked(
    settings: Settings,
    questions: list[Question],
    collection: str | None = None,
    k: int = 10,
    progress: bool = False,
    label: str = "retrieve",
) -> tuple[list[list[str]], list[float], list[float]]:
    """Each question's k best chunk sources, and the seconds spent embedding and searching per question.
    Embedding and search are timed apart (RagChain times them together as "retrieve")."""
    from tqdm.auto import tqdm

    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.pipeline.store import open_store

    embedder, store = get_embeddings(settings), open_store(settings, collection)
    store.search(embedder.embed_query("warm up"), "warm up", k=k, hybrid=settings.hybrid)  # first call loads
    ranked, embed_s, search_s = [], [], []
    for q in tqdm(questions, desc=label, disable=not progress):
        start = time.perf_counter()
        vector = embedder.embed_query(q.question)
        mark = time.perf_counter()
        hits = store.search(vector, q.question, k=k, hybrid=settings.hybrid)
        search_s.append(time.perf_counter() - mark)
        embed_s.append(mark - start)
        ranked.append([h.source for h in hits])
    return ranked, embed_s, search_s


def compare_retrieval(
    settings: Settings,
    questions: list[Question],
    variants: dict[str, dict[str, Any]],
    collection: str | None = None,
    k: int = 10,
    progress: bool = True,
) -> dict[str, RetrievalRun]:
    """Score retrieval once per variant: {name: overrides of Settings fields, plus "collection" for a
    collection ingested another way (e.g. another chunk_tokens, see `ingest_variant`)}.
    {"dense": {"hybrid": False}} compares dense-only search with the default hybrid one."""
    runs = {}
    for name, overrides in variants.items():
        overrides = dict(overrides)
        where = overrides.pop("collection", collection)
        unknown = set(overrides) - set(Settings.model_fields)
        if unknown:
            raise BadInput(
                f"variant {name!r}: unknown setting(s) {sorted(unknown)}",
                "use Settings field names (hybrid, chunk_tokens, ...) or 'collection'",
            )
        variant = settings.model_copy(update=overrides)
        ranked, embed_s, search_s = retrieve_ranked(variant, questions, where, k, progress, label=name)
        runs[name] = RetrievalRun(
            name,
            score_retrieval(questions, ranked, max_k=k),
            ranked,
            embed_s,
            search_s,
            {**overrides, **({"collection": where} if where else {})},
        )
    return runs


def eval_collection(settings: Settings, name: str | None = None) -> str:
    """The evaluation's collection: `name`, else <milvus_collection>_eval (notebook 04's roles cover it)."""
    from docbot_lib.pipeline.vectordb import EVAL_SUFFIX

    return name or f"{settings.milvus_collection}{EVAL_SUFFIX}"


def variant_collection(collection: str, chunk_tokens: int | None) -> str:
    """The collection of a chunk-size variant: <collection>_c<tokens> (roles cover vectordb.EVAL_SMALL_CHUNKS)."""
    return f"{collection}_c{chunk_tokens}"


def ingest_variant(
    settings: Settings,
    docs: Iterable[str],
    collection: str,
    pattern: str | None = None,
    progress: bool = False,
    **overrides: Any,
):
    """Ingest the same documents into another collection with other settings (e.g. chunk_tokens=100);
    incremental like every ingestion, so a re-run skips unchanged documents. Returns the IngestReport."""
    from docbot_lib.pipeline.ingest import ingest

    return ingest(
        settings.model_copy(update=overrides), list(docs), collection=collection, pattern=pattern, progress=progress
    )


def retrieval_table(runs: dict[str, RetrievalRun], ks: tuple[int, ...] = (1, 3, 5, 10)) -> str:
    """A text table: one row per setting, hit@k columns, MRR@10, then per difficulty hit@4."""
    levels = difficulty_order({level for r in runs.values() for level in r.scores.by_difficulty})
    width = max([len("setting"), *(len(name) for name in runs)]) + 2
    head = f"{'setting':<{width}}" + "".join(f"{'hit@' + str(k):>8}" for k in ks) + f"{'MRR@10':>8}"
    head += "".join(f"{level + ' hit@4':>14}" for level in levels) + f"{'embed ms':>10}{'search ms':>10}"
    lines = [head]
    for r in runs.values():
        line = f"{r.name:<{width}}" + "".join(f"{r.scores.hit_at[k]:>8.2f}" for k in ks if k in r.scores.hit_at)
        line += f"{r.scores.mrr_at_10:>8.3f}"
        line += "".join(
            f"{r.scores.by_difficulty.get(level, {}).get('hit@4', float('nan')):>14.2f}" for level in levels
        )
        lines.append(line + f"{median_ms(r.embed_s):>10.1f}{median_ms(r.search_s):>10.1f}")
    lines.append(
        f"({next(iter(runs.values())).scores.questions} questions; ranks count chunks; times are medians)"
        if runs
        else "(no settings)"
    )
    return "\n".join(lines)


# -- answer checks that need no judge model -----------------------------------------------------------
def citations_valid(answer_text: str, retrieved_numbers: Iterable[int]) -> bool:
    """Every [n] the answer cites is one of the passages it was given (no invented citation)."""
    from docbot_lib.pipeline.rag import cited_numbers

    return set(cited_numbers(answer_text)) <= set(retrieved_numbers)


def cites_expected(cited_sources: Iterable[str], expected: Iterable[str]) -> bool:
    """At least one cited passage comes from an expected page."""
    return bool(set(cited_sources) & set(expected))


@dataclass
class JudgeScore:
    faithfulness: int | None  # 1-5: is every claim supported by the passages
    relevance: int | None  # 1-5: does it answer the question
    detail: str = ""  # "could not parse: ..." when the judge's reply had no scores

    @property
    def parsed(self) -> bool:
        return self.faithfulness is not None and self.relevance is not None


JUDGE_PROMPT = (
    "You grade an answer given by a documentation chatbot. Rate from 1 (worst) to 5 (best):\n"
    "faithfulness: is every statement of the answer supported by the passages?\n"
    "relevance: does the answer address the question?\n\n"
    "Question: {question}\n\nPassages:\n{passages}\n\nAnswer: {answer}\n\n"
    "Reply with exactly two lines and nothing else:\nfaithfulness: <1-5>\nrelevance: <1-5>"
)


def parse_judge_reply(reply: str) -> JudgeScore:
    """Scores from a reply like "faithfulness: 4\\nrelevance: 5"; unparseable -> None with the reason."""
    found = {}
    for name in ("faithfulness", "relevance"):
        match = re.search(rf"{name}\W{{0,5}}([1-5])\b", reply, re.I)
        found[name] = int(match.group(1)) if match else None
    if None in found.values():
        return JudgeScore(None, None, "could not parse: " + " ".join(reply.split())[:120])
    return JudgeScore(found["faithfulness"], found["relevance"])


def judge_configured(settings: Settings) -> bool:
    return bool(settings.judge_base_url)


def judge_answer(settings: Settings, question: str, answer_text: str, passages: list[str]) -> JudgeScore:
    """Ask the judge model (settings.judge_*) to score faithfulness and relevance 1-5."""
    from langchain_core.messages import HumanMessage
    from langchain_core.output_parsers import StrOutputParser

    from docbot_lib.clients.llm import chat_model

    if not judge_configured(settings):
        raise ConfigError(
            "no judge model configured",
            "set DOCBOT_JUDGE_BASE_URL (and DOCBOT_JUDGE_MODEL, DOCBOT_JUDGE_API_KEY) to an OpenAI-compatible endpoint",
            service="judge",
        )
    judge = chat_model(
        settings.model_copy(
            update={
                "llm_base_url": settings.judge_base_url,
                "llm_model_name": settings.judge_model or settings.llm_model_name,
                "llm_api_key": settings.judge_api_key,
                "temperature": 0.0,
                "max_tokens": 24,
                "presence_penalty": 0.0,
                "llm_system_role": None,
            }
        )
    )
    numbered = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    prompt = JUDGE_PROMPT.format(question=question, passages=numbered[:6000], answer=answer_text)
    try:
        reply = (judge | StrOutputParser()).invoke([HumanMessage(prompt)])
    except Exception as exc:  # noqa: BLE001 - the judge is optional: report why it gave no score
        raise ServiceUnavailable(
            f"the judge at {settings.judge_base_url} failed ({type(exc).__name__}: {exc})",
            "check DOCBOT_JUDGE_BASE_URL, DOCBOT_JUDGE_MODEL and DOCBOT_JUDGE_API_KEY",
            service="judge",
        ) from None
    return parse_judge_reply(reply)


@dataclass
class AnswerCheck:
    """One question asked of the bot, and what the checks found."""

    id: str
    question: str
    answer: str
    expected: list[str]  # empty for an off-topic question
    cited: list[str]  # sources of the cited passages
    retrieved: list[str]
    citations_valid: bool
    cites_expected: bool | None  # None for an off-topic question
    support: float  # share of the answer's content words found in the cited passages
    support_retrieved: float  # ... found in any passage it was given (an answer that cites nothing)
    refused: bool
    off_topic: bool
    timings: dict[str, float]  # seconds: rewrite, embed, search, retrieve, first_token, total
    judge: JudgeScore | None = None


@dataclass
class AnswerReport:
    checks: list[AnswerCheck]

    def _on_topic(self) -> list[AnswerCheck]:
        return [c for c in self.checks if not c.off_topic]

    def summary(self) -> dict[str, float]:
        """Shares over the questions (on-topic ones, except refusal_off_topic)."""
        on, off = self._on_topic(), [c for c in self.checks if c.off_topic]
        answered = [c for c in on if not c.refused]

        def share(items, test) -> float:
            return sum(1 for c in items if test(c)) / len(items) if items else float("nan")

        judged = [c.judge for c in on if c.judge and c.judge.parsed]
        return {
            "questions": len(on),
            "off_topic": len(off),
            "citations_valid": share(on, lambda c: c.citations_valid),
            "cites_expected": share(on, lambda c: c.cites_expected),
            "support_mean": statistics.fmean(c.support for c in answered) if answered else float("nan"),
            "support_retrieved_mean": (
                statistics.fmean(c.support_retrieved for c in answered) if answered else float("nan")
            ),
            "refused_on_topic": share(on, lambda c: c.refused),
            "refusal_off_topic": share(off, lambda c: c.refused),
            "judge_faithfulness": statistics.fmean(j.faithfulness or 0 for j in judged) if judged else float("nan"),
            "judge_relevance": statistics.fmean(j.relevance or 0 for j in judged) if judged else float("nan"),
        }

    def __str__(self) -> str:
        lines = [
            f"{'id':<8} {'valid cites':>11} {'cites page':>10} {'support':>8} {'in context':>10} {'refused':>8}"
            f"  judge  answer"
        ]
        for c in self.checks:
            expected = "-" if c.cites_expected is None else ("yes" if c.cites_expected else "no")
            judge = (
                f"{c.judge.faithfulness}/{c.judge.relevance}" if c.judge and c.judge.parsed else "?" if c.judge else "-"
            )
            text = " ".join(c.answer.split())
            lines.append(
                f"{c.id:<8} {'yes' if c.citations_valid else 'NO':>11} {expected:>10} {c.support:>8.2f} "
                f"{c.support_retrieved:>10.2f} {'yes' if c.refused else 'no':>8}  {judge:<5}  {text[:70]}{'...' if len(text) > 70 else ''}"
            )
        s = self.summary()
        lines.append(
            f"on-topic {s['questions']}: valid citations {s['citations_valid']:.0%}, cite an expected page "
            f"{s['cites_expected']:.0%}, support {s['support_mean']:.2f} "
            f"(in context {s['support_retrieved_mean']:.2f}), refused {s['refused_on_topic']:.0%}"
            f" | off-topic {s['off_topic']}: refused {s['refusal_off_topic']:.0%}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "checks": [asdict(c) for c in self.checks]}


STAGES = ("rewrite", "embed", "search", "first token", "generate")


def latency_rows(report: AnswerReport) -> list[dict[str, Any]]:
    """Per question, milliseconds per stage (summing to about the total): rewrite, embed, search, first token
    (prompt processing until the model's first token), generate (the rest of the answer); and total."""
    rows = []
    for c in report.checks:
        t = c.timings
        to_first = t.get("first_token", t["total"])
        rows.append(
            {
                "id": c.id,
                "rewrite": t.get("rewrite", 0) * 1000,
                "embed": t.get("embed", 0) * 1000,
                "search": t.get("search", 0) * 1000,
                "first token": max(0.0, to_first - t.get("rewrite", 0) - t.get("retrieve", 0)) * 1000,
                "generate": max(0.0, t["total"] - to_first) * 1000,
                "total": t["total"] * 1000,
                "time to first token": to_first * 1000,
            }
        )
    return rows


def latency_table(report: AnswerReport) -> str:
    """Median and p95 per stage over the questions, in milliseconds."""
    rows = latency_rows(report)
    columns = (*STAGES, "time to first token", "total")
    lines = [f"{'ms':<8}" + "".join(f"{c:>21}" for c in columns)]
    for name, pick in (("median", median_ms), ("p95", p95_ms)):
        lines.append(f"{name:<8}" + "".join(f"{pick([r[c] / 1000 for r in rows]):>21.0f}" for c in columns))
    lines.append(f"({len(rows)} answers; 'first token' = from the prompt sent to the model's first token)")
    return "\n".join(lines)


def check_answers(
    settings: Settings,
    questions: list[Question],
    collection: str | None = None,
    off_topic: Iterable[str] = (),
    judge: bool | None = None,
    progress: bool = True,
) -> AnswerReport:
    """Ask the bot each question (and each off-topic one) and check its answer; judge it when a judge model
    is configured (`judge` None) or asked for (True). Each answer is one LLM call: keep the set small."""
    from tqdm.auto import tqdm

    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.pipeline.rag import RagChain
    from docbot_lib.pipeline.store import open_store

    judge = judge_configured(settings) if judge is None else judge
    bot = RagChain(settings, collection)
    embedder, store = get_embeddings(settings), open_store(settings, collection)
    items = [(q, False) for q in questions] + [
        (Question(f"off{n}", text, frozenset()), True) for n, text in enumerate(off_topic, start=1)
    ]
    checks = []
    for q, off in tqdm(items, desc="answers", disable=not progress):
        answer = bot.ask(q.question)
        # the passages' text is not on the Answer: the retriever is deterministic, so ask it again
        hits = bot.retriever.hits(answer.standalone_question) if answer.found else []
        by_number = {h.rank: h for h in hits}
        cited_text = [by_number[s.number].text for s in answer.sources if s.number in by_number]
        timings = dict(answer.timings)
        # RagChain times embedding and search together; time them apart on the same question
        mark = time.perf_counter()
        vector = embedder.embed_query(answer.standalone_question)
        timings["embed"] = time.perf_counter() - mark
        mark = time.perf_counter()
        store.search(vector, answer.standalone_question, k=bot.retriever.k, hybrid=settings.hybrid)
        timings["search"] = time.perf_counter() - mark
        check = AnswerCheck(
            q.id,
            q.question,
            answer.text,
            sorted(q.expected),
            [s.source for s in answer.sources],
            [s.source for s in answer.retrieved],
            citations_valid(answer.text, [s.number for s in answer.retrieved]),
            None if off else cites_expected((s.source for s in answer.sources), q.expected),
            support(answer.text, cited_text) if answer.found else 0.0,
            support(answer.text, [h.text for h in hits]) if answer.found else 0.0,
            is_refusal(answer.text, answer.found),
            off,
            timings,
        )
        if judge and answer.found and not off:
            check.judge = judge_answer(settings, q.question, answer.text, cited_text or [h.text for h in hits])
        checks.append(check)
    return AnswerReport(checks)


# -- the GPU's view: vLLM's /metrics next to the sizing -----------------------------------------------
@dataclass
class GpuView:
    metrics: Any  # docbot_lib.pipeline.serving.VllmMetrics
    tokens_per_s: float | None  # generated tokens per second over the sampling interval
    sizing: Any  # docbot_lib.pipeline.sizing.SizingReport

    def __str__(self) -> str:
        if not self.metrics.is_vllm:
            return (
                f"{self.metrics.detail}\nThe GPU panel needs vLLM's /metrics (the cluster's model server); "
                f"on the local llama.cpp server there is none."
            )
        rate = "?" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"
        return f"{self.metrics}\ngeneration {rate} tokens/s\n\nsizing (notebook 03):\n{self.sizing}"


def gpu_view(settings: Settings, interval: float = 2.0, gpus: list[str] | None = None) -> GpuView:
    """Two readings of the LLM endpoint's /metrics `interval` seconds apart (for tokens/s), and the sizing
    of the lab's model from notebook 03 (`gpus` e.g. ["L4", "A10G"] to keep the table short)."""
    from docbot_lib.pipeline.serving import vllm_metrics
    from docbot_lib.pipeline.sizing import published_report

    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured", "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL (…/v1)", service="llm"
        )
    first = vllm_metrics(settings.llm_base_url, settings.secret("llm_api_key"))
    sizing = published_report(**({"gpus": gpus} if gpus else {}))
    if not first.is_vllm:
        return GpuView(first, None, sizing)
    time.sleep(interval)
    second = vllm_metrics(settings.llm_base_url, settings.secret("llm_api_key"))
    rate = None
    if first.generation_tokens_total is not None and second.generation_tokens_total is not None:
        rate = (second.generation_tokens_total - first.generation_tokens_total) / interval
    return GpuView(second, rate, sizing)


# -- `docbot eval` ------------------------------------------------------------------------------------
def eval_command(
    settings: Settings,
    questions_path: str | Path,
    collection: str | None = None,
    as_json: bool = False,
    answers: int = 0,
) -> int:
    """`docbot eval QUESTIONS.jsonl`: retrieval hybrid vs dense on the collection; with `answers` N, the
    answer checks and per-stage latency on the first N questions. Prints a table, or JSON; returns 0."""
    questions = load_questions(questions_path)
    runs = compare_retrieval(
        settings, questions, {"hybrid": {"hybrid": True}, "dense": {"hybrid": False}}, collection, progress=False
    )
    report = check_answers(settings, questions[:answers], collection, progress=False) if answers else None
    if as_json:
        out: dict[str, Any] = {
            "questions": str(questions_path),
            "collection": collection or settings.milvus_collection,
            "retrieval": {name: run.to_dict() for name, run in runs.items()},
        }
        if report:
            out["answers"] = report.to_dict()
            out["latency_ms"] = latency_rows(report)
        print(json.dumps(out, indent=2, default=str))
    else:
        print(retrieval_table(runs))
        if report:
            print()
            print(report)
            print()
            print(latency_table(report))
    return 0
