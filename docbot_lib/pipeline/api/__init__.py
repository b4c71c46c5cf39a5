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

The step in five modules: `protocol` (request, limits, response pieces), `gate` (key, body size, queue,
metrics), `answers` (the chain streamed, stopped on disconnect), `health` (readiness, stored sources), `app`
(the routes, `create_app`, `serve`).

Layer: pipeline, step `api`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.api.app import create_app, serve

__all__ = ["create_app", "serve"]
