"""The chatbot: its manifests (manifests/chatbot/) rendered from the settings, its image built on the cluster,
deployed and called through its OpenAI-compatible API, or run on this machine as `docbot serve` (notebook 08).

    settings = ensure_api_key(settings)                            # DOCBOT_API_KEY, generated once into .env
    image = build_image(settings, "https://github.com/…/docbot")   # ImageStream + BuildConfig, a build, its digest
    objects = chatbot_manifests(settings, ChatbotOptions(image=image))
    url = deploy(settings, objects, chatbot_secret(settings))      # apply, wait until Ready, the Route's https URL
    with running_chatbot(settings, url) as base:                   # locally (no url): `docbot serve`, then stopped
        reply = ask(base, settings.secret("api_key"), "How do I …?")

The image is built from images/chatbot/Containerfile by an OpenShift BuildConfig, which pushes to the
namespace's internal registry (`image_for`). The chatbot reads Milvus' read-only user from the Secret
docbot-milvus-reader (docbot_lib.pipeline.vectordb.credentials_secrets: notebook 04, or `docbot lab provision`), which
holds that one token: never root's, never the writer's.

Layer: pipeline, step `chatbot_deploy`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docbot_lib.clients import kube
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    NotFound,
    NotReachable,
    ServiceUnavailable,
)
from docbot_lib.core.names import DNS_LABEL
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline.milvus_deploy import SERVICE_URI
from docbot_lib.pipeline.rag import INSTRUCTIONS
from docbot_lib.pipeline.serving import TOKEN_PROXY_PORT, VllmOptions

IMAGE_NAME = "docbot-chatbot"  # the ImageStream the BuildConfig pushes to
IMAGE_TAG = "0.1.0"


def inference_service_url(name: str = VllmOptions.name, namespace: str | None = None, auth: bool = True) -> str:
    """The in-cluster OpenAI URL of a RawDeployment InferenceService (its predictor Service).

    With token authentication (the default, `VllmOptions.auth`) the predictor is reached through its proxy
    (kube-rbac-proxy on RHOAI 3.x, oauth-proxy on 2.x): HTTPS on port 8443, with a certificate from OpenShift's
    service CA issued for `<service>.<namespace>.svc`, so the URL names the namespace, the chatbot trusts that
    CA (SSL_CERT_FILE in chatbot.yaml) and sends the model's token. Without auth: plain HTTP in the namespace."""
    if not auth:
        return f"http://{name}-predictor/v1"
    if not namespace:
        raise ConfigError(
            "the predictor's certificate names its namespace, and none is known",
            "set DOCBOT_NAMESPACE (or NAMESPACE) to the project the model runs in, or give llm_base_url",
        )
    return f"https://{name}-predictor.{namespace}.svc.cluster.local:{TOKEN_PROXY_PORT}/v1"


@dataclass(frozen=True)
class ChatbotOptions:
    """How to run the chatbot. `image` must be pinned (a tag other than latest, or a digest)."""

    name: str = "docbot"
    image: str | None = None  # default: docbot-chatbot:0.1.0 in the project's own internal registry (image_for)
    llm_base_url: str | None = None  # default: the InferenceService's predictor Service (inference_service_url)
    llm_auth: bool = True  # the model has token authentication on (notebook 03's AUTH): reach it through its proxy
    milvus_uri: str = SERVICE_URI
    replicas: int = 1
    cpu: str = "500m"
    cpu_limit: str = "2"
    memory: str = "1536Mi"  # the in-process embedding model (~90 MB) and torch
    memory_limit: str = "3Gi"

    def __post_init__(self) -> None:
        if not DNS_LABEL.match(self.name) or len(self.name) > 50:
            raise BadInput(
                f"chatbot name {self.name!r} is not a DNS label of at most 50 characters",
                "use lowercase letters, digits and '-'",
            )
        last = (self.image or ":0").rsplit("/", 1)[-1]
        if self.image and "@sha256:" not in self.image and (":" not in last or last.endswith(":latest")):
            raise BadInput(f"image {self.image!r} is not pinned", "give a version tag or a @sha256: digest")
        for key in ("cpu", "cpu_limit", "memory", "memory_limit"):
            if not manifests.QUANTITY.match(getattr(self, key)):
                raise BadInput(f"{key}={getattr(self, key)!r} is not a Kubernetes quantity", "use e.g. '500m', '2Gi'")
        if self.replicas < 1:
            raise BadInput(f"replicas={self.replicas}", "use 1 or more")


def project_of(settings: Settings) -> str | None:
    """The chatbot's project: the settings' namespace, else the learner's (a class: one project per learner)."""
    return settings.namespace or settings.names.user


