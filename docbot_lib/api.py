"""The chatbot as a web service: an OpenAI-compatible API over the RAG chain, and the web UI.

    app = create_app(settings, collection="docbot")   # a FastAPI app; `serve()` runs it with uvicorn

Routes:
  POST /v1/chat/completions  OpenAI-compatible, streamed (SSE) or not. The last user message is the question,
                             earlier user/assistant turns are the history, system messages are ignored (the
                             bot has its own instructions). The body carries an extra `sources` field; a
                             streamed answer ends with one chunk carrying `sources` before `data: [DONE]`.
  GET  /v1/models            one model: the collection's name.
  GET  /v1/sources?source=   the stored text of one source (its chunks, in order), for the UI's source links.
  GET  /healthz              the process answers (liveness). GET /readyz: LLM and Milvus answer (readiness).
  GET  /metrics              Prometheus: requests, errors, retrieval and first-token latency, tokens.
  GET  /                     the web UI (docbot_lib/static/index.html).

Every /v1 route needs "Authorization: Bearer <DOCBOT_API_KEY>". At most `api_max_concurrency` answers are
generated at once; a request beyond that gets 429 at once (queueing behind a slow LLM helps nobody).
An unreachable LLM or Milvus gives 503 with the problem and the fix; the server stays up.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from importlib import resources
from typing import Any, AsyncIterator, Iterator, Literal

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from docbot_lib.errors import DocbotError, ServiceUnavailable
from docbot_lib.settings import Settings

log = logging.getLogger("docbot.api")
_END = object()  # the end of the chain's generator


class ApiError(Exception):
    """An HTTP error answered as OpenAI does: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        self.status, self.message, self.kind = status, message, kind
        super().__init__(message)

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "code": self.status}},
                            status_code=self.status, headers=headers)


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


# -- metrics ---------------------------------------------------------------------------------------------

class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        latency = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.requests = Counter("docbot_requests", "chat completion requests, by HTTP status",
                                ["status"], registry=self.registry)
        self.errors = Counter("docbot_errors", "failed answers, by cause (llm, milvus, config, internal)",
                              ["cause"], registry=self.registry)
        self.retrieval = Histogram("docbot_retrieval_seconds", "time to rewrite and retrieve the passages",
                                   buckets=latency, registry=self.registry)
        self.first_token = Histogram("docbot_time_to_first_token_seconds",
                                     "from the request to the answer's first token", buckets=latency,
                                     registry=self.registry)
        self.tokens = Counter("docbot_generated_tokens", "answer tokens streamed by the LLM (one per chunk)",
                              registry=self.registry)
        self.in_flight = Gauge("docbot_answers_in_flight", "answers being generated now", registry=self.registry)


# -- errors of the services ---------------------------------------------------------------------------

def unavailable(exc: Exception, settings: Settings) -> tuple[str, str] | None:
    """(cause, message) when `exc` means a service is down or misconfigured (answered as 503), else None."""
    import openai

    if isinstance(exc, DocbotError):
        cause = "milvus" if "milvus" in exc.problem.lower() or "collection" in exc.problem.lower() else "config"
        return ("llm" if "llm" in exc.problem.lower() else cause), str(exc)
    base = settings.llm_base_url
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "llm", f"the LLM at {base} refused the API key. Fix: set DOCBOT_LLM_API_KEY to the endpoint's token"
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return "llm", (f"the LLM does not answer at {base} ({type(exc).__name__}). "
                       "Fix: check DOCBOT_LLM_BASE_URL and that the model server is ready")
    if isinstance(exc, openai.APIStatusError):
        return "llm", (f"the LLM at {base} failed (HTTP {exc.status_code}). "
                       "Fix: check the model server's logs and DOCBOT_LLM_MODEL_NAME")
    try:
        from pymilvus.exceptions import MilvusException
    except ImportError:  # pragma: no cover - pymilvus is a dependency
        MilvusException = ()  # type: ignore[assignment]
    if isinstance(exc, MilvusException):
        return "milvus", (f"Milvus failed at {settings.milvus_uri} ({getattr(exc, 'message', exc)}). "
                          "Fix: check that Milvus runs and DOCBOT_MILVUS_URI / DOCBOT_MILVUS_TOKEN")
    return None


# -- the OpenAI wire format ------------------------------------------------------------------------------

def _sources(answer) -> list[dict[str, Any]]:
    """Every passage given to the model, in its [n] order; `cited` tells which ones the answer cites."""
    cited = {s.number for s in answer.sources}
    return [{**s.to_dict(), "cited": s.number in cited} for s in answer.retrieved]


