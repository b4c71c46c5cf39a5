"""The served model's OpenAI-compatible endpoint: its API docs, vLLM's live metrics (KV cache, requests) and a
smoke test (models, a chat completion, a streamed one, LangChain's).

Layer: pipeline, step `serving` (its endpoint): imports core and clients.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from docbot_lib.clients.llm import chat_model
from docbot_lib.core.errors import AuthRefused, ConfigError, NotReachable, ServiceUnavailable
from docbot_lib.core.settings import Settings

# Upstream vLLM, pinned to a release tag: the tags of quay.io/modh/vllm (rhoai-2.x-cuda) move with each
# OpenShift AI update, so the same manifest could serve a different vLLM tomorrow. 0.32.0 is also the release
# whose CPU build was tried on the workshop machines, so flags and /metrics names match what was seen.


@dataclass(frozen=True)
class ApiDocs:
    """The server's own API description: its Swagger UI address and the operations of /openapi.json."""

    docs_url: str
    operations: tuple[str, ...]  # "POST /v1/chat/completions", ...

    def __str__(self) -> str:
        return "\n".join([f"Swagger UI: {self.docs_url}", *[f"  {op}" for op in self.operations]])


def api_docs(settings: Settings, timeout: float = 10) -> ApiDocs:
    """What the OpenAI-compatible server says about itself: vLLM (and llama.cpp's server) are FastAPI apps with
    a Swagger UI at /docs and the description at /openapi.json, next to /v1 (read with the endpoint's token)."""
    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured", "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL (…/v1)", service="llm"
        )
    root = re.sub(r"/v1/?$", "", settings.llm_base_url.rstrip("/"))
    key = settings.secret("llm_api_key")
    try:
        response = httpx.get(
            f"{root}/openapi.json",
            timeout=timeout,
            follow_redirects=True,
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        response.raise_for_status()
        paths = response.json().get("paths") or {}
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(
            f"cannot read {root}/openapi.json ({type(exc).__name__}: {exc})",
            "check the endpoint (DOCBOT_LLM_BASE_URL) and its token (DOCBOT_LLM_API_KEY)",
            service="llm",
        ) from None
    methods = ("get", "post", "put", "delete")
    operations = tuple(f"{m.upper()} {path}" for path, ops in sorted(paths.items()) for m in methods if m in ops)
    return ApiDocs(f"{root}/docs", operations)


@dataclass(frozen=True)
class VllmMetrics:
    """What vLLM's /metrics says now. `is_vllm` is False for another server (e.g. llama.cpp): see `detail`."""

    is_vllm: bool
    detail: str
    kv_cache_usage: float | None = None  # 0..1 of the KV-cache blocks in use
    requests_running: float | None = None
    requests_waiting: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    model_names: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.is_vllm:
            return self.detail
        usage = "?" if self.kv_cache_usage is None else f"{self.kv_cache_usage:.1%}"
        return (
            f"vLLM {', '.join(self.model_names) or ''}: KV cache {usage} used, "
            f"{self.requests_running:g} running, {self.requests_waiting:g} waiting, "
            f"{self.prompt_tokens_total:g} prompt / {self.generation_tokens_total:g} generated tokens so far"
        )


# vLLM renamed the KV-cache gauge (V1 engine); read whichever the server has
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def parse_vllm_metrics(text: str) -> VllmMetrics:
    """Parse Prometheus text exposition; sums over label sets (one per served model)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    models: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("vllm:"):
                    sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
                    if "model_name" in sample.labels:
                        models.add(sample.labels["model_name"])
    except ValueError as exc:
        return VllmMetrics(False, f"not a vLLM endpoint: /metrics is not Prometheus text ({exc})")
    if not sums:
        return VllmMetrics(False, "not a vLLM endpoint: /metrics has no vllm:* metrics")
    kv = next((sums[n] for n in _KV_USAGE if n in sums), None)
    if kv is not None and len(models) > 1:
        kv /= len(models)  # a percentage: the mean, not the sum, over models
    return VllmMetrics(
        True,
        "vLLM",
        kv_cache_usage=kv,
        requests_running=sums.get("vllm:num_requests_running", 0.0),
        requests_waiting=sums.get("vllm:num_requests_waiting", 0.0),
        prompt_tokens_total=sums.get("vllm:prompt_tokens_total", 0.0),
        generation_tokens_total=sums.get("vllm:generation_tokens_total", 0.0),
        model_names=tuple(sorted(models)),
    )


def vllm_metrics(base_url: str, api_key: str | None = None, timeout: float = 10) -> VllmMetrics:
    """Read /metrics next to an OpenAI-compatible base URL (".../v1" is stripped).

    Another server (llama.cpp, a proxy) gives `is_vllm=False` with the reason; an unreachable one raises.
    """
    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{root}/metrics", headers=headers, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise NotReachable(
            f"cannot read {root}/metrics ({type(exc).__name__}: {exc})",
            "check the endpoint URL (DOCBOT_LLM_BASE_URL) and that the server runs",
            service="llm",
        ) from None
    if response.status_code in (401, 403):
        raise AuthRefused(
            f"{root}/metrics refused the token (HTTP {response.status_code})",
            "pass the endpoint's token as api_key (DOCBOT_LLM_API_KEY)",
            service="llm",
        )
    if response.status_code != 200:
        return VllmMetrics(False, f"not a vLLM endpoint: {root}/metrics answered HTTP {response.status_code}")
    return parse_vllm_metrics(response.text)


@dataclass
class SmokeTest:
    """What the endpoint answered: its models, a chat completion, a streamed one, and LangChain's."""

    base_url: str
    models: list[str]
    completion: str
    stream_chunks: int
    streamed: str
    langchain: str
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.models and self.completion.strip() and self.stream_chunks > 1 and self.langchain.strip())

    def __str__(self) -> str:
        def short(text: str) -> str:
            return " ".join(text.split())[:100]

        return "\n".join(
            [
                f"endpoint        {self.base_url}",
                f"/v1/models      {', '.join(self.models)}",
                f"chat completion {short(self.completion)!r}",
                f"streamed        {self.stream_chunks} chunks: {short(self.streamed)!r}",
                f"LangChain       {short(self.langchain)!r}",
                f"time            {self.seconds:.1f} s",
            ]
        )


