"""The ingestion run: discover -> load -> chunk -> embed -> write, incrementally, with its report.

Layer: pipeline, step `ingest` (the run): imports core, clients, the steps before it and ingest's own modules.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.ingest.chunking import Chunk, chunk_document
from docbot_lib.pipeline.ingest.loaders import LoadedDoc, load
from docbot_lib.pipeline.ingest.sources import BadDocument, SourceItem, discover, too_large


def preview(settings: Settings, path: str | Path, limit: int = 3) -> list[Chunk]:
    """The first chunks one document would give (nothing is written): to see what the loader and
    chunker make of a page."""
    from docbot_lib.clients.embeddings import get_embeddings

    (item,) = discover(settings, [str(path)])
    data = item.fetch()
    embedder = get_embeddings(settings)
    doc = load(item, data, hashlib.sha256(data).hexdigest())
    return chunk_document(doc, embedder.count_tokens, settings.chunk_tokens, embedder.max_tokens)[:limit]


# -- the report -----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    collection: str
    documents: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (source, note): ingested, with a remark
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    retrieval: str = ""
    wall_seconds: float = 0.0
    SHOWN = 20  # skipped documents and notes printed (all are in the lists)

    @property
    def total_seconds(self) -> float:
        """Wall time of the run (the stages, plus what is between them)."""
        return self.wall_seconds or sum(self.seconds.values())

    def __str__(self) -> str:
        lines = [
            f"collection {self.collection!r} ({self.retrieval})",
            f"documents: {self.documents} seen, {self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.deleted} deleted, {len(self.skipped)} skipped",
            f"chunks: {self.chunks_written} written, {self.chunks_deleted} removed",
            "time: "
            + ", ".join(f"{stage} {sec:.1f} s" for stage, sec in self.seconds.items())
            + f" (wall time {self.total_seconds:.1f} s)",
        ]
        for label, items, name in (("skipped", self.skipped, "skipped"), ("note   ", self.notes, "notes")):
            lines += [f"{label} {source}: {reason}" for source, reason in items[: self.SHOWN]]
            if len(items) > self.SHOWN:
                lines.append(f"{label} ... and {len(items) - self.SHOWN} more (all of them: report.{name})")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


# -- the pipeline ---------------------------------------------------------------------------------
class _Timer:
    def __init__(self, report: IngestReport):
        self.report = report

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.report.seconds[stage] = timer.report.seconds.get(stage, 0.0) + time.perf_counter() - self.start

        return _Span()


def ingest(
    settings: Settings,
    inputs: Iterable[str],
    collection: str | None = None,
    pattern: str | None = None,
    progress: bool = True,
    batch_chunks: int = 512,
) -> IngestReport:
    """Ingest documents into the collection incrementally; return (and do not print) the report."""
    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.pipeline.store import ChunkStore

    started = time.perf_counter()
    name = collection or settings.milvus_collection
    report = IngestReport(name)
    timer = _Timer(report)
    inputs = list(inputs)
    with timer("discover"):
        items = discover(settings, inputs, pattern)
    embedder = get_embeddings(settings)
    store = ChunkStore(settings, name, dimension=embedder.dimension)
    report.retrieval = store.describe()
    report.documents = len(items)

    with timer("hash"):
        recorded = store.documents()  # {(root, source): doc_hash}
        todo = _changed(settings, items, recorded, report)
    with timer("delete"):
        _remove_deleted(store, items, recorded, report)
    _load_and_write(settings, store, embedder, todo, recorded, report, timer, progress, batch_chunks)
    with timer("write"):
        store.flush()
    report.wall_seconds = time.perf_counter() - started
    return report


def _changed(
    settings: Settings, items: list[SourceItem], recorded: dict, report: IngestReport
) -> list[tuple[SourceItem, bytes, str]]:
    """1. What changed: hash the bytes (cheap), compare with the record kept next to the chunks; what cannot be
    read, is too large or repeats another document is skipped with its reason."""
    limit = int(settings.max_document_mb * (1 << 20))
    todo: list[tuple[SourceItem, bytes, str]] = []
    seen_hashes: dict[str, str] = {}
    for item in items:
        if item.size is not None and item.size > limit:
            _skip(report, recorded, item.root, item.source, too_large(settings, item.size))
            continue
        try:
            data = item.fetch()
        except BadDocument as exc:
            _skip(report, recorded, item.root, item.source, str(exc))
            continue
        except OSError as exc:
            _skip(report, recorded, item.root, item.source, f"cannot read: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. an S3 ClientError: this document only
            _skip(report, recorded, item.root, item.source, f"cannot fetch: {type(exc).__name__}: {exc}")
            continue
        if len(data) > limit:  # it grew since it was listed
            _skip(report, recorded, item.root, item.source, too_large(settings, len(data)))
            continue
        doc_hash = hashlib.sha256(data).hexdigest()
        if doc_hash in seen_hashes and seen_hashes[doc_hash] != item.source:
            _skip(report, recorded, item.root, item.source, f"same content as {seen_hashes[doc_hash]}")
            continue
        seen_hashes[doc_hash] = item.source
        if recorded.get((item.root, item.source)) == doc_hash:
            report.unchanged += 1
            continue
        todo.append((item, data, doc_hash))
    return todo


def _remove_deleted(store, items: list[SourceItem], recorded: dict, report: IngestReport) -> None:
    """2. Deleted: documents recorded under a folder/prefix ingested now that are no longer there."""
    scanned_roots = {item.root for item in items if item.root}
    present = {(item.root, item.source) for item in items}
    for key in sorted(k for k in recorded if k[0] in scanned_roots and k not in present):
        try:
            report.chunks_deleted += store.delete_document(*key)
        except Exception as exc:  # noqa: BLE001 - still recorded: the next run tries again
            report.skipped.append(
                (
                    key[1],
                    f"deleted, but its chunks could not be removed "
                    f"({type(exc).__name__}: {exc}): the next run tries again",
                )
            )
            continue
        report.deleted += 1


def _load_and_write(
    settings: Settings,
    store,
    embedder,
    todo: list[tuple[SourceItem, bytes, str]],
    recorded: dict,
    report: IngestReport,
    timer: _Timer,
    progress: bool,
    batch_chunks: int,
) -> None:
    """3. Load, chunk, embed and write, a batch of documents at a time (bounded memory; resumable). One thread:
    loading in a second one, next to torch's, made the whole run no faster on 2 cores (GIL contention)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="documents", unit="doc", disable=not progress or not todo)
    pending: list[tuple[LoadedDoc, list[Chunk]]] = []
    pending_chunks = 0
    for index, (item, data, doc_hash) in enumerate(todo):
        with timer("load+chunk"):
            try:
                doc = load(item, data, doc_hash)
                chunks = chunk_document(doc, embedder.count_tokens, settings.chunk_tokens, embedder.max_tokens)
            except Exception as exc:  # noqa: BLE001 - BadDocument says why; anything else is a parser's failure
                reason = str(exc) if isinstance(exc, BadDocument) else f"cannot be parsed ({type(exc).__name__}: {exc})"
                _skip(report, recorded, item.root, item.source, reason)
                bar.update(1)
                continue
            report.notes += [(item.source, note) for note in doc.notes]
        pending.append((doc, chunks))
        pending_chunks += len(chunks)
        if pending_chunks >= batch_chunks or index == len(todo) - 1:
            _write_batch(store, embedder, pending, recorded, report, timer)
            bar.update(len(pending))
            pending, pending_chunks = [], 0
    if pending:
        _write_batch(store, embedder, pending, recorded, report, timer)
        bar.update(len(pending))
    bar.close()


