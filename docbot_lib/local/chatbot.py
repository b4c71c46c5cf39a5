"""The chatbot on this machine: `docbot serve` as a child process for a with-block (`local_chatbot`), or the
deployed one when its URL is known (`running_chatbot`: notebook 08 calls it either way).

Layer: local: imports core and local.processes.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from docbot_lib.core.errors import ConfigError
from docbot_lib.core.settings import Settings, env_name
from docbot_lib.local import processes

LOCAL_HOST = "127.0.0.1"


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every setting as the DOCBOT_* variable it is read from, secrets included: the environment of a child
    process that must see what this one sees (never a command line, which `ps` shows everyone)."""
    from pydantic import SecretStr

    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[env_name(name)] = str(value)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def local_chatbot(
    settings: Settings,
    port: int | None = None,
    max_tokens: int | None = None,
    timeout: float = 180,
    echo: Callable[[str], None] = print,
) -> Iterator[str]:
    """`docbot serve` on 127.0.0.1 (`port`, else a free one) for the with-block, with these settings (as the
    read-only Milvus user: `serve` reads as the reader); yields its URL once /healthz answers (the embedding
    model is loaded). Stopped when the block ends, failed or interrupted: SIGTERM, then SIGKILL after 15 s.
    `max_tokens` caps its answers (the tiny local model: short answers keep the step fast)."""
    import httpx

    if not settings.secret("api_key"):
        raise ConfigError("no API key for the chatbot", "call ensure_api_key(settings) first, or set DOCBOT_API_KEY")
    if max_tokens:
        settings = settings.model_copy(update={"max_tokens": max_tokens})
    port = port or _free_port()
    url = f"http://{LOCAL_HOST}:{port}"
    log = settings.local_dir / "logs" / "chatbot.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "docbot_lib.cli", "serve", "--host", LOCAL_HOST, "--port", str(port)]

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    record = processes.start("docbot serve", command, settings_environment(settings), Path.cwd(), log, port)
    try:
        processes.wait_ready(
            f"chatbot (docbot serve at {url})",
            record,
            answers,
            timeout,
            service="chatbot",
            exited_fix="read the log above (`docbot check` tests every service)",
        )
        echo(f"docbot serve (pid {record['pid']}) answers at {url}; log: {log}")
        yield url
    finally:
        processes.stop(record)  # SIGTERM to its process group, SIGKILL after 15 s
        echo(f"docbot serve (pid {record['pid']}) stopped; port {port} released")


@contextmanager
def running_chatbot(settings: Settings, url: str | None = None, **local: Any) -> Iterator[str]:
    """The chatbot to call, for the with-block: `url` when given (the Route's https URL on the cluster); else on
    the local stack `docbot serve` started for the block (`local_chatbot`, given `local`) and stopped after it."""
    if url:
        yield url.rstrip("/")
    elif settings.stack == "local":
        with local_chatbot(settings, **local) as started:
            yield started
    else:
        raise ConfigError(
            "no chatbot to call on the cluster", "deploy it (APPLY_TO_CLUSTER = True), or give its URL (CHATBOT_URL)"
        )
