"""The store as the rest of Doc Bot uses it: one ChunkStore per collection and process (`open_store`), searched
with the question embedded (`search`, reconnecting once on a dropped channel), and a look inside a collection
(`inspect_collection`, notebook 05).

Layer: pipeline, step `store` (its access): imports core, clients, the steps before it and store.chunks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.store.chunks import OUTPUT, ChunkStore, Hit


@dataclass
class CollectionView:
    """What a collection holds, for a person to read: its schema, functions and indexes, and one chunk."""

    name: str
    fields: list[str]  # "name  TYPE  (params)"
    functions: list[str]  # "bm25: BM25(text) -> sparse"
    indexes: list[str]  # "dense: HNSW, COSINE, {...}"
    rows: int
    chunk: dict = field(default_factory=dict)  # one row: its metadata, its text and the head of its vector
    dimension: int = 0

    def __str__(self) -> str:
        lines = [
            f"collection {self.name!r}: {self.rows} chunks",
            "fields:",
            *[f"  {f}" for f in self.fields],
            "functions (Milvus computes these itself on insert):",
            *([f"  {f}" for f in self.functions] or ["  (none: no BM25 on this server)"]),
            "indexes:",
            *[f"  {i}" for i in self.indexes],
        ]
        if self.chunk:
            meta = {k: v for k, v in self.chunk.items() if k not in ("text", "dense")}
            head = ", ".join(f"{x:.4f}" for x in self.chunk.get("dense", []))
            lines += [
                "one chunk:",
                *[f"  {k}: {v}" for k, v in meta.items()],
                "  text: " + " ".join(str(self.chunk.get("text", "")).split())[:300],
                f"  dense: [{head}, ...] ({self.dimension} numbers)",
            ]
        return "\n".join(lines)


def inspect_collection(settings: Settings, collection: str | None = None, numbers: int = 8) -> CollectionView:
    """The collection's schema, its BM25 function (where the server has one), its indexes, and one chunk with
    its metadata and the first `numbers` numbers of its dense vector."""
    client = open_store(settings, collection).client
    name = collection or settings.milvus_collection
    described = client.describe_collection(name)
    fields = []
    for f in described.get("fields", []):
        kind = getattr(f.get("type"), "name", str(f.get("type")))
        params = {k: v for k, v in (f.get("params") or {}).items()}
        notes = (["primary key"] if f.get("is_primary") else []) + ([f"{k}={v}" for k, v in params.items()])
        fields.append(f"{f['name']:<12} {kind:<20} {', '.join(notes)}".rstrip())
    functions = [
        f"{fn.get('name')}: {getattr(fn.get('type'), 'name', fn.get('type'))}"
        f"({', '.join(fn.get('input_field_names', []))}) -> {', '.join(fn.get('output_field_names', []))}"
        for fn in described.get("functions", []) or []
    ]
    indexes = []
    for index in client.list_indexes(name):
        info = client.describe_index(name, index)
        indexes.append(
            f"{info.get('field_name', index)}: {info.get('index_type')}, {info.get('metric_type')}"
            + "".join(
                f", {k}={v}"
                for k, v in info.items()
                if k in ("M", "efConstruction", "bm25_k1", "bm25_b", "inverted_index_algo")
            )
        )
    rows = client.query(name, filter="chunk_index >= 0", output_fields=[*OUTPUT, "dense"], limit=1)
    chunk, dimension = {}, 0
    if rows:
        row = dict(rows[0])
        vector = list(row.pop("dense", []) or [])
        dimension = len(vector)
        chunk = {**{k: row[k] for k in OUTPUT if k in row}, "dense": [float(x) for x in vector[:numbers]]}
    return CollectionView(
        name, fields, functions, indexes, int(client.get_collection_stats(name)["row_count"]), chunk, dimension
    )


_STORES: dict[tuple, ChunkStore] = {}


_STORES_LOCK = threading.Lock()


def open_store(settings: Settings, collection: str | None = None) -> ChunkStore:
    """The collection's store, opened once per process and reused: pymilvus shares one connection per
    address, and opening and closing a client per question makes Milvus drop it (GOAWAY too_many_pings)."""
    name = collection or settings.milvus_collection
    key = (settings.milvus_uri, settings.secret("milvus_token"), settings.names.database, name)
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = ChunkStore(settings, name, create=False)
        return _STORES[key]


def forget_store(settings: Settings, collection: str | None = None) -> None:
    """Drop a cached store (after the collection was dropped, or its connection failed)."""
    key = (
        settings.milvus_uri,
        settings.secret("milvus_token"),
        settings.names.database,
        collection or settings.milvus_collection,
    )
    with _STORES_LOCK:
        _STORES.pop(key, None)


def search(
    settings: Settings,
    question: str,
    k: int | None = None,
    collection: str | None = None,
    filter: str = "",
    min_similarity: float | None = None,
) -> list[Hit]:
    """Embed the question and return the k best chunks of the collection (hybrid where available)."""
    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.clients.milvus import reconnecting

    vector = get_embeddings(settings).embed_query(question)

    def ask() -> list[Hit]:
        return open_store(settings, collection).search(
            vector,
            question,
            k or settings.search_k,
            filter=filter,
            min_similarity=min_similarity,
            hybrid=settings.hybrid,
            per_source=settings.max_chunks_per_source,
        )

    return reconnecting(ask, on_drop=lambda: forget_store(settings, collection))
