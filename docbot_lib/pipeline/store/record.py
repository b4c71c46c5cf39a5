"""Reading the rows of a collection, and the ingestion record `<name>_docs`: one row per document (its key from
root and source), so that a re-run knows what changed.

Layer: pipeline, step `store` (the record of documents): imports nothing of Doc Bot's.
"""

from __future__ import annotations

import hashlib
import json


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value, ensure_ascii=False)


def doc_key(root: str, source: str) -> str:
    """A document's primary key in the record."""
    return hashlib.sha256(f"{root}\x00{source}".encode()).hexdigest()[:32]


def doc_filter(root: str, source: str) -> str:
    """A filter expression keeping one document's rows."""
    return f"root == {quote(root)} and source == {quote(source)}"


def query_all(client, collection: str, filter: str, fields: list[str]) -> list[dict]:
    """Every row of `collection` that `filter` keeps, read in pages."""
    rows, batch, offset = [], 5000, 0
    while True:
        page = client.query(collection, filter=filter, output_fields=fields, limit=batch, offset=offset)
        rows += page
        if len(page) < batch:
            return rows
        offset += batch


def documents(client, docs: str) -> dict[tuple[str, str], str]:
    """{(root, source): doc_hash} of every document in the record `docs`."""
    rows = query_all(client, docs, 'key != ""', ["root", "source", "doc_hash"])
    return {(r["root"], r["source"]): r["doc_hash"] for r in rows}
