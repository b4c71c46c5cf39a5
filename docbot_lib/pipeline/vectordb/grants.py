"""What Doc Bot's roles are and where they are granted: the roles' and users' names (`PLAIN`: one learner's or
none; a class gives each learner LabNames(user)), the privileges of the reader and the writer, and the lab's
collections they are granted on (`lab_collections`: the chatbot's, the evaluation's, each with its `_docs`
record, and the probe that `verify_least_privilege` uses).

Layer: pipeline, step `vectordb` (its names and grants): imports core.
"""

from __future__ import annotations

from docbot_lib.core.names import LabNames

PLAIN = LabNames()  # one learner (or none): the plain names; a class gives each learner LabNames(user)
READER_ROLE, WRITER_ROLE = PLAIN.reader_role, PLAIN.writer_role
APP_USER, INGEST_USER = PLAIN.app_user, PLAIN.ingest_user
# Milvus 2.3 privilege names (checked against the server: it rejects unknown ones), by object type.
READER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "Collection": (
        "Search",
        "Query",
        "Load",
        "GetLoadState",
        "GetLoadingProgress",
        "GetStatistics",
        "IndexDetail",
        "ShowPartitions",
        "HasPartition",
    ),
    "Global": ("DescribeCollection", "ShowCollections"),
}
WRITER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "Collection": READER_PRIVILEGES["Collection"]
    + ("Insert", "Delete", "Upsert", "Flush", "GetFlushState", "CreateIndex", "DropIndex", "Release"),
    "Global": READER_PRIVILEGES["Global"] + ("CreateCollection",),
}


EVAL_SUFFIX = "_eval"  # notebook 07's collection: <collection>_eval
EVAL_SMALL_CHUNKS = (100,)  # its chunk-size variants: <collection>_eval_c100


def record_collection(name: str) -> str:
    """The collection that records what was ingested into collection `name`."""
    return f"{name}_docs"


def lab_collections(collection: str) -> list[str]:
    """Every collection the lab creates around `collection`, each with the `_docs` record the store keeps:
    the chatbot's, the evaluation's and its chunk-size variants, and the probe. The roles are granted on these."""
    evaluation = f"{collection}{EVAL_SUFFIX}"
    stores = [collection, evaluation] + [f"{evaluation}_c{tokens}" for tokens in EVAL_SMALL_CHUNKS]
    return [name for store in stores for name in (store, record_collection(store))] + [probe_collection(collection)]


def _privileges(spec: dict[str, tuple[str, ...]], collections: list[str]) -> list[tuple[str, str, str]]:
    rows = []
    # Global first: grants reach the proxies in the order given, so once a collection grant the probe proves
    # has applied, the global ones (CreateCollection: ingestion's first call) have too
    for object_type, names in sorted(spec.items(), key=lambda item: item[0] != "Global"):
        targets = collections if object_type == "Collection" else ["*"]
        rows += [(object_type, name, target) for name in names for target in targets]
    return rows


def probe_collection(collection: str) -> str:
    """The small collection `verify_least_privilege` proves the grants on (same roles, same privileges)."""
    return f"{collection}_rbac_probe"
