"""The GPU's view: vLLM's /metrics read twice for tokens/s, next to the sizing of the lab's model from notebook 03.

Layer: pipeline, step `evaluate` (its GPU view): imports core, and serving and sizing lazily.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from docbot_lib.core.errors import ConfigError
from docbot_lib.core.settings import Settings


@dataclass
class GpuView:
    metrics: Any  # docbot_lib.pipeline.serving.VllmMetrics
    tokens_per_s: float | None  # generated tokens per second over the sampling interval
    sizing: Any  # docbot_lib.pipeline.sizing.SizingReport

    def __str__(self) -> str:
        if not self.metrics.is_vllm:
            return (
                f"{self.metrics.detail}\nThe GPU panel needs vLLM's /metrics (the cluster's model server); "
                f"on the local llama.cpp server there is none."
            )
        rate = "?" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"
        return f"{self.metrics}\ngeneration {rate} tokens/s\n\nsizing (notebook 03):\n{self.sizing}"


def gpu_view(settings: Settings, interval: float = 2.0, gpus: list[str] | None = None) -> GpuView:
    """Two readings of the LLM endpoint's /metrics `interval` seconds apart (for tokens/s), and the sizing
    of the lab's model from notebook 03 (`gpus` e.g. ["L4", "A10G"] to keep the table short)."""
    from docbot_lib.pipeline.serving import vllm_metrics
    from docbot_lib.pipeline.sizing import published_report

    if not settings.llm_base_url:
        raise ConfigError(
            "no LLM endpoint configured", "set DOCBOT_LLM_BASE_URL to the OpenAI-compatible URL (…/v1)", service="llm"
        )
    first = vllm_metrics(settings.llm_base_url, settings.secret("llm_api_key"))
    sizing = published_report(**({"gpus": gpus} if gpus else {}))
    if not first.is_vllm:
        return GpuView(first, None, sizing)
    time.sleep(interval)
    second = vllm_metrics(settings.llm_base_url, settings.secret("llm_api_key"))
    rate = None
    if first.generation_tokens_total is not None and second.generation_tokens_total is not None:
        rate = (second.generation_tokens_total - first.generation_tokens_total) / interval
    return GpuView(second, rate, sizing)