def image_for(settings: Settings) -> str:
    """The chatbot image a BuildConfig pushes to the project's internal registry (`project_of`, else `docbot`)."""
    return (
        f"image-registry.openshift-image-registry.svc:5000/{project_of(settings) or 'docbot'}/{IMAGE_NAME}:{IMAGE_TAG}"
    )


def in_project(settings: Settings) -> Settings:
    """The settings with the project the chatbot goes to: the settings' namespace or learner when known; else, on
    a cluster, your workbench's project or `oc project`'s; on the local stack (manifests only shown) `docbot`."""
    if project_of(settings):
        return settings
    namespace = kube.current_namespace(settings) if settings.stack == "cluster" else "docbot"
    return settings.model_copy(update={"namespace": namespace})


def chatbot_manifests(settings: Settings, opts: ChatbotOptions | None = None) -> list[dict[str, Any]]:
    """[ConfigMap, Deployment, Service, Route, NetworkPolicy] of the chatbot answering from
    settings.milvus_collection, in the learner's Milvus database (DOCBOT_USER). The NetworkPolicy admits only
    the OpenShift router."""
    opts = opts or ChatbotOptions()
    policy = manifests.render("chatbot/networkpolicy.yaml", {"name": opts.name})
    return (
        manifests.render(
            "chatbot/chatbot.yaml",
            {
                "name": opts.name,
                "image": opts.image or image_for(settings),
                "replicas": opts.replicas,
                "user": settings.names.user or "",
                # the InferenceService notebook 03 deployed: its name is the served model name it recorded
                # (or the class's shared model, in another project: lab provision recorded its address)
                "llm_base_url": opts.llm_base_url
                or settings.llm_cluster_url
                or inference_service_url(settings.llm_model_name, project_of(settings), auth=opts.llm_auth),
                "llm_model_name": settings.llm_model_name,
                "milvus_uri": opts.milvus_uri,
                "collection": settings.milvus_collection,
                "search_k": str(settings.search_k),
                "max_tokens": str(settings.max_tokens),
                "max_concurrency": str(settings.api_max_concurrency),
                "embedding_model": settings.embedding_model,
                "instructions": settings.rag_instructions or INSTRUCTIONS,
                "cpu": opts.cpu,
                "cpu_limit": opts.cpu_limit,
                "memory": opts.memory,
                "memory_limit": opts.memory_limit,
            },
        )
        + policy
    )


def chatbot_secret(settings: Settings, name: str = ChatbotOptions.name) -> dict[str, Any]:
    """The chatbot's Secret (<name>-secrets): the API key and the LLM endpoint's key from the settings.

    It holds secrets: show it with `manifests.to_yaml()` (masks them), never print the dict.
    """
    if not settings.secret("api_key"):
        raise ConfigError(
            "no API key for the chatbot", "set DOCBOT_API_KEY (environment or .env) to a long random string"
        )
    (secret,) = manifests.render(
        "chatbot/chatbot-secret.yaml",
        {
            "name": name,
            "api_key": settings.secret("api_key"),
            "llm_api_key": settings.secret("llm_api_key") or "",
        },
    )
    return secret


# -- the API key ------------------------------------------------------------------------------------------


def ensure_api_key(
    settings: Settings, env_file: str | Path | None = None, echo: Callable[[str], None] = print
) -> Settings:
    """The settings with the chatbot's API key: DOCBOT_API_KEY (environment, .env) when set; else a new random
    one, stored first in `env_file` (default: the project's .env; mode 600) so that the next run, `docbot serve`
    and the cluster's Secret all use the same. The key itself is never shown."""
    from pydantic import SecretStr

    from docbot_lib.core.envfile import env_files, write_env

    if settings.secret("api_key"):
        echo("API key: DOCBOT_API_KEY is set (not shown)")
        return settings
    path = Path(env_file) if env_file else env_files()[0]
    key = secrets.token_urlsafe(32)
    write_env(path, {"DOCBOT_API_KEY": key})
    echo(f"API key: generated one and stored it in {path} as DOCBOT_API_KEY (mode 600, not shown)")
    return settings.model_copy(update={"api_key": SecretStr(key)})


# -- the image, built on the cluster ------------------------------------------------------------------------


def build_manifests(git_url: str, git_ref: str = "main") -> list[dict[str, Any]]:
    """[ImageStream, BuildConfig] building images/chatbot/Containerfile from `git_url` at `git_ref` into the
    ImageStreamTag docbot-chatbot:0.1.0 (the image `image_for` names)."""
    if not re.match(r"^(https://|http://|git@|ssh://)\S+$", git_url or ""):
        raise BadInput(
            f"GIT_URL {git_url!r} is not a Git repository URL",
            "give the https URL of the Doc Bot repository the cluster can clone (yours, or a fork)",
        )
    return manifests.render(
        "chatbot/chatbot-build.yaml",
        {"image_name": IMAGE_NAME, "image_tag": IMAGE_TAG, "git_url": git_url, "git_ref": git_ref},
    )


