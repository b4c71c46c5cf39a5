"""Feed the bot: find documents, load them (PDF, HTML, Markdown, text), chunk them by structure and size
in the embedding model's own tokens, embed them, and write them to Milvus — incrementally.

    report = ingest(settings, ["docs/"])         # or "s3://bucket/prefix/", "https://...", a file
    print(report)

A re-run skips unchanged documents (by content hash, before parsing), replaces the chunks of changed
ones and removes those of deleted ones, without dropping the collection; the record of what was
ingested lives in Milvus next to the chunks (see docbot_lib.pipeline.store). A bad document is skipped with
its reason in the report and leaves no rows behind; a changed document whose new version cannot be
loaded, embedded or written keeps its previous version. Symlinks are followed only inside the folder;
URLs are fetched within the size cap and a timeout.

The step in four modules: `sources` (discover), `loaders` (PDF, HTML, Markdown, text), `chunking`
(structure-aware, token-sized), `run` (the incremental run and its report).

Layer: pipeline, step `ingest`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.ingest.run import IngestReport, ingest, preview

__all__ = ["IngestReport", "ingest", "preview"]
