"""The two collections of an index and how they are created: the chunks' schema (dense HNSW/COSINE, and where the
server has it a BM25 sparse vector Milvus computes from `text`) and the ingestion record `<name>_docs`.

Layer: pipeline, step `store` (its schema): imports nothing of Doc Bot's.
"""

from __future__ import annotations

DENSE_INDEX = {"index_type": "HNSW", "metric_type": "COSINE", "params": {"M": 16, "efConstruction": 200}}
SPARSE_INDEX = {
    "index_type": "SPARSE_INVERTED_INDEX",
    "metric_type": "BM25",
    "params": {"inverted_index_algo": "DAAT_MAXSCORE"},
}
# The schema's limits of the title and section fields: longer values are cut to fit (fit()), not refused. A page
# whose <h2> is never closed makes its whole text one heading (SQLite's keyword_index.html: 61,358 characters),
# and Milvus refused the page's every row.
TITLE_MAX, SECTION_MAX = 1024, 2048


def create_chunk_collection(client, name: str, dimension: int, hybrid: bool) -> None:
    """The collection of chunks `name`, with the BM25 function and its sparse index when `hybrid`."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("text", DataType.VARCHAR, max_length=16384, enable_analyzer=hybrid)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("source", DataType.VARCHAR, max_length=2048)
    schema.add_field("root", DataType.VARCHAR, max_length=2048)
    schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX)
    schema.add_field("section", DataType.VARCHAR, max_length=SECTION_MAX)
    schema.add_field("page", DataType.INT64)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index(field_name="dense", **DENSE_INDEX)
    if hybrid:
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
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


def create_record_collection(client, docs: str) -> None:
    """The record `docs` of what was ingested: one row per document (root, source, doc_hash, chunks)."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("root", DataType.VARCHAR, max_length=2048)
    schema.add_field("source", DataType.VARCHAR, max_length=2048)
    schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("chunks", DataType.INT64)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field; unused
    index = client.prepare_index_params()
    index.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_collection(docs, schema=schema, index_params=index, consistency_level="Strong")


def fit(value: str, limit: int) -> str:
    """`value` cut to at most `limit` bytes of UTF-8 (Milvus's VARCHAR limit), at a character boundary, with
    "\u2026" where it was cut."""
    data = value.encode()
    if len(data) <= limit:
        return value
    return data[: limit - 3].decode(errors="ignore") + "\u2026"
