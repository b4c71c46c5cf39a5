"""The chunk store in Milvus: an explicit schema, incremental writes, and hybrid (dense + BM25) search.

    store = open_store(settings)                 # the collection's ChunkStore, one per process
    hits = search(settings, "How do I ...?")     # embedded, hybrid where the server has BM25, one reconnect

The step in three modules: `chunks` (the two collections, ChunkStore: schema, writes, search), `ranking`
(keywords, reciprocal-rank fusion, one chunk a page first) and `access` (open_store, search, inspect_collection).

Layer: pipeline, step `store`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.store.access import forget_store, inspect_collection, open_store, search
from docbot_lib.pipeline.store.chunks import ChunkStore, Hit

__all__ = ["ChunkStore", "Hit", "forget_store", "inspect_collection", "open_store", "search"]
