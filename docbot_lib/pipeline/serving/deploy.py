"""Serving on the cluster: apply the objects, wait until the InferenceService is Ready (its conditions and events
said when not), read the token its proxy wants, or use a model someone else deployed.

Layer: pipeline, step `serving` (its deployment): imports core, clients, k8s, the steps before it and serving.objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from docbot_lib.clients import kube
from docbot_lib.core.errors import ConfigError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline.serving.objects import VllmOptions

# Upstream vLLM, pinned to a release tag: the tags of quay.io/modh/vllm (rhoai-2.x-cuda) move with each
# OpenShift AI update, so the same manifest could serve a different vLLM tomorrow. 0.32.0 is also the release
# whose CPU build was tried on the workshop machines, so flags and /metrics names match what was seen.


def use_existing(settings: Settings, echo: Callable[[str], None] = print) -> Settings:
    """A model deployed another way (the dashboard, a colleague): check its endpoint and name are set and, on a
    cluster, record them for the next notebooks. The token stays where it is (.env: DOCBOT_LLM_API_KEY)."""
    if not settings.llm_base_url:
        raise ConfigError(
            "no model endpoint: APPLY_TO_CLUSTER is False and no endpoint is set",
            "in the dashboard: your project → Models → the model's 'Internal and external endpoint "
            "details' → copy the external URL into LLM_BASE_URL (…/v1 is added) and the model's "
            "name into LLM_MODEL_NAME; its token (Token authentication → the token secret) goes "
            "into .env as DOCBOT_LLM_API_KEY. Or set APPLY_TO_CLUSTER = True to deploy it here",
            service="llm",
        )
    base = settings.llm_base_url.rstrip("/")
    base = base if base.endswith("/v1") else f"{base}/v1"
    echo(
        f"using the model at {base} as {settings.llm_model_name!r}; token: "
        + ("set" if settings.secret("llm_api_key") else "none (fine if the endpoint has no token authentication)")
    )
    if settings.stack == "cluster":  # for notebooks 05-07 (an explicit parameter still wins in the reload)
        settings = settings.record(llm_base_url=base, llm_model_name=settings.llm_model_name)
    return settings.model_copy(update={"llm_base_url": base})


def read_token(name: str, namespace: str, api_client, timeout: float = 60, poll: float = 2) -> str:
    """The bearer token of the identity `name` (`token_auth_manifests`' identity: its service account's token
    Secret, filled in by the cluster's token controller within seconds of being created). Never print it."""
    import base64

    from kubernetes import client

    api = client.CoreV1Api(api_client)
    secret = f"{name}-sa-token"
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = api.read_namespaced_secret(secret, namespace).data or {}
        except Exception as exc:  # noqa: BLE001
            raise kube.api_error(exc, f"Secret/{secret}", namespace, api_client) from None
        if data.get("token"):
            return base64.b64decode(data["token"]).decode()
        if time.monotonic() + poll > deadline:
            raise ServiceUnavailable(
                f"the token Secret {secret} in {namespace} has no token after {timeout:.0f} s",
                f"check that the ServiceAccount {name}-sa exists (`oc get sa`); the cluster's token "
                "controller fills the Secret in",
                service="kubernetes",
            )
        time.sleep(poll)


def _conditions(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    return list((isvc.get("status") or {}).get("conditions") or [])


def _condition_lines(isvc: dict[str, Any]) -> list[str]:
    lines = [
        f"{c.get('type')}={c.get('status')}"
        + (f" ({c.get('reason')})" if c.get("reason") else "")
        + (f": {c.get('message')}" if c.get("message") else "")
        for c in _conditions(isvc)
    ]
    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo")
    if failure:
        lines.append(f"model: {failure.get('reason', '')}: {failure.get('message', '')}".strip())
    return lines or ["(no status yet: is the KServe controller running?)"]


def _event_lines(api_client, name: str, namespace: str, limit: int = 10) -> list[str]:
    """The latest events of the InferenceService and of what it made (<name>-predictor-... pods)."""
    from kubernetes import client

    try:
        events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    except Exception as exc:  # noqa: BLE001 - the timeout report must not fail on missing rights
        return [f"(events not readable: {type(exc).__name__})"]
    ours = [
        e
        for e in events
        if e.involved_object
        and e.involved_object.name
        and (e.involved_object.name == name or e.involved_object.name.startswith(f"{name}-"))
    ]

    def when(e):
        stamp = e.last_timestamp or e.event_time or e.first_timestamp
        return stamp.timestamp() if stamp else 0.0

    ours.sort(key=when)
    return [
        f"{e.type} {e.reason} {e.involved_object.kind}/{e.involved_object.name}: {e.message}" for e in ours[-limit:]
    ] or ["(none)"]


def wait_inference_service_ready(
    name: str,
    namespace: str,
    api_client,
    timeout: float = 1200,
    poll: float = 10,
    echo: Callable[[str], None] | None = print,
) -> str:
    """Wait until the InferenceService is Ready and return its URL (status.url, else status.address.url).

    Prints each change of its conditions through `echo`. On timeout, raises a DocbotError that shows the
    conditions and the latest events (scheduling, image pulls, model loading). Safe to call again.
    """
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    isvc: dict[str, Any] = {}
    while True:
        try:
            isvc = cast(
                dict[str, Any],
                api.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", name),
            )
        except Exception as exc:  # noqa: BLE001
            raise kube.api_error(exc, f"InferenceService/{name}", namespace, api_client) from None
        status = isvc.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in _conditions(isvc))
        url = status.get("url") or (status.get("address") or {}).get("url")
        if ready and url:
            if echo:
                echo(f"InferenceService {name} is ready: {url}")
            return url
        lines = _condition_lines(isvc)
        if echo and lines != shown:
            echo(f"waiting for {name}: " + "; ".join(lines))
        shown = lines
        if time.monotonic() + poll > deadline:
            break
        time.sleep(poll)
    report = "\n    ".join(_condition_lines(isvc))
    events = "\n    ".join(_event_lines(api_client, name, namespace))
    raise ServiceUnavailable(
        f"InferenceService {name} in {namespace} is not ready after {timeout:.0f} s\n"
        f"  conditions:\n    {report}\n  recent events:\n    {events}",
        "read the events above: Insufficient nvidia.com/gpu = no free GPU node (check tolerations/nodeSelector); "
        "ImagePullBackOff = image name or pull secret; a model load error = wrong storage path or a "
        "--max-model-len too large for the GPU (see `docbot_lib.pipeline.sizing`); then call this again",
        service="kubernetes",
    )


def deploy(
    settings: Settings,
    objects: list[dict[str, Any]],
    options: VllmOptions,
    namespace: str | None = None,
    api_client=None,
    timeout: float = 1200,
    echo: Callable[[str], None] = print,
) -> Settings:
    """Apply the serving objects to the cluster, wait for the InferenceService, and record what the next
    notebooks need (the endpoint, the served name and, with token auth, the token) in the cluster state file.

    A Secret that exists is kept, not replaced: the data connection may have been made in the dashboard
    with other keys than this workbench's. Returns the settings with the recorded values."""
    api = api_client or kube.kube_api_client()
    namespace = namespace or kube.current_namespace(settings)
    for applied in manifests.apply(objects, namespace, api, keep_existing=["Secret"]):
        echo(str(applied))
    url = wait_inference_service_ready(options.name, namespace, api, timeout=timeout, echo=echo)
    token = read_token(options.name, namespace, api) if options.auth else None
    served = options.served_model_name or settings.llm_model_name
    echo(
        f"recorded for the next notebooks: endpoint {url}/v1, model {served!r}"
        + (", its token (not shown)" if token else "")
    )
    return settings.record(
        llm_base_url=url.rstrip("/") + "/v1", llm_model_name=served, llm_api_key=token, namespace=namespace
    )