def _chunk(ids: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    body = {**ids, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else [],
            **extra}
    return json.dumps(body, ensure_ascii=False)


def _usage(tokens: int) -> dict[str, int]:
    # the prompt is built inside the chain; its size is not reported by the streamed LLM answer
    return {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}


# -- the app ---------------------------------------------------------------------------------------------

class _Slots:
    """At most `size` answers at once. Checked and taken without awaiting: atomic on the event loop."""

    def __init__(self, size: int):
        self.size, self.used = size, 0

    def take(self) -> bool:
        if self.used >= self.size:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used -= 1


def create_app(settings: Settings, collection: str | None = None, chain=None) -> FastAPI:
    """The FastAPI app answering from `collection` (default: settings.milvus_collection).

    Needs settings.api_key (DOCBOT_API_KEY): an API that answers anyone is not deployed by accident.
    `chain` defaults to a RagChain on the settings.
    """
    from docbot_lib.rag import RagChain

    if not settings.secret("api_key"):
        raise DocbotError("no API key set for the chatbot API",
                          "set DOCBOT_API_KEY (environment, .env, or the Secret on the cluster) to a long random "
                          "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    collection = collection or settings.milvus_collection
    chain = chain or RagChain(settings, collection=collection)
    metrics = Metrics()
    slots = _Slots(settings.api_max_concurrency)
    expected = settings.secret("api_key").encode()

    app = FastAPI(title="Doc Bot", version="0.1.0",
                  description="Answers questions about the ingested documentation, citing its sources.")
    app.state.settings, app.state.collection, app.state.metrics = settings, collection, metrics

    bearer = HTTPBearer(auto_error=False)

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = (credentials.credentials if credentials else "").encode()
        if not secrets.compare_digest(given, expected):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <DOCBOT_API_KEY>'",
                           "authentication_error")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path == "/v1/chat/completions":
            metrics.requests.labels(str(exc.status)).inc()
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/v1/chat/completions":
            metrics.requests.labels("422").inc()
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": {"message": f"malformed request: {problems}",
                                       "type": "invalid_request_error", "code": 422},
                             "detail": json.loads(json.dumps(exc.errors(), default=str))}, status_code=422)

    def failure(exc: Exception) -> ApiError:
        known = unavailable(exc, settings)
        if known:
            cause, message = known
            metrics.errors.labels(cause).inc()
            log.warning("answer failed: %s", message)
            return ApiError(503, message, "service_unavailable")
        metrics.errors.labels("internal").inc()
        log.exception("answer failed")
        return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the details", "server_error")

    def observe(answer) -> None:
        t = answer.timings
        metrics.retrieval.observe(t.get("rewrite", 0.0) + t.get("retrieve", 0.0))
        if "first_token" in t:
            metrics.first_token.observe(t["first_token"])

    async def next_piece(pieces: Iterator) -> Any:
        return await anyio.to_thread.run_sync(next, pieces, _END)

    # -- open routes --
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        report = readiness(settings, collection)
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(resources.files("docbot_lib").joinpath("static/index.html").read_text("utf-8"))

    # -- /v1: bearer token --
    @app.get("/v1/models", dependencies=[Depends(authorized)])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": collection, "object": "model", "created": 0, "owned_by": "docbot"}]}

    @app.get("/v1/sources", dependencies=[Depends(authorized)])
    def source_text(source: str) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                return stored_source(settings, collection, source)
            except ApiError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as 503/500, never a traceback
                if attempt == 1 and _milvus_connection_lost(exc):
                    continue
                raise failure(exc) from None

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(request: ChatRequest):
        question, history = request.question_and_history()
        if not slots.take():
            raise ApiError(429, f"the bot is answering {slots.size} question(s) already; retry in a few seconds",
                           "rate_limit_error")
        ids = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": collection}
        metrics.in_flight.inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.give_back()
                metrics.in_flight.dec()

        try:
            # the first piece comes after rewrite, retrieval and the LLM's first token: a failure of any
            # of them is still an HTTP status, not an error inside a 200 stream
            for attempt in (1, 2):
                pieces = chain.stream(question, history)
                try:
                    first = await next_piece(pieces)
                    break
                except Exception as exc:  # noqa: BLE001
                    # pymilvus shares one gRPC channel per URI; when the server has dropped it (idle GOAWAY)
                    # the next call fails once and the channel is opened anew: retry that case once
                    if attempt == 1 and _milvus_connection_lost(exc):
                        log.warning("Milvus connection lost; retrying once")
                        continue
                    raise failure(exc) from None
            if not request.stream:
                answer, tokens = await _drain(first, pieces, next_piece, failure)
        except BaseException:
            release()
            raise
        if not request.stream:
            release()
            observe(answer)
            metrics.tokens.inc(tokens)
            metrics.requests.labels("200").inc()
            return {**ids, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                                 "finish_reason": "stop"}],
                    "usage": _usage(tokens), "sources": _sources(answer)}
        include_usage = bool((request.stream_options or {}).get("include_usage"))
        metrics.requests.labels("200").inc()

        async def events() -> AsyncIterator[dict[str, str]]:
            from docbot_lib.rag import Answer

            tokens = 0
            try:
                yield {"data": _chunk(ids, {"role": "assistant", "content": ""})}
                piece = first
                while piece is not _END:
                    if isinstance(piece, Answer):
                        observe(piece)
                        metrics.tokens.inc(tokens)
                        yield {"data": _chunk(ids, {}, "stop")}
                        extra = {"usage": _usage(tokens)} if include_usage else {}
                        yield {"data": _chunk(ids, None, sources=_sources(piece), **extra)}
                    elif piece:
                        tokens += 1
                        yield {"data": _chunk(ids, {"content": piece})}
                    try:
                        piece = await next_piece(pieces)
                    except Exception as exc:  # noqa: BLE001 - the status is sent: report inside the stream
                        error = failure(exc)
                        yield {"data": json.dumps({"error": {"message": error.message, "type": error.kind,
                                                             "code": error.status}})}
                        break
                yield {"data": "[DONE]"}
            finally:
                release()

        from sse_starlette.sse import EventSourceResponse

        return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-cache",
                                                               "X-Accel-Buffering": "no"})

    return app


