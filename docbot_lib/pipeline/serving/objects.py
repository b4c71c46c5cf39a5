"""The serving objects: vLLM's ServingRuntime and the InferenceService (KServe), vLLM as a plain Deployment, the
token authentication and NetworkPolicies, and the data connection they read, all rendered from the settings.

Layer: pipeline, step `serving` (its objects): imports core, clients, k8s and the steps before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from docbot_lib.core.errors import BadInput, ConfigError
from docbot_lib.core.names import DNS_LABEL
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline.s3 import data_connection_secret_name, learner_model_prefix

# Upstream vLLM, pinned to a release tag: the tags of quay.io/modh/vllm (rhoai-2.x-cuda) move with each
# OpenShift AI update, so the same manifest could serve a different vLLM tomorrow. 0.32.0 is also the release
# whose CPU build was tried on the workshop machines, so flags and /metrics names match what was seen.
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
# OpenShift AI's vLLM template: the image the platform ships (and supports) for this release is in it
PLATFORM_TEMPLATE = "vllm-cuda-runtime-template"
PLATFORM_NAMESPACES = ("redhat-ods-applications", "opendatahub")  # RHOAI, Open Data Hub
# KServe's own S3 copier, used by the plain-Deployment variant (the release of the CRD schemas we check against).
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.20.0"

# the namespaces of the OpenShift router (ingress controller), as a NetworkPolicy selects them
ROUTER_NAMESPACES = {"network.openshift.io/policy-group": "ingress"}
# where token authentication puts its proxy in front of vLLM (kube-rbac-proxy on RHOAI 3.x, oauth-proxy on 2.x)
TOKEN_PROXY_PORT = 8443

_S3_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class VllmOptions:
    """How to serve the model with vLLM: the knobs of the serving manifests, checked when made.

    `name` names the InferenceService, its ServingRuntime (one per model, as the dashboard does) or the
    Deployment; `served_model_name` is the model name clients send (default: settings.llm_model_name).
    `max_model_len` must fit the GPU: `docbot_lib.pipeline.sizing.gpu_report()` tells the largest that does.
    `deployment_mode`: RawDeployment, the default and the only mode of OpenShift AI 3.x (which ships no
    Serverless: an InferenceService asking for it is never served). "Serverless" (Knative, scale to zero) is
    kept for OpenShift AI 2.x clusters only.
    """

    name: str = "mistral-7b-instruct"
    data_connection: str = "models"
    model_path: str | None = None  # in the bucket; default docbot_lib.pipeline.s3.learner_model_prefix(settings)
    served_model_name: str | None = None
    image: str = VLLM_IMAGE
    gpus: int = 1
    gpu_product: str | None = None  # nodeSelector nvidia.com/gpu.product, e.g. "NVIDIA-A10G"
    max_model_len: int = 8192
    dtype: Literal["auto", "float16", "bfloat16", "half", "float32"] = "auto"  # T4: float16
    gpu_memory_utilization: float = 0.9
    deployment_mode: Literal["RawDeployment", "Serverless"] = "RawDeployment"  # Serverless: RHOAI 2.x only
    min_replicas: int = 1
    max_replicas: int = 1
    cpu: str = "2"
    cpu_limit: str = "4"
    memory: str = "16Gi"
    memory_limit: str = "24Gi"
    shm_size: str = "2Gi"
    extra_args: tuple[str, ...] = ()
    expose: bool = True  # reachable from outside the cluster (a Route)
    auth: bool = False  # token authentication on the endpoint (OpenShift AI)
    platform_image: bool = False  # `image` is the one OpenShift AI's vLLM template ships (see runtime_image())

    def __post_init__(self) -> None:
        if not DNS_LABEL.match(self.name) or len(self.name) > 45:
            raise BadInput(
                f"serving name {self.name!r} is not a DNS label of at most 45 characters",
                "use lowercase letters, digits and '-' (KServe adds suffixes such as -predictor)",
            )
        if not DNS_LABEL.match(self.data_connection):
            raise BadInput(
                f"data connection name {self.data_connection!r} is not a DNS label",
                "use lowercase letters, digits and '-'",
            )
        if self.model_path is not None and not _S3_PATH.match(self.model_path):
            raise BadInput(
                f"model_path {self.model_path!r} is not a folder in the bucket",
                "use letters, digits and . _ - / only, ending in /, e.g. 'models/org/model/'",
            )
        if self.dtype not in ("auto", "float16", "bfloat16", "half", "float32"):
            raise BadInput(f"dtype={self.dtype!r} is not a vLLM --dtype", "use auto, float16, bfloat16 or float32")
        if self.deployment_mode not in ("RawDeployment", "Serverless"):
            raise BadInput(
                f"deployment_mode={self.deployment_mode!r} is unknown",
                "use RawDeployment (OpenShift AI 3.x has no other); Serverless exists on OpenShift AI 2.x only",
            )
        if self.gpus < 1:
            raise BadInput(f"gpus={self.gpus}: vLLM's CUDA image needs a GPU", "give gpus=1 or more")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise BadInput(
                f"gpu_memory_utilization={self.gpu_memory_utilization} is outside (0, 1]",
                "use e.g. 0.9 (vLLM's default)",
            )
        if self.max_model_len < 16:
            raise BadInput(f"max_model_len={self.max_model_len} is too small", "use e.g. 8192")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise BadInput(
                f"replicas {self.min_replicas}..{self.max_replicas} do not make a range",
                "use 0 <= min_replicas <= max_replicas, max_replicas >= 1",
            )
        if self.min_replicas == 0 and self.deployment_mode == "RawDeployment":
            raise BadInput(
                "min_replicas=0 (scale to zero) needs deployment_mode='Serverless', which only OpenShift AI 2.x has",
                "set min_replicas=1 (OpenShift AI 3.x: RawDeployment only), or on a 2.x cluster "
                "deployment_mode='Serverless'",
            )
        for key in ("cpu", "cpu_limit", "memory", "memory_limit", "shm_size"):
            if not manifests.QUANTITY.match(getattr(self, key)):
                raise BadInput(
                    f"{key}={getattr(self, key)!r} is not a Kubernetes quantity", "use e.g. '2', '500m', '16Gi'"
                )
        bad = [a for a in self.extra_args if not a.startswith("--")]
        if bad:
            raise BadInput(
                f"extra vLLM arguments {bad} do not start with --",
                "give each flag as one string, e.g. '--enable-prefix-caching' or '--max-num-seqs=64'",
            )


def _model_values(settings: Settings, opts: VllmOptions) -> dict[str, Any]:
    return {
        "name": opts.name,
        "image": opts.image,
        "served_model_name": opts.served_model_name or settings.llm_model_name,
        "max_model_len": opts.max_model_len,
        "dtype": opts.dtype,
        "gpu_memory_utilization": opts.gpu_memory_utilization,
        "shm_size": opts.shm_size,
    }


def _resource_values(opts: VllmOptions) -> dict[str, Any]:
    return {
        "cpu": opts.cpu,
        "cpu_limit": opts.cpu_limit,
        "memory": opts.memory,
        "memory_limit": opts.memory_limit,
        "gpus": str(opts.gpus),
    }


def inference_service_manifests(settings: Settings, opts: VllmOptions | None = None) -> list[dict[str, Any]]:
    """[ServingRuntime, InferenceService, NetworkPolicy] serving the settings' model from S3 with vLLM on KServe
    (with `auth`, the token's ServiceAccount, Role, RoleBinding and Secret first). The NetworkPolicy admits this
    project, the router (when exposed) and user-workload monitoring to the predictor pods."""
    opts = opts or VllmOptions()
    (runtime,) = manifests.render(
        "serving/vllm-servingruntime.yaml",
        {**_model_values(settings, opts), "display_name": f"vLLM {settings.model_id}"},
    )
    runtime["spec"]["containers"][0]["args"] += list(opts.extra_args)
    if not opts.platform_image:  # labelled as OpenShift AI's template only when it runs the template's image
        annotations = runtime["metadata"]["annotations"]
        annotations.pop("opendatahub.io/template-name")
        annotations["opendatahub.io/template-display-name"] = f"vLLM ServingRuntime for KServe ({opts.image})"

    (isvc,) = manifests.render(
        "serving/vllm-inferenceservice.yaml",
        {
            "name": opts.name,
            "display_name": settings.model_id,
            "deployment_mode": opts.deployment_mode,
            "min_replicas": opts.min_replicas,
            "max_replicas": opts.max_replicas,
            "runtime": opts.name,
            "storage_key": data_connection_secret_name(opts.data_connection),
            "storage_path": opts.model_path or learner_model_prefix(settings),
            **_resource_values(opts),
        },
    )
    meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
    if opts.deployment_mode == "Serverless":
        # OpenShift AI 2.x only (3.x ships no Serverless): Knative, TLS passed through the mesh, Istio sidecar
        meta["annotations"].update(
            {
                "serving.knative.openshift.io/enablePassthrough": "true",
                "sidecar.istio.io/inject": "true",
                "sidecar.istio.io/rewriteAppHTTPProbers": "true",
            }
        )
        if not opts.expose:
            meta["labels"]["networking.knative.dev/visibility"] = "cluster-local"
    elif opts.expose:
        meta["labels"]["networking.kserve.io/visibility"] = "exposed"  # OpenShift AI then creates a Route
    if opts.gpu_product:
        predictor["nodeSelector"] = {"nvidia.com/gpu.product": opts.gpu_product}
    (policy,) = manifests.render("serving/vllm-networkpolicy.yaml", {"name": opts.name})
    if not opts.expose:  # no Route: the router has nothing to reach
        policy["spec"]["ingress"] = [rule for rule in policy["spec"]["ingress"] if not _from_router(rule)]
    if opts.auth:
        meta["annotations"]["security.opendatahub.io/enable-auth"] = "true"
        predictor["serviceAccountName"] = f"{opts.name}-sa"
        return token_auth_manifests(opts.name) + [runtime, isvc, policy]
    return [runtime, isvc, policy]


def _from_router(rule: dict[str, Any]) -> bool:
    return any(
        (peer.get("namespaceSelector") or {}).get("matchLabels") == ROUTER_NAMESPACES for peer in rule.get("from") or []
    )


def serving_name(model_id: str) -> str:
    """A DNS label for the InferenceService (and served model name) from a model id:
    "mistralai/Mistral-7B-Instruct-v0.2" -> "mistral-7b-instruct-v0-2" (at most 45 characters)."""
    label = re.sub(r"[^a-z0-9]+", "-", model_id.rsplit("/", 1)[-1].lower()).strip("-")[:45].rstrip("-")
    if not label:
        raise BadInput(
            f"no serving name can be made from the model id {model_id!r}",
            "set NAME to lowercase letters, digits and '-'",
        )
    return label


@dataclass(frozen=True)
class RuntimeImage:
    """The vLLM image to run, and where it comes from: OpenShift AI's template on the cluster, or the pin."""

    image: str
    from_platform: bool
    note: str

    def __str__(self) -> str:
        return self.note


def runtime_image(
    api_client=None, namespaces: tuple[str, ...] = PLATFORM_NAMESPACES, template: str = PLATFORM_TEMPLATE
) -> RuntimeImage:
    """The vLLM image OpenShift AI ships, read from its ServingRuntime template on the cluster (the one the
    dashboard deploys: it changes with each release, so it is read, not hard-coded). Without a cluster, or when
    the template cannot be read (another platform, no right to read it), the pinned upstream VLLM_IMAGE, with
    the reason in `note`."""
    reasons = []
    if api_client is None:
        return RuntimeImage(
            VLLM_IMAGE,
            False,
            f"vLLM image: {VLLM_IMAGE}, the pinned upstream image (not applying "
            f"to a cluster; applying reads OpenShift AI's own from its {template})",
        )
    else:
        from kubernetes import client

        api = client.CustomObjectsApi(api_client)
        for namespace in namespaces:
            try:
                # the client's deserialized JSON (typed object by the kubernetes package)
                found = cast(
                    dict[str, Any],
                    api.get_namespaced_custom_object("template.openshift.io", "v1", namespace, "templates", template),
                )
            except Exception as exc:  # noqa: BLE001 - any failure: fall back to the pin and say why
                status: int | None = getattr(exc, "status", None)
                known: dict[int | None, str] = {403: "not allowed to read it", 404: "not found"}
                reasons.append(f"{namespace}: " + known.get(status, f"{type(exc).__name__} {status or ''}".strip()))
                continue
            images = [
                c.get("image", "")
                for o in found.get("objects") or []
                if o.get("kind") == "ServingRuntime"
                for c in (o.get("spec") or {}).get("containers") or []
            ]
            image = next((i for i in images if i and "$(" not in i), None)
            if image:
                return RuntimeImage(
                    image,
                    True,
                    f"vLLM image: {image}, from OpenShift AI's {template} in "
                    f"{namespace} (what the dashboard deploys on this cluster)",
                )
            reasons.append(f"{namespace}: the template names no image")
    return RuntimeImage(
        VLLM_IMAGE,
        False,
        f"vLLM image: {VLLM_IMAGE}, the pinned upstream image: OpenShift AI's {template} could "
        f"not be read ({'; '.join(reasons)}). The ServingRuntime is then not labelled as that "
        "template. To run the platform's image, pass it as VllmOptions(image=..., "
        "platform_image=True): `oc get template " + template + " -n redhat-ods-applications "
        "-o jsonpath='{.objects[0].spec.containers[0].image}'` shows it (an administrator may "
        "have to run it)",
    )


def token_auth_manifests(name: str, identity: str | None = None) -> list[dict[str, Any]]:
    """[ServiceAccount, Role, RoleBinding, token Secret]: the identity whose token may call the model `name`
    when its InferenceService has token authentication on (manifests/serving/vllm-token-auth.yaml).
    `identity` names the service account and its objects (default: the model's name; one per learner when a
    class shares one model)."""
    return manifests.render("serving/vllm-token-auth.yaml", {"name": name, "identity": identity or name})


def learner_network_policy(name: str, identity: str, user: str) -> dict[str, Any]:
    """The NetworkPolicy that lets the learner's project `user` reach the token proxy of the shared model `name`
    (manifests/serving/vllm-learner-networkpolicy.yaml), named after the learner's `identity` there."""
    (policy,) = manifests.render(
        "serving/vllm-learner-networkpolicy.yaml", {"name": name, "identity": identity, "user": user}
    )
    return policy


def standalone_manifests(
    settings: Settings,
    opts: VllmOptions | None = None,
    cache_size: str = "40Gi",
    storage_initializer_image: str = STORAGE_INITIALIZER_IMAGE,
) -> list[dict[str, Any]]:
    """[PVC, Deployment, Service, Route, NetworkPolicy] serving the model with vLLM without KServe (model cached
    on the PVC); no Route when `opts.expose` is False.

    vLLM requires an API key, read from the Secret <name>-api-key: apply `standalone_secret(settings)` with
    these objects (the pod does not start without it). The Route forwards /v1 only; read /metrics in-cluster."""
    opts = opts or VllmOptions()
    if not manifests.QUANTITY.match(cache_size):
        raise BadInput(f"cache_size={cache_size!r} is not a Kubernetes quantity", "use e.g. '40Gi'")
    if not _BUCKET.match(settings.s3_bucket):  # it goes into the copy command
        raise BadInput(
            f"bucket name {settings.s3_bucket!r} is not a valid S3 bucket name",
            "set DOCBOT_S3_BUCKET / AWS_S3_BUCKET to 3-63 lowercase letters, digits, '.' or '-'",
        )
    objects = manifests.render(
        "serving/vllm-standalone.yaml",
        {
            **_model_values(settings, opts),
            **_resource_values(opts),
            "cache_size": cache_size,
            "storage_initializer_image": storage_initializer_image,
            "storage_key": data_connection_secret_name(opts.data_connection),
            "bucket": settings.s3_bucket,
            "storage_path": opts.model_path or learner_model_prefix(settings),
        },
    )
    pod = objects[1]["spec"]["template"]["spec"]
    pod["containers"][0]["args"] += list(opts.extra_args)
    if opts.gpu_product:
        pod["nodeSelector"] = {"nvidia.com/gpu.product": opts.gpu_product}
    if not opts.expose:
        objects = [o for o in objects if o["kind"] != "Route"]
        for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
            policy["spec"]["ingress"] = [rule for rule in policy["spec"]["ingress"] if not _from_router(rule)]
    return objects


def standalone_secret(settings: Settings, name: str = VllmOptions.name) -> dict[str, Any]:
    """The Secret <name>-api-key holding vLLM's API key (settings.llm_api_key, DOCBOT_LLM_API_KEY: what the
    chatbot and the notebooks send), for `standalone_manifests`. It holds a secret: show it with
    `manifests.to_yaml()` (masks it), never print the dict."""
    key = settings.secret("llm_api_key")
    if not key:
        raise ConfigError(
            "no API key for vLLM: without one its endpoint would answer anyone",
            "set DOCBOT_LLM_API_KEY (environment or .env) to a long random string, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            service="llm",
        )
    (secret,) = manifests.render("serving/vllm-standalone-secret.yaml", {"name": name, "api_key": key})
    return secret


def serving_objects(settings: Settings, opts: VllmOptions) -> list[dict[str, Any]]:
    """What notebook 03 applies: the data connection Secret (when the settings hold S3 keys; else the one the
    project already has is used) and the serving objects of `inference_service_manifests`."""
    have_keys = bool(settings.s3_access_key and settings.secret("s3_secret_key"))
    connection = [data_connection(settings, opts.data_connection)] if have_keys else []
    return connection + inference_service_manifests(settings, opts)


def data_connection(settings: Settings, name: str = "models") -> dict[str, Any]:
    """The S3 data connection Secret (aws-connection-<name>) with the real credentials, for `apply()`.

    It holds the secret key: show it with `manifests.to_yaml()` (masks it), never print the dict.
    One builder serves both notebooks: `docbot_lib.pipeline.s3.data_connection_secret`.
    """
    from docbot_lib.pipeline.s3 import data_connection_secret

    return data_connection_secret(settings, name, reveal=True)


# -- waiting for the InferenceService -------------------------------------------------------------


# -- vLLM's Prometheus metrics ------------------------------------------------------------------------
