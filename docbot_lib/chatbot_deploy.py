"""The chatbot on the cluster: its manifests (manifests/chatbot/) rendered from the settings.

    objects = chatbot_manifests(settings, ChatbotOptions(image="…/docbot-chatbot:0.1.0"))
    manifests.validate(objects); manifests.apply([chatbot_secret(settings), *objects], namespace, api_client)

The image is built from images/chatbot/Containerfile (e.g. with an OpenShift BuildConfig, which pushes to the
namespace's internal registry: the default image name below). The chatbot reads Milvus' read-only user from
the Secret docbot-milvus-reader (docbot_lib.vectordb.credentials_secrets: notebook 04, or `docbot lab provision`),
which holds that one token: never root's, never the writer's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from docbot_lib import manifests
from docbot_lib.errors import DocbotError
from docbot_lib.milvus_deploy import SERVICE_URI
from docbot_lib.rag import INSTRUCTIONS
from docbot_lib.serving import VllmOptions
from docbot_lib.settings import Settings

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


def inference_service_url(name: str = VllmOptions.name, namespace: str | None = None, auth: bool = True) -> str:
    """The in-cluster OpenAI URL of a RawDeployment InferenceService (its predictor Service).

    With token authentication (the default, `VllmOptions.auth`) the predictor is reached through its proxy
    (kube-rbac-proxy on RHOAI 3.x, oauth-proxy on 2.x): HTTPS on port 8443, with a certificate from OpenShift's
    service CA issued for `<service>.<namespace>.svc`, so the URL names the namespace, the chatbot trusts that
    CA (SSL_CERT_FILE in chatbot.yaml) and sends the model's token. Without auth: plain HTTP in the namespace."""
    if not auth:
        return f"http://{name}-predictor/v1"
    if not namespace:
        raise DocbotError("the predictor's certificate names its namespace, and none is known",
                          "set DOCBOT_NAMESPACE (or NAMESPACE) to the project the model runs in, or give llm_base_url")
    return f"https://{name}-predictor.{namespace}.svc.cluster.local:8443/v1"


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
        if not _DNS_LABEL.match(self.name) or len(self.name) > 50:
            raise DocbotError(f"chatbot name {self.name!r} is not a DNS label of at most 50 characters",
                              "use lowercase letters, digits and '-'")
        last = (self.image or ":0").rsplit("/", 1)[-1]
        if self.image and "@sha256:" not in self.image and (":" not in last or last.endswith(":latest")):
            raise DocbotError(f"image {self.image!r} is not pinned", "give a version tag or a @sha256: digest")
        for key in ("cpu", "cpu_limit", "memory", "memory_limit"):
            if not _QUANTITY.match(getattr(self, key)):
                raise DocbotError(f"{key}={getattr(self, key)!r} is not a Kubernetes quantity", "use e.g. '500m', '2Gi'")
        if self.replicas < 1:
            raise DocbotError(f"replicas={self.replicas}", "use 1 or more")


def project_of(settings: Settings) -> str | None:
    """The chatbot's project: the settings' namespace, else the learner's (a class: one project per learner)."""
    return settings.namespace or settings.names.user


def image_for(settings: Settings) -> str:
    """The chatbot image a BuildConfig pushes to the project's internal registry (`project_of`, else `docbot`)."""
    return f"image-registry.openshift-image-registry.svc:5000/{project_of(settings) or 'docbot'}/docbot-chatbot:0.1.0"


def chatbot_manifests(settings: Settings, opts: ChatbotOptions | None = None) -> list[dict[str, Any]]:
    """[ConfigMap, Deployment, Service, Route, NetworkPolicy] of the chatbot answering from
    settings.milvus_collection, in the learner's Milvus database (DOCBOT_USER). The NetworkPolicy admits only
    the OpenShift router."""
    opts = opts or ChatbotOptions()
    policy = manifests.render("chatbot/networkpolicy.yaml", {"name": opts.name})
    return manifests.render("chatbot/chatbot.yaml", {
        "name": opts.name, "image": opts.image or image_for(settings), "replicas": opts.replicas,
        "user": settings.names.user or "",
        "llm_base_url": opts.llm_base_url or inference_service_url(namespace=project_of(settings), auth=opts.llm_auth),
        "llm_model_name": settings.llm_model_name,
        "milvus_uri": opts.milvus_uri, "collection": settings.milvus_collection,
        "search_k": str(settings.search_k), "max_tokens": str(settings.max_tokens),
        "max_concurrency": str(settings.api_max_concurrency), "embedding_model": settings.embedding_model,
        "instructions": settings.rag_instructions or INSTRUCTIONS,
        "cpu": opts.cpu, "cpu_limit": opts.cpu_limit, "memory": opts.memory, "memory_limit": opts.memory_limit,
    }) + policy


def chatbot_secret(settings: Settings, name: str = ChatbotOptions.name) -> dict[str, Any]:
    """The chatbot's Secret (<name>-secrets): the API key and the LLM endpoint's key from the settings.

    It holds secrets: show it with `manifests.to_yaml()` (masks them), never print the dict.
    """
    if not settings.secret("api_key"):
        raise DocbotError("no API key for the chatbot", "set DOCBOT_API_KEY (environment or .env) to a long random string")
    secret, = manifests.render("chatbot/chatbot-secret.yaml", {
        "name": name, "api_key": settings.secret("api_key"), "llm_api_key": settings.secret("llm_api_key") or "",
    })
    return secret