def _milvus_connection_lost(exc: Exception) -> bool:
    text = str(exc)
    return "Milvus" in text and ("Fail connecting" in text or "UNAVAILABLE" in text)


async def _drain(first, pieces, next_piece, failure):
    """The final Answer of the chain's generator, and how many text pieces came before it."""
    from docbot_lib.rag import Answer

    tokens, piece = 0, first
    while not isinstance(piece, Answer):
        if piece is _END:
            raise failure(RuntimeError("the RAG chain ended without an answer"))
        tokens += bool(piece)
        try:
            piece = await next_piece(pieces)
        except Exception as exc:  # noqa: BLE001
            raise failure(exc) from None
    return piece, tokens


# -- readiness and stored sources --------------------------------------------------------------------------

def llm_reachable(settings: Settings, timeout: float = 5.0) -> str:
    """The LLM endpoint lists the configured model (no generation: a probe must not queue behind answers)."""
    from docbot_lib.checks import llm_serves_model

    return f"{llm_serves_model(settings, timeout)}: {settings.llm_model_name}"


def milvus_ready(settings: Settings, collection: str) -> str:
    """Milvus answers with our credentials and holds the collection."""
    from docbot_lib.checks import milvus_client

    client = milvus_client(settings, timeout=5)
    try:
        if not client.has_collection(collection):
            raise ServiceUnavailable(f"Milvus at {settings.milvus_uri} has no collection {collection!r}",
                                     "ingest documents first: `docbot ingest PATH --collection NAME` (notebook 05)")
    finally:
        client.close()
    return f"{settings.milvus_uri}: collection {collection}"


def readiness(settings: Settings, collection: str) -> dict[str, Any]:
    """{"ready": bool, "checks": {"llm": {"ok", "detail"}, "milvus": {...}}}; never raises."""
    checks: dict[str, dict[str, Any]] = {}
    for name, check in (("llm", lambda: llm_reachable(settings)), ("milvus", lambda: milvus_ready(settings, collection))):
        try:
            checks[name] = {"ok": True, "detail": check()}
        except DocbotError as exc:
            checks[name] = {"ok": False, "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


def stored_source(settings: Settings, collection: str, source: str, limit: int = 200) -> dict[str, Any]:
    """The chunks stored for one source (as cited in `sources`), in document order: what the bot read."""
    from docbot_lib.store import open_store, quote

    # the process's store for the collection: opening and closing a client per request drops pymilvus's
    # shared channel for every other request
    store = open_store(settings, collection)
    rows = store.client.query(collection, filter=f"source == {quote(source)}", limit=limit,
                              output_fields=["title", "section", "page", "chunk_index", "text"])
    if not rows:
        raise ApiError(404, f"no source {source!r} in collection {collection!r}", "not_found_error")
    rows.sort(key=lambda r: r.get("chunk_index", 0))
    return {"source": source, "title": rows[0].get("title", ""),
            "chunks": [{"section": r.get("section", ""), "page": r.get("page") or None, "text": r.get("text", "")}
                       for r in rows]}


def serve(settings: Settings, host: str = "0.0.0.0", port: int = 8080, collection: str | None = None) -> None:
    """Run the API and the web UI with uvicorn until interrupted (`docbot serve`)."""
    import uvicorn

    from docbot_lib.embeddings import get_embeddings

    app = create_app(settings, collection)
    get_embeddings(settings).embed_query("warm-up")  # load the model now, not in the first user's request
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True, forwarded_allow_ips="*")
