"""Answer checks that need no judge model: are the cited passages among those given (no invented citation), does
the answer cite an expected page. Support and refusals are measured in rag (the chatbot flags an answer on the
same measure).

Layer: pipeline, step `evaluate` (its answer checks): imports rag lazily.
"""

from __future__ import annotations

from collections.abc import Iterable


def citations_valid(answer_text: str, retrieved_numbers: Iterable[int]) -> bool:
    """Every [n] the answer cites is one of the passages it was given (no invented citation)."""
    from docbot_lib.pipeline.rag import cited_numbers

    return set(cited_numbers(answer_text)) <= set(retrieved_numbers)


def cites_expected(cited_sources: Iterable[str], expected: Iterable[str]) -> bool:
    """At least one cited passage comes from an expected page."""
    return bool(set(cited_sources) & set(expected))
