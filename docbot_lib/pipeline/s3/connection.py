"""The data connection: the Secret OpenShift AI's dashboard and KServe read (AWS_* keys, endpoint, bucket,
region), rendered masked for a notebook and applied to a project.

Layer: pipeline, step `s3` (its data connection): imports core, clients and k8s.
"""

from __future__ import annotations

from typing import Any

from docbot_lib.core.errors import (
    BadInput,
    ConfigError,
)
from docbot_lib.core.names import DNS_LABEL
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests

# -- the OpenShift AI data connection ------------------------------------------------------------------
# what a data connection's Secret holds that is no secret (shown by to_yaml; the keys are masked)
DATA_CONNECTION_PUBLIC_KEYS = ("AWS_DEFAULT_REGION", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET")


def data_connection_secret_name(connection: str) -> str:
    """The Secret an OpenShift AI data connection named `connection` is stored in."""
    return f"aws-connection-{connection}"


def data_connection_secret(
    settings: Settings, name: str, namespace: str | None = None, *, reveal: bool = False
) -> dict:
    """The Secret the OpenShift AI dashboard creates for an S3 data connection (`aws-connection-<name>`).

    The keys are masked unless `reveal=True`: print this freely, and let `apply_data_connection` use the
    real values. KServe reads the model with it; workbenches get its keys as AWS_* variables."""
    if not name or not DNS_LABEL.match(name) or len(data_connection_secret_name(name)) > 63:
        raise BadInput(
            f"{name!r} cannot name a data connection",
            "use lowercase letters, digits and '-' (e.g. 'docbot-models'), at most 48 characters",
        )
    access, secret = settings.s3_access_key, settings.secret("s3_secret_key")
    if not access or not secret:
        raise ConfigError(
            "the settings have no S3 access key / secret key for the data connection",
            "set DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY, or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (environment or .env)",
        )
    metadata: dict[str, Any] = {
        "name": data_connection_secret_name(name),
        **({"namespace": namespace} if namespace else {}),
        "labels": {"opendatahub.io/dashboard": "true", "opendatahub.io/managed": "true"},
        "annotations": {"opendatahub.io/connection-type": "s3", "openshift.io/display-name": name},
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {
            "AWS_ACCESS_KEY_ID": access if reveal else manifests.MASK,
            "AWS_SECRET_ACCESS_KEY": secret if reveal else manifests.MASK,
            "AWS_DEFAULT_REGION": settings.s3_region,
            "AWS_S3_ENDPOINT": settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com",
            "AWS_S3_BUCKET": settings.s3_bucket,
        },
    }


def to_yaml(obj: dict) -> str:
    """A manifest as YAML to show (keys in the order given): `manifests.to_yaml`, so a Secret's values are masked,
    but for a data connection's endpoint, bucket and region."""
    return manifests.to_yaml([obj], public_keys=DATA_CONNECTION_PUBLIC_KEYS)


def apply_data_connection(settings: Settings, namespace: str, name: str, api_client=None) -> str:
    """Create the data connection Secret in the namespace, or replace it when it exists: "created" or
    "replaced". `api_client` defaults to `docbot_lib.k8s.kube.kube_api_client()`."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    body = data_connection_secret(settings, name, namespace, reveal=True)
    secret_name = body["metadata"]["name"]
    from docbot_lib.clients.kube import api_error, kube_api_client

    api = client.CoreV1Api(api_client or kube_api_client())
    hidden = [v for v in (settings.secret("s3_secret_key"), settings.s3_access_key) if v]
    try:
        try:
            api.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]  # the client serializes a dict as a V1Secret
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        api.replace_namespaced_secret(secret_name, namespace, body)  # type: ignore[arg-type]  # likewise
        return "replaced"
    except (ApiException, HTTPError) as exc:
        raise api_error(exc, f"Secret {secret_name}", namespace, api.api_client, hidden=hidden) from None
