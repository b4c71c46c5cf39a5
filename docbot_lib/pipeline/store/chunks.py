"""The chunk store in Milvus: an explicit schema, incremental writes, and hybrid (dense + BM25) search.

Two collections per index:
  <name>        one row per chunk: pk (from source, version and content), text, dense vector (COSINE on
                normalised vectors, HNSW), metadata (source, root, title, section, page, chunk_index, doc_hash), and
                where the server has it (Milvus >= 2.5, Milvus Lite) a BM25 sparse vector computed by
                Milvus's built-in function from `text`;
  <name>_docs   the record of what was ingested: one row per document (root, source, doc_hash, chunks),
                so a re-run knows what changed — the record lives with the data.

Layer: pipeline, step `store` (the collections): imports core, clients, the steps before it and store.ranking.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

from docbot_lib.core.errors import BadInput, NotFound
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.store.ranking import BM25_WEIGHT, diversify, keywords_of, reciprocal_rank_fusion
from docbot_lib.pipeline.vectordb import record_collection

DENSE_INDEX = {"index_type": "HNSW", "metric_type": "COSINE", "params": {"M": 16, "efConstruction": 200}}
SPARSE_INDEX = {
    "index_type": "SPARSE_INVERTED_INDEX",
    "metric_type": "BM25",
    "params": {"inverted_index_algo": "DAAT_MAXSCORE"},
}
OUTPUT = ["text", "source", "root", "title", "section", "page", "chunk_index"]
# The schema's limits of the title and section fields: longer values are cut to fit (fit()), not refused. A page
# whose <h2> is never closed makes its whole text one heading (SQLite's keyword_index.html: 61,358 characters),
# and Milvus refused the page's every row.
TITLE_MAX, SECTION_MAX = 1024, 2048


class NotRecorded(Exception):
    """A changed document's new rows replaced its previous ones, but its record was not updated."""


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Hit:
    rank: int
    source: str
    title: str
    section: str
    page: int
    text: str
    score: float  # cosine similarity of the chunk to the question (-1..1; higher is closer)
    fused: float = 0.0  # reciprocal-rank-fusion score (hybrid) that set the rank
    root: str = ""
    chunk_index: int = 0

    def __str__(self) -> str:
        where = (
            self.source + (f", page {self.page}" if self.page else "") + (f" · {self.section}" if self.section else "")
        )
        body = self.text.partition("\n")[2].replace("\n", " ")
        return f"{self.rank}. [{self.score:.2f}] {where}\n   {body[:160]}{'...' if len(body) > 160 else ''}"

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "page": self.page or None,
            "score": round(self.score, 4),
            "text": self.text,
        }


