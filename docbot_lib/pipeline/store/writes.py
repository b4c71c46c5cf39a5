"""The writes of a collection and its record: a document's rows replaced whole (never half-written), a document
deleted, the collections flushed.

Layer: pipeline, step `store` (its writes): imports store.schema and store.record.
"""

from __future__ import annotations

import time

from docbot_lib.pipeline.store.record import doc_filter, doc_key, query_all
from docbot_lib.pipeline.store.schema import SECTION_MAX, TITLE_MAX, fit


class NotRecorded(Exception):
    """A changed document's new rows replaced its previous ones, but its record was not updated."""


class ChunkWriter:
    """Writes to the chunks of collection `name` and its record `docs`, through `client`."""

    def __init__(self, client, name: str, docs: str):
        self.client, self.name, self.docs = client, name, docs

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
                previous |= {r["pk"] for r in query_all(self.client, self.name, doc_filter(root, source), ["pk"])}
            records.append(
                {
                    "key": doc_key(root, source),
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
        pks = [r["pk"] for r in query_all(self.client, self.name, doc_filter(root, source), ["pk"])]
        if pks:
            self.client.delete(self.name, ids=pks)
        self.client.delete(self.docs, ids=[doc_key(root, source)])
        return len(pks)

    def flush(self) -> None:
        # unflushed rows search ~20x slower on Milvus Lite
        self.client.flush(self.name)
        self.client.flush(self.docs)
