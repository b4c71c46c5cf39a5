"""The hub's file route: `HEAD|GET /{repo}/resolve/{rev}/{file}`, gated by the token when one is set, answering
`Range: bytes=N-` with 206, the body streamed in chunks (throttled or stalled on request, cut when the server
stops).

Layer: local (the hub stand-in's file routes): imports local.hubserver.repo and local.hubserver.base.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import unquote

from docbot_lib.local.hubserver.base import HandlerBase
from docbot_lib.local.hubserver.repo import ServedFile

CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FileRoutes(HandlerBase):
    """/{repo}/resolve/{rev}/{file}: the download of one file, whole or from a byte on."""

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
