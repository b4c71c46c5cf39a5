"""Serving the model: vLLM on KServe (or as a plain Deployment) on OpenShift AI, and reading its metrics.

On a cluster: `data_connection()` + `inference_service_manifests()` give the objects,
`docbot_lib.k8s.manifests.apply()` sends them, `wait_inference_service_ready()` returns the endpoint URL.
`vllm_metrics()` reads the live KV-cache use and request counts from vLLM's Prometheus `/metrics`.
GPU sizing (will it fit, which --max-model-len) is in `docbot_lib.pipeline.sizing`.

Layer: pipeline, step `serving`: imports core, clients, k8s and the steps before it (pipeline.STEPS).

The step in three modules: `objects` (what goes to the cluster), `deploy` (apply, wait, tokens) and `endpoint`
(API docs, vLLM's metrics, the smoke test).

Layer: pipeline, step `serving`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.s3 import learner_model_prefix  # where the model is read from: notebook 03 prints it
from docbot_lib.pipeline.serving.deploy import deploy, read_token, use_existing, wait_inference_service_ready
from docbot_lib.pipeline.serving.endpoint import (
    ApiDocs,
    SmokeTest,
    VllmMetrics,
    api_docs,
    parse_vllm_metrics,
    smoke_test,
    vllm_metrics,
)
from docbot_lib.pipeline.serving.objects import (
    PLATFORM_TEMPLATE,
    STORAGE_INITIALIZER_IMAGE,
    TOKEN_PROXY_PORT,
    VLLM_IMAGE,
    RuntimeImage,
    VllmOptions,
    data_connection,
    inference_service_manifests,
    learner_network_policy,
    runtime_image,
    serving_name,
    serving_objects,
    standalone_manifests,
    standalone_secret,
    token_auth_manifests,
)

__all__ = [
    "api_docs",
    "ApiDocs",
    "data_connection",
    "deploy",
    "inference_service_manifests",
    "learner_model_prefix",
    "learner_network_policy",
    "parse_vllm_metrics",
    "PLATFORM_TEMPLATE",
    "read_token",
    "runtime_image",
    "RuntimeImage",
    "serving_name",
    "serving_objects",
    "smoke_test",
    "SmokeTest",
    "standalone_manifests",
    "standalone_secret",
    "STORAGE_INITIALIZER_IMAGE",
    "token_auth_manifests",
    "TOKEN_PROXY_PORT",
    "use_existing",
    "VLLM_IMAGE",
    "vllm_metrics",
    "VllmMetrics",
    "VllmOptions",
    "wait_inference_service_ready",
]
