"""Retrieval scores from ranked chunk sources: hit@k and MRR@10, overall and per difficulty; the medians and p95s
of timings; the order of difficulty levels.

Layer: pipeline, step `evaluate` (its retrieval scores): imports evaluate.questions.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from docbot_lib.pipeline.evaluate.questions import Question


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
