"""The chatbot API's app: its routes over the protocol, the gate, the answers and the probes, and `serve()`.

Layer: pipeline, step `api` (the app): imports core, clients, the steps before it and the api modules.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.api.answers import Answers
from docbot_lib.pipeline.api.gate import Gate, Metrics, key_matches, required_api_key
from docbot_lib.pipeline.api.health import READY_CACHE_SECONDS, cached, readiness, stored_source
from docbot_lib.pipeline.api.protocol import CHAT, ApiError, ChatRequest

log = logging.getLogger("docbot.api")
T = TypeVar("T")


# -- the request ---------------------------------------------------------------------------------------


# -- metrics ---------------------------------------------------------------------------------------------


# -- errors of the services ---------------------------------------------------------------------------


# -- the OpenAI wire format ------------------------------------------------------------------------------


# -- the app ---------------------------------------------------------------------------------------------


def create_app(settings: Settings, collection: str | None = None, chain=None) -> FastAPI:
    """The FastAPI app answering from `collection` (default: settings.milvus_collection).

    Needs settings.api_key (DOCBOT_API_KEY): an API that answers anyone is not deployed by accident.
    `chain` defaults to a RagChain on the settings.
    """
    from docbot_lib.pipeline.rag import RagChain

    api_key = required_api_key(settings)
    collection = collection or settings.milvus_collection
    metrics = Metrics()
    answers = Answers(settings, chain or RagChain(settings, collection=collection), metrics, collection)
    expected = api_key.encode()
    ready = cached(lambda: readiness(settings, collection), READY_CACHE_SECONDS)

    app = FastAPI(
        title="Doc Bot",
        version="0.1.0",
        description="Answers questions about the ingested documentation, citing its sources.",
    )
    app.state.settings, app.state.collection, app.state.metrics = settings, collection, metrics
    app.add_middleware(Gate, settings=settings, metrics=metrics)  # the key and the body size, before any route

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


# -- readiness and stored sources --------------------------------------------------------------------------


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
