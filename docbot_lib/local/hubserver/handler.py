"""The hub stand-in's request handler: HEAD and GET routed to the API routes (/api/models/...) or the file route
(/{repo}/resolve/...), and the handler class bound to one server.

Layer: local (the hub stand-in's handler): imports local.hubserver.base and its routes.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from docbot_lib.local.hubserver.api_routes import ApiRoutes
from docbot_lib.local.hubserver.base import Hub
from docbot_lib.local.hubserver.file_routes import FileRoutes


class HubHandler(ApiRoutes, FileRoutes):
    """The hub's HTTP API for one HubServer (`hub`, bound by `_make_handler`): the routes in the docstring of
    docbot_lib.local.hubserver."""

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

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


def _make_handler(server: Hub) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to `server` (ThreadingHTTPServer makes one instance per request)."""
    return type("Handler", (HubHandler,), {"hub": server})
