"""The chatbot as a web service: an OpenAI-compatible API over the RAG chain, and the web UI.

    app = create_app(settings, collection="docbot")   # a FastAPI app; `serve()` runs it with uvicorn

Routes:
  POST /v1/chat/completions  OpenAI-compatible, streamed (SSE) or not. The last user message is the question,
                             earlier user/assistant turns are the history, system messages are ignored (the
                             bot has its own instructions). The body carries extra `sources` and `grounding`
                             fields; a streamed answer ends with one chunk carrying them before `data: [DONE]`.
  GET  /v1/models            one model: the collection's name.
  GET  /v1/sources?source=   the stored text of one source (its chunks, in order), for the UI's source links.
  GET  /healthz              the process answers (liveness), open to anyone.
  GET  /readyz               LLM and Milvus answer (readiness), cached 5 s; open, but which check failed and why
                             (URLs, errors) only with the key.
  GET  /metrics              Prometheus: requests, errors, waiting, retrieval and first-token latency, tokens.
  GET  /                     the web UI (docbot_lib/static/index.html), open: the page asks for the key.

Every other route (/v1, /metrics, /docs, /redoc, /openapi.json) needs "Authorization: Bearer <DOCBOT_API_KEY>",
checked before the body is read (DOCBOT_API_PUBLIC_DOCS=true opens the docs and /metrics). Limits, each
answered with the setting to change: the body (DOCBOT_API_MAX_BODY_KB, 413), the messages and their length
(DOCBOT_API_MAX_MESSAGES, DOCBOT_API_MAX_MESSAGE_CHARS, 422); the history given to the model is trimmed,
oldest turns first, to what fits its context.

Under load: at most `api_max_concurrency` answers are generated at once; a request beyond that waits for a slot
in a queue (at most `api_max_queue` waiting, up to `api_queue_timeout` s), else 503 with Retry-After. A client
that hangs up stops its answer and frees its place. The right concurrency depends on the model server:
llama.cpp (the local stack) generates one answer at a time, so more slots only interleave answers (and
llama-cpp-python, unless started with --interrupt_requests False, cuts a streamed answer short when another
request comes): 1 slot and the queue. vLLM batches many requests at once: raise DOCBOT_API_MAX_CONCURRENCY
(16-64, within its --max-num-seqs) for throughput.
An unreachable LLM or Milvus gives 503 with the problem and the fix; the server stays up.

Layer: pipeline, step `api`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextvars import ContextVar
from importlib import resources
from typing import Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings

log = logging.getLogger("docbot.api")
_END = object()  # the end of the chain's generator
T = TypeVar("T")
CHAT = "/v1/chat/completions"
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz"})  # /readyz shows its details only with the key
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics"})
READY_CACHE_SECONDS = 5.0  # probes from every kubelet and load balancer cost one check per 5 s
DEFAULT_CONTEXT = 4096  # tokens, when the endpoint does not say: the local llama.cpp server's --n_ctx
UNAUTHORIZED = "missing or wrong API key: send the header 'Authorization: Bearer <DOCBOT_API_KEY>'"


class ApiError(HTTPException):
    """An HTTP error answered as OpenAI does: {"error": {"message", "type", "code"}}. An HTTPException, so that
    one raised while FastAPI reads the body (the size limit) reaches the app's handler as it is."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
    ):
        super().__init__(status, message, headers)
        self.status, self.message, self.kind = status, message, kind

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        return JSONResponse(
            {"error": {"message": self.message, "type": self.kind, "code": self.status}},
            status_code=self.status,
            headers={**headers, **(self.headers or {})},
        )


def key_matches(authorization: str | None, expected: bytes) -> bool:
    """True when the header reads "Bearer <the API key>" (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), expected)


# -- the request ---------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if part.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """What OpenAI clients send; generation knobs (temperature, ...) are accepted and ignored: the bot's
    settings decide them."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    def question_and_history(self) -> tuple[str, list[tuple[str, str]]]:
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not turns[-1].text.strip():
            raise ApiError(422, "the last message must be a non-empty user message (the question)")
        return turns[-1].text, [(m.role, m.text) for m in turns[:-1]]


