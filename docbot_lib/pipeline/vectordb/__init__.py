"""Milvus day 2: what the server is, and its security (root password, roles, users, grants, least privilege).

    info = server_info(connect(uri, token), uri)        # Milvus or Milvus Lite, version, BM25, RBAC
    result = secure(uri, collection, env_file)          # change_root_password + ensure_roles_and_users
    report = verify_least_privilege(uri, collection, tokens)     # each role tried for real, OK/FAIL lines

Connecting (and the server's capabilities) is the client layer's: docbot_lib.clients.milvus; the chunks and
their record are the store's: docbot_lib.pipeline.store. A class of learners: `secure_learner`, `drop_learner`.

Roles Doc Bot creates, granted on the lab's collections (`lab_collections`: the chatbot's collection, the
evaluation's, each with its `_docs` record, and a small probe collection that `verify_least_privilege` uses,
so that the grants can be proved before anything is ingested):
  docbot_reader  search and query (the chatbot app, user `docbot_app`)
  docbot_writer  the reader's privileges + insert, delete, upsert, flush, indexes (the ingestion job,
                 user `docbot_ingest`).
Three privileges are global in Milvus 2.3 (object "*", every collection of the database): DescribeCollection and
ShowCollections (both roles: a client lists and describes collections before it opens one), and
CreateCollection (the writer: ingestion creates its collection and record). Neither role gets DropCollection,
which is global too: it would allow dropping every collection; dropping stays root's.
Generated passwords are stored, never printed: in an env file (mode 600, written whole then renamed) and,
on a cluster, in one Secret per identity (`credentials_secrets`: root's, the writer's, the reader's).

The step in five modules: `grants` (the roles' and users' names, their privileges, the lab's collections),
`credentials` (token keys, passwords, root's changed, the Secrets), `info` (server_info, inspect), `roles`
(secure, secure_learner, drop_learner) and `verify` (verify_least_privilege, wait_until_permitted).

Layer: pipeline, step `vectordb`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.core.envfile import read_env, write_env
from docbot_lib.pipeline.vectordb.credentials import (
    APP_TOKEN_KEY,
    INGEST_TOKEN_KEY,
    READER_SECRET,
    ROOT_SECRET,
    ROOT_TOKEN_KEY,
    SECRET_OF_KEY,
    WRITER_SECRET,
    change_root_password,
    credentials_secrets,
    generate_password,
    learner_tokens,
)
from docbot_lib.pipeline.vectordb.grants import (
    APP_USER,
    EVAL_SMALL_CHUNKS,
    EVAL_SUFFIX,
    INGEST_USER,
    PLAIN,
    READER_PRIVILEGES,
    READER_ROLE,
    WRITER_PRIVILEGES,
    WRITER_ROLE,
    lab_collections,
    probe_collection,
    record_collection,
)
from docbot_lib.pipeline.vectordb.info import ServerInfo, inspect, server_info
from docbot_lib.pipeline.vectordb.roles import (
    SecureResult,
    drop_learner,
    ensure_roles_and_users,
    secure,
    secure_learner,
)
from docbot_lib.pipeline.vectordb.verify import (
    GRANT_TIMEOUT,
    PROBE_DIM,
    Verdict,
    VerifyReport,
    verify_least_privilege,
    wait_until_permitted,
)

__all__ = [
    "APP_TOKEN_KEY",
    "APP_USER",
    "EVAL_SMALL_CHUNKS",
    "EVAL_SUFFIX",
    "GRANT_TIMEOUT",
    "INGEST_TOKEN_KEY",
    "INGEST_USER",
    "PLAIN",
    "PROBE_DIM",
    "READER_PRIVILEGES",
    "READER_ROLE",
    "READER_SECRET",
    "ROOT_SECRET",
    "ROOT_TOKEN_KEY",
    "SECRET_OF_KEY",
    "SecureResult",
    "ServerInfo",
    "Verdict",
    "VerifyReport",
    "WRITER_PRIVILEGES",
    "WRITER_ROLE",
    "WRITER_SECRET",
    "change_root_password",
    "credentials_secrets",
    "drop_learner",
    "ensure_roles_and_users",
    "generate_password",
    "inspect",
    "lab_collections",
    "learner_tokens",
    "probe_collection",
    "read_env",
    "record_collection",
    "secure",
    "secure_learner",
    "server_info",
    "verify_least_privilege",
    "wait_until_permitted",
    "write_env",
]
