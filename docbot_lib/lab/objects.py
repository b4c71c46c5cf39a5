"""A learner's Kubernetes objects (project, RoleBinding, data connection, Secrets) and the class's shared model
(`SharedModel`: per learner a token that may only `get` that InferenceService).

Layer: top (lab): imports any layer below, and lab.report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docbot_lib.core.errors import BadInput, DocbotError, ServiceUnavailable
from docbot_lib.core.names import LabNames
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline import serving, vectordb

LEARNER_SECRET = "docbot-learner"


DATA_CONNECTION = "models"  # the learner's data connection: Secret aws-connection-models


ROLEBINDING = "docbot-learner-edit"


def learner_objects(
    settings: Settings,
    names: LabNames,
    tokens: dict[str, str],
    model: dict[str, str] | None = None,
    s3_key: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The learner's namespaced objects: their edit RoleBinding, data connection and credentials Secrets.
    `model`: the shared model's settings for their .env (`SharedModel.learner_settings`), when the class has one;
    `s3_key`: their own S3 (access key, secret key) for the data connection, else the class's."""
    from docbot_lib.pipeline.s3 import data_connection_secret

    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROLEBINDING, "labels": {"app.kubernetes.io/part-of": "docbot"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": names.user}],
    }
    credentials = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": LEARNER_SECRET, "labels": {"app.kubernetes.io/part-of": "docbot"}},
        # what the learner's .env needs (the workbench can mount it as environment variables)
        "stringData": {
            "DOCBOT_STACK": "cluster",
            "DOCBOT_USER": names.user,
            "DOCBOT_MILVUS_URI": settings.milvus_uri or "",
            **tokens,
            **(model or {}),
        },
    }
    # the same per-identity Secrets notebook 04 writes: the learner's chatbot reads its reader's token from one
    objects: list[dict[str, Any]] = [binding, credentials, *vectordb.credentials_secrets(tokens)]
    if s3_key is not None:
        from pydantic import SecretStr

        settings = settings.model_copy(update={"s3_access_key": s3_key[0], "s3_secret_key": SecretStr(s3_key[1])})
    if settings.s3_access_key and settings.secret("s3_secret_key"):
        objects.append(data_connection_secret(settings, DATA_CONNECTION, reveal=True))
    return objects


@dataclass(frozen=True)
class SharedModel:
    """The class's one model: the InferenceService `name` in `namespace`, deployed by the administrator."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> SharedModel:
        """ "NAMESPACE/NAME" → SharedModel; one clear error for anything else."""
        from docbot_lib.core.names import USER_PATTERN

        namespace, _, name = spec.partition("/")
        if not (USER_PATTERN.match(namespace) and USER_PATTERN.match(name)):
            raise BadInput(
                f"cannot read the model {spec!r}",
                "name the class's InferenceService as NAMESPACE/NAME, e.g. --model models/mistral-7b-instruct",
            )
        return cls(namespace, name)

    def identity(self, user: str) -> str:
        """The learner's service account (and its Role, RoleBinding, token Secret) in the model's namespace."""
        return f"{self.name}-{user}"

    def objects(self, user: str) -> list[dict[str, Any]]:
        """In the model's namespace, for one learner: the identity whose token may `get` the model, and a
        NetworkPolicy that lets the learner's project (their chatbot, their workbench) reach the predictor's
        token proxy. The model's own policy admits only its project, the router and monitoring; the learner's
        project is matched by `kubernetes.io/metadata.name`, which the API server sets and no learner can."""
        identity = self.identity(user)
        return serving.token_auth_manifests(self.name, identity) + [
            serving.learner_network_policy(self.name, identity, user)
        ]

    def url(self, api_client) -> str:
        """The model's OpenAI endpoint; a clear error while it is not deployed and ready."""
        try:
            url = serving.wait_inference_service_ready(self.name, self.namespace, api_client, timeout=0, echo=None)
        except DocbotError as exc:
            raise ServiceUnavailable(
                f"the class's model {self.namespace}/{self.name} is not ready, so no learner can use it "
                f"yet ({exc.problem.splitlines()[0]})",
                "deploy it first (notebook 03 in that project, token authentication on), then provision again",
                service="kubernetes",
            ) from None
        return url.rstrip("/") + "/v1"

    def learner_settings(self, url: str, token: str) -> dict[str, str]:
        """The learner's model settings: the Route for their workbench, and for their chatbot's pod the
        predictor's in-cluster address (its service-CA certificate is one the pod trusts; a Route's router
        certificate may not be)."""
        from docbot_lib.pipeline.chatbot_deploy import inference_service_url

        return {
            "DOCBOT_LLM_BASE_URL": url,
            "DOCBOT_LLM_MODEL_NAME": self.name,
            "DOCBOT_LLM_API_KEY": token,
            "DOCBOT_LLM_CLUSTER_URL": inference_service_url(self.name, self.namespace),
        }
