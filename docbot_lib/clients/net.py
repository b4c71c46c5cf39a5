"""Plain network probes, shared by every client. Layer: clients (standard library only).

Layer: clients: imports only core.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def tcp_open(url: str, timeout: float = 2.0) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False
