"""Who may ask and how many at once: the API key (checked before the body is read), the body-size limit, the
bounded queue of answers (a full one answers 503 with Retry-After), and the Prometheus metrics.

Layer: pipeline, step `api` (its gate): imports core and api.protocol.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import TypeVar

import anyio
from starlette.datastructures import Headers

from docbot_lib.core.errors import ConfigError
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.api.protocol import CHAT, ApiError

log = logging.getLogger("docbot.api")
T = TypeVar("T")

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz"})  # /readyz shows its details only with the key


DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics"})


UNAUTHORIZED = "missing or wrong API key: send the header 'Authorization: Bearer <DOCBOT_API_KEY>'"


def key_matches(authorization: str | None, expected: bytes) -> bool:
    """True when the header reads "Bearer <the API key>" (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), expected)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        latency = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.requests = Counter(
            "docbot_requests", "chat completion requests, by HTTP status", ["status"], registry=self.registry
        )
        self.errors = Counter(
            "docbot_errors",
            "failed answers, by cause (llm, milvus, embeddings, config, internal)",
            ["cause"],
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "docbot_retrieval_seconds",
            "time to rewrite and retrieve the passages",
            buckets=latency,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "docbot_time_to_first_token_seconds",
            "from the request to the answer's first token",
            buckets=latency,
            registry=self.registry,
        )
        self.tokens = Counter(
            "docbot_generated_tokens", "answer tokens streamed by the LLM (one per chunk)", registry=self.registry
        )
        self.in_flight = Gauge("docbot_answers_in_flight", "answers being generated now", registry=self.registry)
        self.waiting = Gauge("docbot_requests_waiting", "requests waiting for an answer slot", registry=self.registry)


class Slots:
    """At most api_max_concurrency answers at once; beyond, a request waits its turn (first come, first served)
    up to api_queue_timeout seconds, at most api_max_queue of them; else 503 with Retry-After: the seconds the
    answers ahead of it should take, from a running mean of how long an answer holds its slot."""

    def __init__(self, settings: Settings):
        self.size, self.max_queue = settings.api_max_concurrency, settings.api_max_queue
        self.timeout = settings.api_queue_timeout
        self.free = anyio.Semaphore(self.size)
        self.waiting, self.mean_seconds = 0, 5.0

    @property
    def used(self) -> int:
        return self.size - self.free.value

    async def take(self) -> float:
        """Wait for a slot; its start time (for give_back)."""
        try:
            self.free.acquire_nowait()
            return time.monotonic()
        except anyio.WouldBlock:
            pass
        if self.waiting >= self.max_queue:
            raise self.busy(
                f"{self.waiting} request(s) wait already, the most DOCBOT_API_MAX_QUEUE={self.max_queue} allows"
            )
        self.waiting += 1
        try:
            with anyio.fail_after(self.timeout):
                await self.free.acquire()
        except TimeoutError:
            raise self.busy(f"no slot came free within DOCBOT_API_QUEUE_TIMEOUT={self.timeout:g} s") from None
        finally:
            self.waiting -= 1
        return time.monotonic()

    def give_back(self, since: float) -> None:
        self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.monotonic() - since)
        self.free.release()

    def busy(self, why: str) -> ApiError:
        retry = max(1, min(300, math.ceil(self.mean_seconds * (self.waiting + self.size) / self.size)))
        return ApiError(
            503,
            f"the bot is busy: {self.used} answer(s) being generated (DOCBOT_API_MAX_CONCURRENCY="
            f"{self.size}) and {why}; retry in {retry} s",
            "service_unavailable",
            headers={"Retry-After": str(retry)},
        )


def required_api_key(settings: Settings) -> str:
    """settings.api_key in clear; a DocbotError when it is not set."""
    api_key = settings.secret("api_key")
    if not api_key:
        raise ConfigError(
            "no API key set for the chatbot API",
            "set DOCBOT_API_KEY (environment, .env, or the Secret on the cluster) to a long random "
            "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        )
    return api_key


class Gate:
    """ASGI middleware in front of every route, before any body is read: the API key (401 without reading the
    body), then the body's size (413), from Content-Length and, for a chunked body, as the bytes come in."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.metrics, self.kb = app, metrics, settings.api_max_body_kb
        self.expected = required_api_key(settings).encode()
        self.open = OPEN_PATHS | (DOC_PATHS if settings.api_public_docs else frozenset())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = self.refusal(Headers(scope=scope), needs_key=scope["path"] not in self.open)
        if error is None:
            return await self.app(scope, self.limited(receive), send)
        if scope["path"] == CHAT:
            self.metrics.requests.labels(str(error.status)).inc()
        await error.response()(scope, receive, send)

    def refusal(self, headers: Headers, needs_key: bool) -> ApiError | None:
        if needs_key and not key_matches(headers.get("authorization"), self.expected):
            return ApiError(401, UNAUTHORIZED, "authentication_error")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            return ApiError(400, f"the Content-Length header {length!r} is not a number of bytes")
        return self.too_large(int(length)) if int(length) > self.kb * 1024 else None

    def too_large(self, size: int, at_least: bool = False) -> ApiError:
        return ApiError(
            413,
            f"the request body is {'at least ' if at_least else ''}{math.ceil(size / 1024)} KiB, "
            f"more than DOCBOT_API_MAX_BODY_KB={self.kb}: send a shorter conversation",
            "invalid_request_error",
        )

    def limited(self, receive):
        received = 0

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.kb * 1024:
                raise self.too_large(received, at_least=True)  # reaches the app's ApiError handler
            return message

        return receive_within_limit