def _skip(report: IngestReport, recorded, root: str, source: str, reason: str) -> None:
    """One reason line for a document that is not (re)written; a changed one keeps its previous version
    (its rows are removed only once the new version's rows are in)."""
    if (root, source) in recorded:
        reason += "; kept the previous version"
    report.skipped.append((source, reason))


def _write_batch(store, embedder, batch, recorded, report: IngestReport, timer: _Timer) -> None:
    with timer("embed"):
        documents = _embed(embedder, batch, recorded, report)
    with timer("write"):
        _store(store, documents, recorded, report)


def _embed(embedder, batch, recorded, report: IngestReport) -> list:
    """(doc, chunks, vectors) of each document: all in one go (fast); when that fails, one document at
    a time, so only the one that fails is skipped."""
    texts = [c.text for _doc, chunks in batch for c in chunks]
    try:
        vectors = embedder.embed_documents(texts) if texts else []
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} chunks")
    except Exception as exc:  # noqa: BLE001 - a document's failure is reported, the run goes on
        if len(batch) > 1:
            return [one for pair in batch for one in _embed(embedder, [pair], recorded, report)]
        doc = batch[0][0]
        _skip(report, recorded, doc.root, doc.source, f"could not be embedded: {type(exc).__name__}: {exc}")
        return []
    documents, offset = [], 0
    for doc, chunks in batch:
        documents.append((doc, chunks, vectors[offset : offset + len(chunks)]))
        offset += len(chunks)
    return documents


def _store(store, documents, recorded, report: IngestReport) -> None:
    """Write documents in one go; when that fails, one by one, so only the failing one is skipped (the
    store has taken its new rows out again: a changed one keeps its previous version)."""
    from docbot_lib.pipeline.store.chunks import NotRecorded

    if not documents:
        return
    try:
        written, removed = store.replace_documents(
            [(doc.root, doc.source, doc.doc_hash, chunks, vectors) for doc, chunks, vectors in documents], set(recorded)
        )
    except Exception as exc:  # noqa: BLE001 - a document's failure is reported, the run goes on
        if len(documents) > 1:
            for one in documents:
                _store(store, [one], recorded, report)
            return
        doc = documents[0][0]
        if isinstance(exc, NotRecorded):
            report.skipped.append((doc.source, str(exc)))
        else:
            _skip(report, recorded, doc.root, doc.source, f"could not be written: {type(exc).__name__}: {exc}")
        return
    report.chunks_written += written
    report.chunks_deleted += removed
    for doc, _chunks, _vectors in documents:
        if (doc.root, doc.source) in recorded:
            report.changed += 1
        else:
            report.new += 1
