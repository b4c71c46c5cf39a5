"""What every route of the hub stand-in shares: the record of each request, the bearer token, JSON and error
answers (with the hub's `X-Error-Code`), and which served repo a path names; `Hub`, what a handler reads of its
server.

Layer: local (the hub stand-in's HTTP plumbing): imports local.hubserver.repo.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Protocol

from docbot_lib.local.hubserver.repo import ServedRepo


@dataclass
class Request:
    """One request as the server saw it (for tests: which bytes were asked for)."""

    method: str
    path: str
    range: str | None
    status: int
    authorized: bool
    body_bytes: int = 0


class Hub(Protocol):
    """What a handler reads of the server it is bound to (server.HubServer is the one)."""

    repos: dict[str, ServedRepo]
    token: str | None
    throttle: float | None
    stall_after: int | None
    tree_page_size: int
    log: bool
    requests: list[Request]
    _stopping: threading.Event

    @property
    def url(self) -> str: ...


class HandlerBase(BaseHTTPRequestHandler):
    """The plumbing of the hub's HTTP API for one HubServer (`hub`, bound by `handler._make_handler`)."""

    hub: Hub
    protocol_version = "HTTP/1.1"
    server_version = "docbot-hubserver"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        if self.hub.log:  # the request line only: never headers (the token travels in one)
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

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
