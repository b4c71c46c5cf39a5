"""What a Milvus endpoint is: Milvus or Milvus Lite, its version, BM25 and RBAC support, its collections
(`server_info`), and the same logged in with the first root password that works (`inspect`).

Layer: pipeline, step `vectordb` (server info): imports core, clients, vectordb.grants and vectordb.credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.clients.milvus import BM25_SINCE, DEFAULT_ROOT_TOKEN, connect, parse_version, supports_rbac
from docbot_lib.core.envfile import read_env
from docbot_lib.core.errors import AuthRefused
from docbot_lib.core.names import LabNames
from docbot_lib.pipeline.vectordb.credentials import INGEST_TOKEN_KEY, ROOT_TOKEN_KEY, _login
from docbot_lib.pipeline.vectordb.grants import PLAIN


@dataclass(frozen=True)
class ServerInfo:
    """What a Milvus endpoint is and supports, printable for a learner."""

    uri: str
    version: str
    rbac: bool  # users, roles and grants
    bm25: bool  # sparse vectors + the BM25 function (hybrid search)
    collections: list[str] = field(default_factory=list)
    as_root: bool = True  # False: seen as a learner's own user (root's password is the administrator's)

    @property
    def kind(self) -> str:
        return "Milvus server" if self.rbac else "Milvus Lite (embedded, no authentication)"

    def __str__(self) -> str:
        rows = [
            ("endpoint", self.uri),
            ("server", f"{self.kind}, version {self.version}"),
            (
                "users/roles",
                "yes" if self.rbac else "no: no users, roles or passwords (anyone who reaches it can read and write)",
            ),
            (
                "BM25 hybrid",
                "yes" if self.bm25 else f"no: needs Milvus >= {BM25_SINCE[0]}.{BM25_SINCE[1]} (dense search only)",
            ),
            ("collections", ", ".join(self.collections) or "(none)"),
        ]
        return "\n".join(f"{name:<12} {value}" for name, value in rows)


def server_info(client, uri: str = "") -> ServerInfo:
    """Version, RBAC and BM25 support, collections of the server behind `client`."""
    version = client.get_server_version()
    return ServerInfo(
        uri=uri,
        version=version,
        rbac=supports_rbac(client),
        bm25=parse_version(version) >= BM25_SINCE,
        collections=sorted(client.list_collections()),
    )


def inspect(
    uri: str, env_file: Path | None = None, root_token: str | None = None, names: LabNames = PLAIN
) -> ServerInfo:
    """`server_info` of the server at `uri`, logged in as root with the first password that works (the given
    one, the one stored in `env_file`, the default); Milvus Lite needs none. A learner of a class, whose
    administrator keeps root's password, is seen as their own ingest user instead (`as_root` False)."""
    stored = read_env(env_file) if env_file else {}
    candidates = [t for t in (root_token, stored.get(ROOT_TOKEN_KEY), DEFAULT_ROOT_TOKEN) if t]
    try:
        client, _token = _login(uri, list(dict.fromkeys(candidates)))
        as_root = True
    except AuthRefused:
        own = stored.get(INGEST_TOKEN_KEY, "")
        if not own.startswith(f"{names.ingest_user}:"):
            raise
        client, as_root = connect(uri, own, database=names.database), False
    try:
        info = server_info(client, uri)
    finally:
        client.close()
    return ServerInfo(info.uri, info.version, info.rbac, info.bm25, info.collections, as_root)