class ChunkStore:
    """One collection of chunks (and its record of documents) in Milvus."""

    def __init__(self, settings: Settings, name: str, dimension: int | None = None, create: bool = True):
        from docbot_lib.clients.milvus import milvus_client, supports_bm25

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
            raise BadInput(
                f"invalid collection name {name!r}", "use letters, digits and underscores, starting with a letter"
            )
        self.settings, self.name, self.docs = settings, name, record_collection(name)
        from docbot_lib.clients.milvus import tolerate_stale_grants

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

            wait_until_permitted(lambda: self._create(dimension))
        else:
            raise NotFound(
                f"collection {name!r} does not exist in Milvus at {settings.milvus_uri}",
                "ingest documents first: `docbot ingest PATH` (or notebook 05)",
                service="milvus",
            )
        if not self.client.has_collection(self.docs):
            self._create_record()
        self.client.load_collection(name)
        self.client.load_collection(self.docs)

    def describe(self) -> str:
        if self.hybrid:
            return f"hybrid search: dense (HNSW, COSINE) + BM25 (weight {BM25_WEIGHT:g}), reciprocal-rank fusion"
        return f"dense search only (HNSW, COSINE): Milvus {self.version} has no BM25 full-text search (needs 2.5+)"

    # -- schema -------------------------------------------------------------------------------------
    def _create(self, dimension: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=16384, enable_analyzer=self.hybrid)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("root", DataType.VARCHAR, max_length=2048)
        schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX)
        schema.add_field("section", DataType.VARCHAR, max_length=SECTION_MAX)
        schema.add_field("page", DataType.INT64)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        index = self.client.prepare_index_params()
        index.add_index(field_name="dense", **DENSE_INDEX)
        if self.hybrid:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=["text"],
                    output_field_names=["sparse"],
                )
            )
            index.add_index(field_name="sparse", **SPARSE_INDEX)
        self.client.create_collection(self.name, schema=schema, index_params=index, consistency_level="Strong")

    def _create_record(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("root", DataType.VARCHAR, max_length=2048)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("chunks", DataType.INT64)
        schema.add_field("ingested_at", DataType.INT64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field; unused
        index = self.client.prepare_index_params()
        index.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
        self.client.create_collection(self.docs, schema=schema, index_params=index, consistency_level="Strong")

    # -- the record of documents -------------------------------------------------------------------
    @staticmethod
    def _doc_key(root: str, source: str) -> str:
        return hashlib.sha256(f"{root}\x00{source}".encode()).hexdigest()[:32]

    def _query_all(self, collection: str, filter: str, fields: list[str]) -> list[dict]:
        rows, batch, offset = [], 5000, 0
        while True:
            page = self.client.query(collection, filter=filter, output_fields=fields, limit=batch, offset=offset)
            rows += page
            if len(page) < batch:
                return rows
            offset += batch

    def documents(self) -> dict[tuple[str, str], str]:
        """{(root, source): doc_hash} of every ingested document."""
        rows = self._query_all(self.docs, 'key != ""', ["root", "source", "doc_hash"])
        return {(r["root"], r["source"]): r["doc_hash"] for r in rows}

    def _doc_filter(self, root: str, source: str) -> str:
        return f"root == {quote(root)} and source == {quote(source)}"

    # -- writes --------------------------------------------------------------------------------------
    def replace_documents(self, documents: list[tuple[str, str, str, list, list]], existing: set) -> tuple[int, int]:
        """Make each document's rows exactly its new chunks, leaving nothing half-written. `documents` holds
        (root, source, doc_hash, chunks, vectors); `existing` the (root, source) of those already recorded
        (only they have previous rows). Returns (chunks written, previous chunks removed).

        A version's rows have keys of their own (chunk_key includes the document's hash), so the new rows go
        in next to the previous version's, then those are deleted, then the documents are recorded (last: a
        recorded document has all its rows). If writing or deleting fails, the new rows are removed again and
        the previous version stays as it was; the exception is raised. If only the record fails, a document
        that had a previous version keeps the new one and NotRecorded is raised: the next run sees the
        document changed, writes the same rows again and records it. A removal that fails too (Milvus gone)
        leaves rows the next run replaces in the same way."""
        rows, previous, records = [], set(), []
        for root, source, doc_hash, chunks, vectors in documents:
            rows += [
                {
                    "pk": c.pk,
                    "text": c.text,
                    "dense": v,
                    "source": c.source,
                    "root": c.root,
                    "title": fit(c.title, TITLE_MAX),
                    "section": fit(c.section, SECTION_MAX),
                    "page": c.page,
                    "chunk_index": c.chunk_index,
                    "doc_hash": doc_hash,
                }
                for c, v in zip(chunks, vectors, strict=True)
            ]
            if (root, source) in existing:
                previous |= {r["pk"] for r in self._query_all(self.name, self._doc_filter(root, source), ["pk"])}
            records.append(
                {
                    "key": self._doc_key(root, source),
                    "root": root,
                    "source": source,
                    "doc_hash": doc_hash,
                    "chunks": len(chunks),
                    "ingested_at": int(time.time()),
                    "vec": [0.0, 0.0],
                }
            )
        added = {r["pk"] for r in rows} - previous  # what a leftover of an interrupted run does not hold yet
        stale = sorted(previous - {r["pk"] for r in rows})
        try:
            for start in range(0, len(rows), 1000):
                self.client.upsert(self.name, rows[start : start + 1000])
            if stale:
                self.client.delete(self.name, ids=stale)
        except Exception:
            self._remove(sorted(added))
            raise
        try:
            if records:
                self.client.upsert(self.docs, records)
        except Exception as exc:
            first_versions = {(r["root"], r["source"]) for r in records} - set(existing)
            self._remove(
                sorted(r["pk"] for r in rows if r["pk"] in added and (r["root"], r["source"]) in first_versions)
            )
            if len(first_versions) < len(records):
                raise NotRecorded(
                    f"its new version is stored, but recording it failed ({type(exc).__name__}: "
                    f"{exc}): the next run records it"
                ) from exc
            raise
        return len(rows), len(stale)

    def _remove(self, pks: list[str]) -> None:
        """Best effort: take rows out again after a failed write (the next run replaces what stays)."""
        try:
            if pks:
                self.client.delete(self.name, ids=pks)
        except Exception:  # noqa: BLE001 - the write's own error is the one to report
            pass

    def delete_document(self, root: str, source: str) -> int:
        """Remove a document's chunks and its record; returns the number of chunks removed."""
        pks = [r["pk"] for r in self._query_all(self.name, self._doc_filter(root, source), ["pk"])]
        if pks:
            self.client.delete(self.name, ids=pks)
        self.client.delete(self.docs, ids=[self._doc_key(root, source)])
        return len(pks)

    def flush(self) -> None:
        # unflushed rows search ~20x slower on Milvus Lite
        self.client.flush(self.name)
        self.client.flush(self.docs)

    def count(self) -> int:
        return len(self._query_all(self.name, 'pk != ""', ["pk"]))

    # -- search --------------------------------------------------------------------------------------
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
        """The k best chunks: dense and (where available) BM25 candidates fused by reciprocal rank, with at
        most `per_source` chunks of one document before the others have had their turn (None: no limit).
        Each hit's `score` is its cosine similarity; with `min_similarity`, hits below it are dropped
        (and a question whose best chunk is below it gets no hits: nothing relevant)."""

        candidates = max(k * 4, 20)
        dense = self.client.search(
            self.name,
            data=[query_vector],
            anns_field="dense",
            limit=candidates,
            filter=filter,
            search_params={"metric_type": "COSINE", "params": {"ef": max(64, candidates)}},
            output_fields=OUTPUT,
        )[0]
        # hit.id: the primary key under its own name ("pk"), or "id" from a server that does not name it (2.3)
        rankings = [[h.id for h in dense]]
        rows = {h.id: {**h["entity"], "score": float(h["distance"])} for h in dense}
        keywords = keywords_of(query_text)
        if hybrid and self.hybrid and keywords:
            sparse = self.client.search(
                self.name,
                data=[keywords],
                anns_field="sparse",
                limit=candidates,
                filter=filter,
                search_params={"metric_type": "BM25", "params": {}},
                output_fields=OUTPUT,
            )[0]
            rankings.append([h.id for h in sparse])
            for h in sparse:
                rows.setdefault(h.id, {**h["entity"], "score": None})  # cosine fetched below if needed
        fused = reciprocal_rank_fusion(rankings, [1.0, BM25_WEIGHT])
        order = diversify(
            sorted(fused, key=lambda pk: -fused[pk]), lambda pk: (rows[pk]["root"], rows[pk]["source"]), per_source
        )[: 2 * k]
        self._fill_similarity([pk for pk in order if rows[pk]["score"] is None], rows, query_vector)
        if min_similarity is not None:
            if not rows or max(r["score"] for r in rows.values() if r["score"] is not None) < min_similarity:
                return []
            order = [pk for pk in order if rows[pk]["score"] >= min_similarity]
        return [
            Hit(
                rank,
                rows[pk]["source"],
                rows[pk]["title"],
                rows[pk]["section"],
                rows[pk]["page"],
                rows[pk]["text"],
                rows[pk]["score"],
                fused[pk],
                rows[pk]["root"],
                rows[pk]["chunk_index"],
            )
            for rank, pk in enumerate(order[:k], start=1)
        ]

    def _fill_similarity(self, pks: list[str], rows: dict, query_vector: list[float]) -> None:
        """Cosine similarity of chunks only BM25 found (their vectors fetched for the few that rank)."""
        if not pks:
            return
        import numpy as np

        q = np.asarray(query_vector, dtype=np.float32)
        for pk in pks:
            rows[pk]["score"] = -1.0  # unless its vector comes back below
        for row in self.client.get(self.name, ids=pks, output_fields=["dense"]):
            vector = np.asarray(row["dense"], dtype=np.float32)
            rows[row["pk"]]["score"] = float(vector @ q) / max(float(np.linalg.norm(vector) * np.linalg.norm(q)), 1e-12)

    def close(self) -> None:
        self.client.close()


def fit(value: str, limit: int) -> str:
    """`value` cut to at most `limit` bytes of UTF-8 (Milvus's VARCHAR limit), at a character boundary, with
    "\u2026" where it was cut."""
    data = value.encode()
    if len(data) <= limit:
        return value
    return data[: limit - 3].decode(errors="ignore") + "\u2026"


def source_filter(sources: list[str]) -> str:
    """A filter expression keeping chunks from these sources only."""
    return "source in [" + ", ".join(quote(s) for s in sources) + "]"