def check_limits(request: ChatRequest, settings: Settings) -> None:
    """422 naming the setting when the request has too many messages, or one message too long."""
    if len(request.messages) > settings.api_max_messages:
        raise ApiError(
            422,
            f"the request has {len(request.messages)} messages, more than DOCBOT_API_MAX_MESSAGES="
            f"{settings.api_max_messages}: send the latest turns only",
        )
    for number, message in enumerate(request.messages, 1):
        if len(message.text) > settings.api_max_message_chars:
            raise ApiError(
                422,
                f"message {number} ({message.role}) has {len(message.text)} characters, more than "
                f"DOCBOT_API_MAX_MESSAGE_CHARS={settings.api_max_message_chars}: shorten it",
            )


def _tokens(text: str) -> int:
    # an estimate on the side of fitting: English runs ~4 bytes of UTF-8 a token, code and other scripts
    # fewer; + the chat template's markers around a message
    return len(text.encode()) // 3 + 8


def fit_history(
    question: str, history: list[tuple[str, str]], settings: Settings, window: int
) -> list[tuple[str, str]]:
    """The newest turns of `history` that fit a context of `window` tokens beside the instructions, the
    retrieved passages, the question and the answer (max_tokens): the oldest turns go first, and what is kept
    starts with a user turn (chat templates alternate user/assistant). 422 when the question alone does not fit."""
    from docbot_lib.pipeline.rag import INSTRUCTIONS

    # chunk_tokens counts the embedding model's word pieces: the LLM's tokenizer may need a quarter more
    passages = settings.search_k * (settings.chunk_tokens * 5 // 4 + 25)
    room = (
        window - settings.max_tokens - passages - _tokens(settings.rag_instructions or INSTRUCTIONS) - _tokens(question)
    )
    if room < 0:
        raise ApiError(
            422,
            f"the question (about {_tokens(question)} tokens) does not fit the model's context of "
            f"{window} tokens beside the retrieved passages and the answer (DOCBOT_MAX_TOKENS="
            f"{settings.max_tokens}): shorten it",
        )
    kept = 0
    for _role, text in reversed(history):
        room -= _tokens(text)
        if room < 0:
            break
        kept += 1
    trimmed = list(history[len(history) - kept :])
    while trimmed and trimmed[0][0] != "user":
        trimmed.pop(0)
    return trimmed


def context_window(settings: Settings, timeout: float = 5.0) -> int | None:
    """The model's context in tokens: `max_model_len` where the endpoint lists it in /models (vLLM), else
    DEFAULT_CONTEXT; None when the endpoint does not answer (ask again later)."""
    import httpx

    key = settings.secret("llm_api_key")
    try:
        reply = httpx.get(
            f"{(settings.llm_base_url or '').rstrip('/')}/models",
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        models = reply.json().get("data", []) if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if models is None:
        return None
    lengths = [m.get("max_model_len") for m in models if m.get("id") == settings.llm_model_name]
    return int(lengths[0]) if lengths and lengths[0] else DEFAULT_CONTEXT


# -- metrics ---------------------------------------------------------------------------------------------


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


# -- errors of the services ---------------------------------------------------------------------------


def unavailable(exc: Exception, settings: Settings) -> tuple[str, str] | None:
    """(cause, message) when `exc` means a service is down or misconfigured (answered as 503), else None."""
    import openai

    if isinstance(exc, DocbotError):  # the raiser named the service (errors.DocbotError.service)
        return exc.service or "config", str(exc)
    base = settings.llm_base_url
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "llm", f"the LLM at {base} refused the API key. Fix: set DOCBOT_LLM_API_KEY to the endpoint's token"
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return "llm", (
            f"the LLM does not answer at {base} ({type(exc).__name__}). "
            "Fix: check DOCBOT_LLM_BASE_URL and that the model server is ready"
        )
    if isinstance(exc, openai.APIStatusError):
        return "llm", (
            f"the LLM at {base} failed (HTTP {exc.status_code}). "
            "Fix: check the model server's logs and DOCBOT_LLM_MODEL_NAME"
        )
    try:
        from pymilvus.exceptions import MilvusException
    except ImportError:  # pragma: no cover - pymilvus is a dependency
        MilvusException = ()
    if isinstance(exc, MilvusException):
        return "milvus", (
            f"Milvus failed at {settings.milvus_uri} ({getattr(exc, 'message', exc)}). "
            "Fix: check that Milvus runs and DOCBOT_MILVUS_URI / DOCBOT_MILVUS_TOKEN"
        )
    return None


# -- the OpenAI wire format ------------------------------------------------------------------------------


def _sources(answer) -> list[dict[str, Any]]:
    """Every passage given to the model, in its [n] order; `cited` tells which ones the answer cites."""
    cited = {s.number for s in answer.sources}
    return [{**s.to_dict(), "cited": s.number in cited} for s in answer.retrieved]


def _grounding(answer) -> dict[str, Any]:
    """{"grounding": ...} when the model answered: does the answer rest on its sources (rag.Grounding)."""
    return {"grounding": answer.grounding.to_dict()} if answer.grounding else {}


def _chunk(ids: dict[str, Any], delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    body = {
        **ids,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else [],
        **extra,
    }
    return json.dumps(body, ensure_ascii=False)


def _usage(tokens: int) -> dict[str, int]:
    # the prompt is built inside the chain; its size is not reported by the streamed LLM answer
    return {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}


# -- the app ---------------------------------------------------------------------------------------------


class _Slots:
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


def _api_key(settings: Settings) -> str:
    """settings.api_key in clear; a DocbotError when it is not set."""
    api_key = settings.secret("api_key")
    if not api_key:
        raise DocbotError(
            "no API key set for the chatbot API",
            "set DOCBOT_API_KEY (environment, .env, or the Secret on the cluster) to a long random "
            "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        )
    return api_key


class _Gate:
    """ASGI middleware in front of every route, before any body is read: the API key (401 without reading the
    body), then the body's size (413), from Content-Length and, for a chunked body, as the bytes come in."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.metrics, self.kb = app, metrics, settings.api_max_body_kb
        self.expected = _api_key(settings).encode()
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


async def _unless_disconnected(http: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """work(), cancelled if the client hangs up meanwhile (then None): a request nobody waits for any more
    leaves the queue, or stops its answer and frees its slot."""

    async def watch(scope: anyio.CancelScope) -> None:
        while (await http.receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    result, error = None, None
    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        try:
            result = await work()
        except Exception as exc:  # noqa: BLE001 - raised below, not wrapped in the task group's ExceptionGroup
            error = exc
        group.cancel_scope.cancel()
    if error is not None:
        raise error
    return result


class _Stream(EventSourceResponse):
    """The SSE answer; however it ends (finished, client gone, cancelled), `done` runs: the slot comes back
    even when the client left before the first event."""

    def __init__(self, events: AsyncIterator[dict[str, str]], done: Callable[[], Awaitable[None]]):
        super().__init__(events, ping=15, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.done = done

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.done()


class _Generation(BaseCallbackHandler):
    """One answer being generated: the chain's pieces, and the slot held since `since`. stop() ends it at the
    LLM's next token: as a LangChain callback of the chain's calls it then raises GeneratorExit, which closes
    the LLM's HTTP stream (the model server stops). Closing the chain alone would not do: LangChain reads the
    rest of a closed sequence's input for its trace, so the whole answer would still be generated."""

    def __init__(self, chain, question: str, history: list[tuple[str, str]], since: float):
        self.since, self.stopped = since, False
        self.pieces = self._pieces(chain, question, history)

    def _pieces(self, chain, question: str, history: list[tuple[str, str]]) -> Generator[Any, None, None]:
        # set in the worker thread's context, where the chain configures its callbacks (on its first piece)
        _GENERATION.set(self)
        # a dropped Milvus channel is reopened by the store's own search (clients.milvus.reconnecting)
        pieces = chain.stream(question, history)
        first = next(pieces, _END)
        if first is not _END:
            yield first
            yield from pieces

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], **kwargs: Any) -> None:
        if self.stopped:
            raise GeneratorExit  # not an Exception: LangChain's callback manager lets it through

    def stop(self) -> None:
        self.stopped = True
        self.pieces.close()


_GENERATION: ContextVar[_Generation | None] = ContextVar("docbot_generation", default=None)
register_configure_hook(_GENERATION, inheritable=True)


class _Answers:
    """The chat completions of one app: a slot each, the chain's pieces, the OpenAI wire format, the metrics."""

    def __init__(self, settings: Settings, chain, metrics: Metrics, model: str):
        self.settings, self.chain, self.metrics, self.model = settings, chain, metrics, model
        self.slots = _Slots(settings)
        metrics.in_flight.set_function(lambda: self.slots.used)
        metrics.waiting.set_function(lambda: self.slots.waiting)
        self.window: int | None = None
        self.window_lock = threading.Lock()

    async def respond(self, body: ChatRequest, http: Request) -> Response | dict[str, Any]:
        check_limits(body, self.settings)
        question, history = body.question_and_history()
        window = self.window
        if not window:  # asked of the endpoint in a worker thread: context() blocks
            window = await anyio.to_thread.run_sync(self.context)
        history = fit_history(question, history, self.settings, window)
        started = await _unless_disconnected(http, lambda: self.start(question, history, body.stream))
        if started is None:  # the client hung up: its answer was stopped, its slot given back
            self.metrics.requests.labels("499").inc()
            return Response(status_code=499)
        self.metrics.requests.labels("200").inc()
        ids = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.model}
        if body.stream:
            generation, first = started
            usage = bool((body.stream_options or {}).get("include_usage"))
            return _Stream(self.events(ids, generation, first, usage), lambda: self.stop(generation))
        answer, tokens = started
        self.observe(answer)
        self.metrics.tokens.inc(tokens)
        return {
            **ids,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}
            ],
            "usage": _usage(tokens),
            "sources": _sources(answer),
            **_grounding(answer),
        }

    def context(self) -> int:
        """The model's context in tokens, asked of the endpoint once (DEFAULT_CONTEXT while it does not answer)."""
        with self.window_lock:  # one question at a time: llama.cpp serves /models behind the answer in progress
            if self.window is None:
                self.window = context_window(self.settings)
        return self.window or DEFAULT_CONTEXT

    async def start(self, question: str, history: list[tuple[str, str]], stream: bool):
        """A slot, then the answer's first piece (after rewrite, retrieval and the LLM's first token, so their
        failure is still an HTTP status); not streamed, the whole answer. A failure or a cancellation (the client
        left) stops the generation and gives the slot back; a stream does both when it ends."""
        generation = _Generation(self.chain, question, history, since=await self.slots.take())
        handed_over = False
        try:
            first = await self.next_piece(generation)
            if stream:
                handed_over = True
                return generation, first
            return await self.drain(first, generation)
        finally:
            if not handed_over:
                await self.stop(generation)

    async def stop(self, generation: _Generation) -> None:
        """Stop the generation (the model server stops at its next token), then give the slot back."""
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(generation.stop)
            finally:
                self.slots.give_back(generation.since)

    async def next_piece(self, generation: _Generation) -> Any:
        try:
            return await anyio.to_thread.run_sync(next, generation.pieces, _END)
        except Exception as exc:  # noqa: BLE001 - reported as 503/500, never a traceback
            raise self.failure(exc) from None

    async def drain(self, first, generation: _Generation):
        """The final Answer of the chain's generator, and how many text pieces came before it."""
        from docbot_lib.pipeline.rag import Answer

        tokens, piece = 0, first
        while not isinstance(piece, Answer):
            if piece is _END:
                raise self.failure(RuntimeError("the RAG chain ended without an answer"))
            tokens += bool(piece)
            piece = await self.next_piece(generation)
        return piece, tokens

    async def events(
        self, ids: dict[str, Any], generation: _Generation, first, include_usage: bool
    ) -> AsyncIterator[dict[str, str]]:
        from docbot_lib.pipeline.rag import Answer

        tokens, piece = 0, first
        yield {"data": _chunk(ids, {"role": "assistant", "content": ""})}
        while piece is not _END:
            if isinstance(piece, Answer):
                self.observe(piece)
                self.metrics.tokens.inc(tokens)
                yield {"data": _chunk(ids, {}, "stop")}
                extra: dict[str, Any] = {"usage": _usage(tokens)} if include_usage else {}
                yield {"data": _chunk(ids, None, sources=_sources(piece), **_grounding(piece), **extra)}
            elif piece:
                tokens += 1
                yield {"data": _chunk(ids, {"content": piece})}
            try:
                piece = await self.next_piece(generation)
            except ApiError as error:  # the status is sent: report inside the stream
                yield {
                    "data": json.dumps({"error": {"message": error.message, "type": error.kind, "code": error.status}})
                }
                break
        yield {"data": "[DONE]"}

    def failure(self, exc: Exception) -> ApiError:
        known = unavailable(exc, self.settings)
        if known:
            cause, message = known
            self.metrics.errors.labels(cause).inc()
            log.warning("answer failed: %s", message)
            if isinstance(exc, DocbotError) and exc.http_status == 422:
                return ApiError(422, message, "invalid_request_error")
            return ApiError(503, message, "service_unavailable")
        self.metrics.errors.labels("internal").inc()
        log.exception("answer failed")
        return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the details", "server_error")

    def observe(self, answer) -> None:
        t = answer.timings
        self.metrics.retrieval.observe(t.get("rewrite", 0.0) + t.get("retrieve", 0.0))
        if "first_token" in t:
            self.metrics.first_token.observe(t["first_token"])


