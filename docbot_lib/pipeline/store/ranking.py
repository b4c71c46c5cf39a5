"""How the store ranks: BM25 on the question's content words, dense and BM25 rankings fused by reciprocal rank
(BM25 weighted BM25_WEIGHT), and at most a few chunks per page before the rest. Pure functions: no Milvus.

Layer: pipeline, step `store` (its ranking): imports nothing of Doc Bot's.
"""

from __future__ import annotations

import re

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.): rank r scores 1 / (RRF_K + r)


# Weight of the BM25 ranking in the fusion (dense: 1). On questions asked in the user's words the dense
# ranking is the better one, and BM25 brings in the chunks that share rare exact terms (option names, error
# messages): measured on two documentation sets in bench/ingest_retrieval.py.
BM25_WEIGHT = 0.5


# Function words dropped from the question before BM25: they carry no topic, and on Milvus Lite each one
# costs a walk of a long posting list (a question's BM25 search: 26 ms with them, 9 ms without).
STOP_WORDS = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with i me my mine we us our you your he him his she her its them
    what which who whom whose when where why how do does did doing done can could should would shall may
    might must am been being have has had having""".split()
)


def keywords_of(question: str) -> str:
    """The question for BM25: its words without the function words (STOP_WORDS); all of them if nothing else."""
    words = re.findall(r"\w+(?:'\w+)?", question)
    kept = [w for w in words if w.lower() not in STOP_WORDS]
    return " ".join(kept or words)


def reciprocal_rank_fusion(rankings: list[list[str]], weights: list[float]) -> dict[str, float]:
    """Weighted reciprocal-rank fusion: an item at rank r of ranking i scores weights[i] / (RRF_K + r).
    `weights` may be longer than `rankings` (dense alone, when a question has no keywords or BM25 is off)."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=False):
        for rank, pk in enumerate(ranking, start=1):
            fused[pk] = fused.get(pk, 0.0) + weight / (RRF_K + rank)
    return fused


def diversify(order: list, key, per_source: int | None) -> list:
    """Keep the order, but let no document have more than `per_source` of the leading places: its further
    chunks move behind the chunks of other documents (the answer draws on more pages, and one page that
    matches the words but not the question cannot fill the whole context)."""
    if not per_source:
        return order
    counts: dict = {}
    first: list = []
    later: list = []
    for item in order:
        counts[key(item)] = counts.get(key(item), 0) + 1
        (first if counts[key(item)] <= per_source else later).append(item)
    return first + later