_BUILDS = "/apis/build.openshift.io/v1/namespaces/{namespace}/{what}"
_BUILD_DONE = {"Complete"}
_BUILD_FAILED = {"Failed", "Error", "Cancelled"}


def build_image(
    settings: Settings,
    git_url: str,
    git_ref: str = "main",
    namespace: str | None = None,
    api_client=None,
    timeout: float = 1800,
    interval: float = 10,
    echo: Callable[[str], None] = print,
) -> str:
    """Apply the ImageStream and BuildConfig, start a build and wait for it; the built image by digest (so that
    a new build rolls the Deployment out), else by tag. A failed build names its log: `oc logs build/NAME`."""
    api = api_client or kube.kube_api_client()
    namespace = namespace or kube.current_namespace(settings)
    objects = build_manifests(git_url, git_ref)
    manifests.validate(objects)
    for applied in manifests.apply(objects, namespace, api):
        echo(str(applied))
    path = _BUILDS.format(namespace=namespace, what=f"buildconfigs/{IMAGE_NAME}/instantiate")
    request = {"kind": "BuildRequest", "apiVersion": "build.openshift.io/v1", "metadata": {"name": IMAGE_NAME}}
    try:
        build = kube.kube_request(api, "POST", path, request)
    except Exception as exc:  # noqa: BLE001 - ApiException, or urllib3's connection errors
        raise kube.api_error(exc, f"BuildConfig/{IMAGE_NAME} (instantiate)", namespace, api) from None
    name = build["metadata"]["name"]
    echo(f"Build/{name} started from {git_url} ({git_ref}); this takes several minutes (pip installs torch)")
    deadline, phase = time.monotonic() + timeout, None
    while True:
        build = kube.kube_request(api, "GET", _BUILDS.format(namespace=namespace, what=f"builds/{name}"))
        status = build.get("status") or {}
        if status.get("phase") != phase:
            phase = status.get("phase")
            echo(f"Build/{name}: {phase}")
        if phase in _BUILD_DONE:
            break
        if phase in _BUILD_FAILED:
            raise ServiceUnavailable(
                f"Build/{name} {phase.lower()}: {status.get('message') or status.get('reason') or ''}",
                f"read its log: `oc logs build/{name} -n {namespace}`; or build the image elsewhere and "
                "give it as IMAGE",
                service="kubernetes",
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"Build/{name} not finished after {timeout:.0f} s (phase {phase})",
                f"follow it: `oc logs -f build/{name} -n {namespace}`; then run this again with IMAGE",
                service="kubernetes",
            )
        time.sleep(interval)
    reference = status.get("outputDockerImageReference") or image_for(settings)
    digest = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
    if digest:
        last = reference.rsplit("/", 1)
        reference = "/".join([*last[:-1], last[-1].split(":", 1)[0]]) + f"@{digest}"
    echo(f"image: {reference}")
    return reference


# -- deploying and finding it -----------------------------------------------------------------------------


def with_secret_checksum(objects: list[dict[str, Any]], secret: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects with the Deployment's pod template annotated with a checksum of the Secret: a new API key
    restarts the pods (they read the Secret only when they start). A one-way hash, cut short: no secret shown."""
    import copy
    import json

    digest = hashlib.sha256(json.dumps(secret.get("stringData") or secret.get("data"), sort_keys=True).encode())
    out = copy.deepcopy(objects)
    for obj in out:
        if obj.get("kind") == "Deployment":
            template = obj["spec"]["template"].setdefault("metadata", {})
            template.setdefault("annotations", {})["docbot.io/secrets-checksum"] = digest.hexdigest()[:16]
    return out


def _require_reader_secret(api, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    from docbot_lib.pipeline.vectordb import READER_SECRET

    try:
        kube.kube_request(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/{READER_SECRET}")
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(
                f"no Secret {READER_SECRET} in namespace {namespace}: the chatbot reads Milvus' "
                "read-only token from it",
                "run notebook 04 with APPLY_TO_CLUSTER = True (or ask your lab's administrator: "
                "`docbot lab provision`)",
                service="kubernetes",
            ) from None
        raise kube.api_error(exc, f"Secret/{READER_SECRET}", namespace, api) from None


def route_url(
    api_client, namespace: str, name: str = ChatbotOptions.name, timeout: float = 120, interval: float = 2
) -> str:
    """https://<host> of the chatbot's Route, once the router has given it a host."""
    path = f"/apis/route.openshift.io/v1/namespaces/{namespace}/routes/{name}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            route = kube.kube_request(api_client, "GET", path)
        except Exception as exc:  # noqa: BLE001 - ApiException, or urllib3's connection errors
            raise kube.api_error(exc, f"Route/{name}", namespace, api_client) from None
        host = (route.get("spec") or {}).get("host") or next(
            (i.get("host") for i in (route.get("status") or {}).get("ingress") or [] if i.get("host")), None
        )
        if host:
            return f"https://{host}"
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"Route/{name} has no host after {timeout:.0f} s",
                f"look at it: `oc describe route {name} -n {namespace}` (the router admits it)",
                service="kubernetes",
            )
        time.sleep(interval)


