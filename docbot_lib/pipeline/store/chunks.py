"""The chunk store in Milvus: an explicit schema, incremental writes, and hybrid (dense + BM25) search.

Two collections per index:
  <name>        one row per chunk: pk (from source, version and content), text, dense vector (COSINE on
                normalised vectors, HNSW), metadata (source, root, title, section, page, chunk_index, doc_hash), and
                where the server has it (Milvus >= 2.5, Milvus Lite) a BM25 sparse vector computed by
                Milvus's built-in function from `text`;
  <name>_docs   the record of what was ingested: one row per document (root, source, doc_hash, chunks),
                so a re-run knows what changed — the record lives with the data.

ChunkStore opens (or creates) both and combines the jobs of the step's other modules: `schema` (the collections'
creation), `record` (reading rows, the record of documents), `writes` (ChunkWriter) and `retrieval` (ChunkSearch,
Hit). The names they define are importable from here too, as before the split.

Layer: pipeline, step `store` (the collections): imports core, clients, the steps before it and store's own modules.
"""

from __future__ import annotations

import re

from docbot_lib.core.errors import BadInput, NotFound
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.store.ranking import BM25_WEIGHT
from docbot_lib.pipeline.store.record import documents as recorded_documents
from docbot_lib.pipeline.store.record import query_all, quote
from docbot_lib.pipeline.store.retrieval import OUTPUT, ChunkSearch, Hit, source_filter
from docbot_lib.pipeline.store.schema import (
    DENSE_INDEX,
    SECTION_MAX,
    SPARSE_INDEX,
    TITLE_MAX,
    create_chunk_collection,
    create_record_collection,
    fit,
)
from docbot_lib.pipeline.store.writes import ChunkWriter, NotRecorded
from docbot_lib.pipeline.vectordb import record_collection

__all__ = [
    "DENSE_INDEX",
    "OUTPUT",
    "SECTION_MAX",
    "SPARSE_INDEX",
    "TITLE_MAX",
    "ChunkStore",
    "Hit",
    "NotRecorded",
    "fit",
    "quote",
    "source_filter",
]


class ChunkStore:
    """One collection of chunks (and its record of documents) in Milvus."""

    def __init__(self, settings: Settings, name: str, dimension: int | None = None, create: bool = True):
        from docbot_lib.clients.milvus import milvus_client, supports_bm25, tolerate_stale_grants

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
            raise BadInput(
                f"invalid collection name {name!r}", "use letters, digits and underscores, starting with a letter"
            )
        self.settings, self.name, self.docs = settings, name, record_collection(name)
        client = milvus_client(settings)
        self.version = str(client.get_server_version())
        self.client = tolerate_stale_grants(client, self.version)
        if self.client.has_collection(name):
            fields = {f["name"] for f in self.client.describe_collection(name)["fields"]}
            self.hybrid = "sparse" in fields
        elif create:
            if dimension is None:
                raise BadInput("creating a collection needs the embedding dimension", "pass dimension=")
            self.hybrid = supports_bm25(self.client)  # never BM25 where it would crash the server
            # a freshly provisioned learner's CreateCollection grant may still be on its way to the proxies
            from docbot_lib.pipeline.vectordb import wait_until_permitted

            wait_until_permitted(lambda: create_chunk_collection(self.client, name, dimension, self.hybrid))
        else:
            raise NotFound(
                f"collection {name!r} does not exist in Milvus at {settings.milvus_uri}",
                "ingest documents first: `docbot ingest PATH` (or notebook 05)",
                service="milvus",
            )
        if not self.client.has_collection(self.docs):
            create_record_collection(self.client, self.docs)
        self.client.load_collection(name)
        self.client.load_collection(self.docs)
        self._writer = ChunkWriter(self.client, name, self.docs)
        self._search = ChunkSearch(self.client, name, self.hybrid)

    def describe(self) -> str:
        if self.hybrid:
            return f"hybrid search: dense (HNSW, COSINE) + BM25 (weight {BM25_WEIGHT:g}), reciprocal-rank fusion"
        return f"dense search only (HNSW, COSINE): Milvus {self.version} has no BM25 full-text search (needs 2.5+)"

    # -- reading: the record of documents, the rows -------------------------------------------------
    def _query_all(self, collection: str, filter: str, fields: list[str]) -> list[dict]:
        return query_all(self.client, collection, filter, fields)

    def documents(self) -> dict[tuple[str, str], str]:
        """{(root, source): doc_hash} of every ingested document."""
        return recorded_documents(self.client, self.docs)

    def count(self) -> int:
        return len(self._query_all(self.name, 'pk != ""', ["pk"]))

    # -- writes (ChunkWriter) -------------------------------------------------------------------------
    def replace_documents(self, documents: list[tuple[str, str, str, list, list]], existing: set) -> tuple[int, int]:
        """Make each document's rows exactly its new chunks, leaving nothing half-written (ChunkWriter's
        replace_documents: returns (chunks written, previous chunks removed), may raise NotRecorded)."""
        return self._writer.replace_documents(documents, existing)

    def delete_document(self, root: str, source: str) -> int:
        """Remove a document's chunks and its record; returns the number of chunks removed."""
        return self._writer.delete_document(root, source)

    def flush(self) -> None:
        self._writer.flush()

    # -- search (ChunkSearch) -------------------------------------------------------------------------
    def search(
        self,
        query_vector: list[float],
        query_text: str,
        k: int = 5,
        filter: str = "",
        min_similarity: float | None = None,
        hybrid: bool = True,
        per_source: int | None = 1,
    ) -> list[Hit]:
        """The k best chunks, hybrid where the collection has BM25 (ChunkSearch's search)."""
        return self._search.search(query_vector, query_text, k, filter, min_similarity, hybrid, per_source)

    def close(self) -> None:
        self.client.close()
