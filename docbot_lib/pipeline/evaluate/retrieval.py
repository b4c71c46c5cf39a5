"""Retrieval over the question set, run once per setting (hybrid vs dense, another collection): each question's
ranked chunk sources, embedding and search timed apart, and the scores (`compare_retrieval`).

Layer: pipeline, step `evaluate` (its retrieval runs): imports core (clients and store lazily), evaluate.questions and
evaluate.scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from docbot_lib.core.errors import BadInput
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.evaluate.questions import Question
from docbot_lib.pipeline.evaluate.scores import RetrievalScores, median_ms, score_retrieval


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
