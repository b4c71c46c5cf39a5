"""The OpenAI-compatible protocol of the chatbot API: the request's shape and limits, the history that fits the
model's context, the response's pieces (chunks, usage, sources, grounding), and the error body.

Layer: pipeline, step `api` (its protocol): imports core and clients.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from docbot_lib.core.settings import Settings

log = logging.getLogger("docbot.api")
T = TypeVar("T")

CHAT = "/v1/chat/completions"


DEFAULT_CONTEXT = 4096  # tokens, when the endpoint does not say: the local llama.cpp server's --n_ctx


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


def sources_of(answer) -> list[dict[str, Any]]:
    """Every passage given to the model, in its [n] order; `cited` tells which ones the answer cites."""
    cited = {s.number for s in answer.sources}
    return [{**s.to_dict(), "cited": s.number in cited} for s in answer.retrieved]


def grounding_of(answer) -> dict[str, Any]:
    """{"grounding": ...} when the model answered: does the answer rest on its sources (rag.Grounding)."""
    return {"grounding": answer.grounding.to_dict()} if answer.grounding else {}


def sse_chunk(ids: dict[str, Any], delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    body = {
        **ids,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else [],
        **extra,
    }
    return json.dumps(body, ensure_ascii=False)


def usage_of(tokens: int) -> dict[str, int]:
    # the prompt is built inside the chain; its size is not reported by the streamed LLM answer
    return {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}