def deploy(
    settings: Settings,
    objects: list[dict[str, Any]],
    secret: dict[str, Any],
    namespace: str | None = None,
    api_client=None,
    timeout: float = 600,
    echo: Callable[[str], None] = print,
) -> str:
    """Apply the chatbot's Secret and objects (a server-side dry run of all first), wait until its Deployment is
    Ready, and return the Route's https URL. Checks first that Milvus' reader Secret exists (else the pod would
    wait for it forever)."""
    api = api_client or kube.kube_api_client()
    namespace = namespace or kube.current_namespace(settings)
    _require_reader_secret(api, namespace)
    objects = with_secret_checksum(objects, secret)
    for applied in manifests.apply([secret, *objects], namespace, api):
        echo(str(applied))
    manifests.wait_ready(api, namespace, objects, timeout=timeout, echo=echo)
    name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Route")
    url = route_url(api, namespace, name)
    echo(f"the chatbot answers at {url}")
    return url


# -- on this machine: `docbot serve` ----------------------------------------------------------------------------


# -- calling it, as any OpenAI client does ----------------------------------------------------------------------


@dataclass
class ChatbotReply:
    """What the chatbot's API answered: the text, streamed, and the passages it was given (`cited`: in the text)."""

    url: str
    model: str
    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{len(self.sources)} source(s) from {self.url}/v1 (model {self.model!r}, {self.seconds:.1f} s):"]
        for s in self.sources:
            where = s.get("source", "") + (f", page {s['page']}" if s.get("page") else "")
            section = f" › {s['section']}" if s.get("section") else ""
            lines.append(
                f"  [{s.get('number')}] {s.get('title', '')}{section} ({where})"
                + ("  ← cited" if s.get("cited") else "")
            )
        return "\n".join(lines)


def ask(
    url: str,
    api_key: str | None,
    question: str,
    timeout: float = 300,
    on_text: Callable[[str], None] = lambda text: print(text, end="", flush=True),
) -> ChatbotReply:
    """Ask the chatbot at `url` one question with the `openai` client (as any OpenAI-compatible client would):
    its model from /v1/models, then a streamed chat completion; the answer's text goes to `on_text` as it comes,
    the sources arrive in the stream's last chunk (docbot_lib.pipeline.api)."""
    import openai

    base = url.rstrip("/") + "/v1"
    client = openai.OpenAI(base_url=base, api_key=api_key or "", timeout=timeout, max_retries=1)
    started = time.perf_counter()
    try:
        model = client.models.list().data[0].id
        stream = client.chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": question}]
        )
        pieces: list[str] = []
        sources: list[dict[str, Any]] = []
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
                    on_text(choice.delta.content)
            sources = (chunk.model_extra or {}).get("sources") or sources
    except openai.AuthenticationError:
        raise AuthRefused(
            f"the chatbot at {base} refused the API key",
            "the key is DOCBOT_API_KEY in your .env; on the cluster the Secret <NAME>-secrets holds it: "
            "run the deploy cell again (the pods restart with the new one)",
            service="chatbot",
        ) from None
    except openai.APIConnectionError as exc:
        raise NotReachable(
            f"the chatbot does not answer at {base} ({type(exc).__name__})",
            "check that it is Ready (`oc get pods`), and the URL",
            service="chatbot",
        ) from None
    except openai.APIStatusError as exc:
        raise ServiceUnavailable(
            f"the chatbot at {base} failed (HTTP {exc.status_code}: {exc.message})",
            "its /readyz says which service is missing; `oc logs deployment/<NAME>` on the cluster",
            service="chatbot",
        ) from None
    except openai.APIError as exc:  # an error reported inside the stream, after the status was sent
        raise ServiceUnavailable(
            f"the chatbot at {base} stopped its answer: {exc.message}",
            "its /readyz says which service is missing; `oc logs deployment/<NAME>` on the cluster",
            service="chatbot",
        ) from None
    on_text("\n")
    return ChatbotReply(url.rstrip("/"), model, "".join(pieces), sources, time.perf_counter() - started)


class WebPage:
    """The chatbot's web page as a link in a notebook (plain text elsewhere)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/"

    def _repr_html_(self) -> str:
        import html

        href = html.escape(self.url, quote=True)
        return f'<a href="{href}" target="_blank" rel="noopener">Open Doc Bot\'s web page: {href}</a>'

    def __repr__(self) -> str:
        return f"Doc Bot's web page: {self.url}"
