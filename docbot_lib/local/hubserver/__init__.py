"""A local stand-in for the Hugging Face hub: serves model repos from folders on disk.

It speaks the part of the hub's HTTP API that `huggingface_hub` uses to look at a repo and download
it, so the real client runs unchanged against it (tests, and the local stack where no hub is reachable):

  GET  /api/models/{repo}[/revision/{rev}][?blobs=true]  {"id", "sha", "gated", "siblings": [...]}
  GET  /api/models/{repo}/tree/{rev}[/{path}]             [{"type", "path", "size", "oid", "lfs"}], paged
  HEAD /{repo}/resolve/{rev}/{file}                        X-Repo-Commit, ETag, Content-Length
  GET  /{repo}/resolve/{rev}/{file}                        the bytes; `Range: bytes=N-` answers 206

Each repo folder is one commit: its sha is derived from the files' contents, so it is stable across
restarts and changes when a file does. Revisions: `main` or that sha. Errors carry the hub's
`X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), which the client turns
into its typed errors. With a token set, every repo is gated like a hub model with access
conditions: metadata is public, file downloads answer 401 without a token and 403 with another one.

Standalone: `python -m docbot_lib.local.hubserver --repo ID=FOLDER [--repo ...] --host 127.0.0.1 --port P
[--token-required]` (the accepted token is read from DOCBOT_LOCAL_HUB_TOKEN, never from the command
line, where `ps` would show it). Ready when `GET /api/models/{repo}/revision/main` answers 200.

The stand-in in seven modules: `repo` (the repository on disk: files, blob ids, LFS, the commit sha), `server`
(`HubServer`, its lifecycle), `handler` (`HubHandler`, HEAD and GET routed), `base` (what every route shares:
records, tokens, JSON and errors), `api_routes` (info and tree), `file_routes` (resolve: the gate, ranges, the
body streamed), `local_repo` (the local stack's model repo) and `cli` (`main`, run by `__main__`).

Layer: local: may import core, clients, k8s, pipeline, checks and the rest of local.
"""

from docbot_lib.local.hubserver.api_routes import ApiRoutes
from docbot_lib.local.hubserver.base import HandlerBase, Hub, Request
from docbot_lib.local.hubserver.cli import TOKEN_ENV, main
from docbot_lib.local.hubserver.file_routes import CHUNK, FileRoutes
from docbot_lib.local.hubserver.handler import HubHandler
from docbot_lib.local.hubserver.local_repo import LOCAL_MODEL_CARD, LOCAL_REPO_ID, local_model_repo
from docbot_lib.local.hubserver.repo import LFS_MIN_SIZE, LFS_PATTERNS, ServedFile, ServedRepo, scan_repo
from docbot_lib.local.hubserver.server import HubServer

__all__ = [
    "CHUNK",
    "LFS_MIN_SIZE",
    "LFS_PATTERNS",
    "LOCAL_MODEL_CARD",
    "LOCAL_REPO_ID",
    "TOKEN_ENV",
    "ApiRoutes",
    "FileRoutes",
    "HandlerBase",
    "Hub",
    "HubHandler",
    "HubServer",
    "Request",
    "ServedFile",
    "ServedRepo",
    "local_model_repo",
    "main",
    "scan_repo",
]