def create_app(settings: Settings, collection: str | None = None, chain=None) -> FastAPI:
    """The FastAPI app answering from `collection` (default: settings.milvus_collection).

    Needs settings.api_key (DOCBOT_API_KEY): an API that answers anyone is not deployed by accident.
    `chain` defaults to a RagChain on the settings.
    """
    from docbot_lib.pipeline.rag import RagChain

    api_key = _api_key(settings)
    collection = collection or settings.milvus_collection
    metrics = Metrics()
    answers = _Answers(settings, chain or RagChain(settings, collection=collection), metrics, collection)
    expected = api_key.encode()
    ready = _cached(lambda: readiness(settings, collection), READY_CACHE_SECONDS)

    app = FastAPI(
        title="Doc Bot",
        version="0.1.0",
        description="Answers questions about the ingested documentation, citing its sources.",
    )
    app.state.settings, app.state.collection, app.state.metrics = settings, collection, metrics
    app.add_middleware(_Gate, settings=settings, metrics=metrics)  # the key and the body size, before any route

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path == CHAT:
            metrics.requests.labels(str(exc.status)).inc()
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == CHAT:
            metrics.requests.labels("422").inc()
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(
            {
                "error": {"message": f"malformed request: {problems}", "type": "invalid_request_error", "code": 422},
                "detail": json.loads(json.dumps(exc.errors(), default=str)),
            },
            status_code=422,
        )

    # -- open routes (the gate lets them through without the key) --
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        report = ready()
        if not key_matches(request.headers.get("authorization"), expected):  # which check, never URLs or errors
            report = {"ready": report["ready"], "checks": {n: {"ok": c["ok"]} for n, c in report["checks"].items()}}
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(resources.files("docbot_lib").joinpath("static/index.html").read_text("utf-8"))

    # -- the key (checked by the gate; /metrics and the docs open with api_public_docs) --
    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": collection, "object": "model", "created": 0, "owned_by": "docbot"}]}

    @app.get("/v1/sources")
    def source_text(source: str) -> dict[str, Any]:
        try:
            return stored_source(settings, collection, source)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as 503/500, never a traceback
            raise answers.failure(exc) from None

    @app.post(CHAT)
    async def chat_completions(body: ChatRequest, http: Request):
        return await answers.respond(body, http)

    return app


def _cached(compute: Callable[[], T], seconds: float) -> Callable[[], T]:
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


# -- readiness and stored sources --------------------------------------------------------------------------


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
    from docbot_lib.pipeline.store import forget_store, open_store, quote

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


def serve(settings: Settings, host: str | None = None, port: int = 8080, collection: str | None = None) -> None:
    """Run the API and the web UI with uvicorn until interrupted (`docbot serve`). Binds `host`, else
    settings.api_host (127.0.0.1: a container passes --host 0.0.0.0); X-Forwarded-* headers count only from
    settings.api_trusted_proxies (anyone else could claim any client address or scheme)."""
    import uvicorn

    from docbot_lib.clients.embeddings import get_embeddings

    app = create_app(settings, collection)
    get_embeddings(settings).embed_query("warm-up")  # load the model now, not in the first user's request
    uvicorn.run(
        app,
        host=host or settings.api_host,
        port=port,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips=settings.api_trusted_proxies,
    )
