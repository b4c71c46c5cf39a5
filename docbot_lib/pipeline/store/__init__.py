"""The chunk store in Milvus: an explicit schema, incremental writes, and hybrid (dense + BM25) search.

    store = open_store(settings)                 # the collection's ChunkStore, one per process
    hits = search(settings, "How do I ...?")     # embedded, hybrid where the server has BM25, one reconnect

The step in seven modules: `chunks` (ChunkStore, one collection and its record, combining the four next),
`schema` (the two collections' creation), `record` (reading rows, the record of documents), `writes`
(ChunkWriter: documents replaced whole, deleted), `retrieval` (ChunkSearch: hybrid fusion, similarity; Hit),
`ranking` (keywords, reciprocal-rank fusion, one chunk a page first) and `access` (open_store, search,
inspect_collection).

Layer: pipeline, step `store`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.store.access import forget_store, inspect_collection, open_store, search
from docbot_lib.pipeline.store.chunks import ChunkStore, Hit

__all__ = ["ChunkStore", "Hit", "forget_store", "inspect_collection", "open_store", "search"]
