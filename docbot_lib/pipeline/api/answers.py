"""Answering: the RAG chain run in a worker thread, streamed as server-sent events or whole, stopped when the
client goes away (the model server stops generating too), and a failure as the error a client can act on.

Layer: pipeline, step `api` (its answers): imports core, clients, the steps before it, api.protocol and api.gate.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import Response
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook
from sse_starlette.sse import EventSourceResponse

from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.api.gate import Metrics, Slots
from docbot_lib.pipeline.api.protocol import (
    DEFAULT_CONTEXT,
    ApiError,
    ChatRequest,
    check_limits,
    context_window,
    fit_history,
    grounding_of,
    sources_of,
    sse_chunk,
    usage_of,
)

log = logging.getLogger("docbot.api")
T = TypeVar("T")

_END = object()  # the end of the chain's generator


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


class Answers:
    """The chat completions of one app: a slot each, the chain's pieces, the OpenAI wire format, the metrics."""

    def __init__(self, settings: Settings, chain, metrics: Metrics, model: str):
        self.settings, self.chain, self.metrics, self.model = settings, chain, metrics, model
        self.slots = Slots(settings)
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
            "usage": usage_of(tokens),
            "sources": sources_of(answer),
            **grounding_of(answer),
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
        yield {"data": sse_chunk(ids, {"role": "assistant", "content": ""})}
        while piece is not _END:
            if isinstance(piece, Answer):
                self.observe(piece)
                self.metrics.tokens.inc(tokens)
                yield {"data": sse_chunk(ids, {}, "stop")}
                extra: dict[str, Any] = {"usage": usage_of(tokens)} if include_usage else {}
                yield {"data": sse_chunk(ids, None, sources=sources_of(piece), **grounding_of(piece), **extra)}
            elif piece:
                tokens += 1
                yield {"data": sse_chunk(ids, {"content": piece})}
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
