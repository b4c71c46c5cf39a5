"""Is the chatbot ready (the LLM lists its model, Milvus holds the collection), and the stored text of a source.

Layer: pipeline, step `api` (its probes): imports core, clients, the steps before it and api.protocol.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.api.protocol import ApiError

log = logging.getLogger("docbot.api")
T = TypeVar("T")

READY_CACHE_SECONDS = 5.0  # probes from every kubelet and load balancer cost one check per 5 s


def cached(compute: Callable[[], T], seconds: float) -> Callable[[], T]:
    """compute(), at most once every `seconds` (the callers in between get the last result)."""
    lock, at = threading.Lock(), -math.inf
    value: T

    def get() -> T:
        nonlocal value, at
        with lock:
            if time.monotonic() - at >= seconds:
                value, at = compute(), time.monotonic()
            return value

    return get


def llm_reachable(settings: Settings, timeout: float = 5.0) -> str:
    """The LLM endpoint lists the configured model (no generation: a probe must not queue behind answers)."""
    from docbot_lib.clients.llm import llm_serves_model

    return f"{llm_serves_model(settings, timeout)}: {settings.llm_model_name}"


def milvus_ready(settings: Settings, collection: str) -> str:
    """Milvus answers with our credentials and holds the collection. Asked through the process's store (the
    answers' own client): closing a client of its own would drop pymilvus's shared channel for every request."""
    from docbot_lib.pipeline.store import forget_store, open_store

    try:
        store = open_store(settings, collection)
        present = store.client.has_collection(collection)
    except DocbotError:
        raise
    except Exception:
        forget_store(settings, collection)  # a dropped channel: the next probe (or question) opens it anew
        raise
    if not present:
        forget_store(settings, collection)
        raise ServiceUnavailable(
            f"Milvus at {settings.milvus_uri} has no collection {collection!r}",
            "ingest documents first: `docbot ingest PATH --collection NAME` (notebook 05)",
            service="milvus",
        )
    return f"{settings.milvus_uri}: collection {collection}"


def readiness(settings: Settings, collection: str) -> dict[str, Any]:
    """{"ready": bool, "checks": {"llm": {"ok", "detail"}, "milvus": {...}}}; never raises."""
    checks: dict[str, dict[str, Any]] = {}
    for name, check in (
        ("llm", lambda: llm_reachable(settings)),
        ("milvus", lambda: milvus_ready(settings, collection)),
    ):
        try:
            checks[name] = {"ok": True, "detail": check()}
        except DocbotError as exc:
            checks[name] = {"ok": False, "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


def stored_source(settings: Settings, collection: str, source: str, limit: int = 200) -> dict[str, Any]:
    """The chunks stored for one source (as cited in `sources`), in document order: what the bot read."""
    from docbot_lib.clients.milvus import reconnecting
    from docbot_lib.pipeline.store.access import forget_store, open_store
    from docbot_lib.pipeline.store.chunks import quote

    # the process's store for the collection: opening and closing a client per request drops pymilvus's
    # shared channel for every other request
    def query() -> list[dict[str, Any]]:
        return open_store(settings, collection).client.query(
            collection,
            filter=f"source == {quote(source)}",
            limit=limit,
            output_fields=["title", "section", "page", "chunk_index", "text"],
        )

    rows = reconnecting(query, on_drop=lambda: forget_store(settings, collection))
    if not rows:
        raise ApiError(404, f"no source {source!r} in collection {collection!r}", "not_found_error")
    rows.sort(key=lambda r: r.get("chunk_index", 0))
    return {
        "source": source,
        "title": rows[0].get("title", ""),
        "chunks": [
            {"section": r.get("section", ""), "page": r.get("page") or None, "text": r.get("text", "")} for r in rows
        ],
    }