def smoke_test(
    settings: Settings, question: str = "In one sentence, what is Kubernetes?", max_tokens: int = 48
) -> SmokeTest:
    """Exercise the endpoint the way the lab will: /v1/models, a chat completion and a streamed one through
    the `openai` client, and one through LangChain's ChatOpenAI (the lab's generation settings)."""
    import openai

    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured", "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL (…/v1)", service="llm"
        )
    start = time.perf_counter()
    client = openai.OpenAI(
        base_url=settings.llm_base_url, api_key=settings.secret("llm_api_key") or "none", timeout=120, max_retries=1
    )
    messages = [{"role": "user", "content": question}]
    params: dict[str, Any] = dict(
        model=settings.llm_model_name,
        messages=messages,
        max_tokens=max_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        presence_penalty=settings.presence_penalty,
    )
    try:
        models = [m.id for m in client.models.list().data]
        completion = client.chat.completions.create(**params).choices[0].message.content or ""
        pieces = [
            c.choices[0].delta.content or "" for c in client.chat.completions.create(**params, stream=True) if c.choices
        ]
        langchain = chat_model(settings.model_copy(update={"max_tokens": max_tokens})).invoke(question).content
    except openai.AuthenticationError:
        raise AuthRefused(
            f"the LLM at {settings.llm_base_url} refused the API key",
            "set DOCBOT_LLM_API_KEY to the endpoint's token",
            service="llm",
        ) from None
    except (openai.APIConnectionError, openai.APIStatusError) as exc:
        raise ServiceUnavailable(
            f"the LLM at {settings.llm_base_url} failed: {exc}",
            "check DOCBOT_LLM_BASE_URL and that the model server is ready",
            service="llm",
        ) from None
    return SmokeTest(
        settings.llm_base_url,
        models,
        completion,
        len(pieces),
        "".join(pieces),
        str(langchain),
        time.perf_counter() - start,
    )
