"""The LLM endpoint (OpenAI-compatible: vLLM on KServe, llama.cpp locally): LangChain's chat model on it, and
whether it serves the configured model.

Layer: clients (imports only core).

    llm = chat_model(settings)            # ChatOpenAI with the lab's generation settings
    base = llm_serves_model(settings)     # GET /models, no generation: a readiness probe
"""

from __future__ import annotations

from typing import Any

import httpx

from docbot_lib.core.errors import AuthRefused, ConfigError, NotReachable, ServiceUnavailable
from docbot_lib.core.settings import Settings


def llm_headers(settings: Settings) -> dict[str, str]:
    key = settings.secret("llm_api_key")
    return {"Authorization": f"Bearer {key}"} if key else {}


def llm_serves_model(settings: Settings, timeout: float = 30.0) -> str:
    """The endpoint lists the configured model (GET /models: cheap, no generation, so a readiness probe does
    not queue behind answers being generated). Returns the endpoint's base URL."""
    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured",
            "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL ending in /v1",
            service="llm",
        )
    base = settings.llm_base_url.rstrip("/")
    try:
        models = httpx.get(f"{base}/models", timeout=timeout, headers=llm_headers(settings))
    except httpx.HTTPError as exc:
        raise NotReachable(
            f"the LLM does not answer at {base} ({type(exc).__name__}: {exc})",
            settings.start_hint("DOCBOT_LLM_BASE_URL"),
            service="llm",
        ) from None
    if models.status_code in (401, 403):
        raise AuthRefused(
            f"the LLM at {base} refused the API key (HTTP {models.status_code})",
            "set DOCBOT_LLM_API_KEY to the endpoint's token",
            service="llm",
        )
    if models.status_code != 200:
        raise ServiceUnavailable(
            f"the LLM at {base} answered HTTP {models.status_code} on /models",
            "check the model server's logs",
            service="llm",
        )
    served = [m.get("id") for m in models.json().get("data", [])]
    if settings.llm_model_name not in served:
        raise ConfigError(
            f"the LLM at {base} serves {served}, not {settings.llm_model_name!r}",
            "set DOCBOT_LLM_MODEL_NAME to one of the served names",
            service="llm",
        )
    return base


# -- the OpenAI-compatible endpoint, in both modes ------------------------------------------------------
def chat_model(settings: Settings, streaming: bool = False):
    """LangChain's ChatOpenAI on the settings' endpoint with the lab's generation settings."""
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured", "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL (…/v1)", service="llm"
        )
    # only when asked: an explicit streaming=False makes LangChain's .stream() return one whole chunk
    streaming_option: dict[str, Any] = {"streaming": True} if streaming else {}
    return ChatOpenAI(
        base_url=settings.llm_base_url,
        api_key=SecretStr(settings.secret("llm_api_key") or "none"),
        model=settings.llm_model_name,
        temperature=settings.temperature,
        top_p=settings.top_p,
        presence_penalty=settings.presence_penalty,
        timeout=120,
        max_retries=1,
        # ChatOpenAI sends its max_tokens as `max_completion_tokens`, which llama.cpp's server ignores (it then
        # generates to the end of its context); `max_tokens` in the body is honoured by vLLM and llama.cpp.
        extra_body={"max_tokens": settings.max_tokens},
        **streaming_option,
    )
