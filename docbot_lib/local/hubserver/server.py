"""The hub stand-in's lifecycle: a threaded HTTP server over the served repos, started and stopped (also as a
context manager), with the knobs tests turn (token, throttle, stall, tree page size) and the requests it saw.

Layer: local (the hub stand-in's server): imports local.hubserver.repo, local.hubserver.base and
local.hubserver.handler.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from docbot_lib.local.hubserver.base import Request
from docbot_lib.local.hubserver.handler import _make_handler
from docbot_lib.local.hubserver.repo import ServedRepo


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
