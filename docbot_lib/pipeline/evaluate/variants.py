"""The collections evaluated: the evaluation's own (<collection>_eval), a chunk-size variant's (<collection>_c<tokens>),
and the same documents ingested into one with other settings (`ingest_variant`).

Layer: pipeline, step `evaluate` (its variant ingestion): imports core, and vectordb and ingest lazily.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from docbot_lib.core.settings import Settings


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
