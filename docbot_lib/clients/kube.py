"""The Kubernetes API, as the learner: the client (your `oc login`, else the workbench pod's service account),
who it acts as, the project to deploy into, one raw request, and a failed call as a typed error.

    api = kube_api_client()                 # KUBECONFIG / ~/.kube/config, else the pod's service account
    print(identity(api))                    # "alice (your login in ~/.kube/config)"
    namespace = current_namespace(settings)
    kube_request(api, "GET", "/api/v1/namespaces/ns/secrets/x")

Layer: clients: imports only core (the `kubernetes` package lazily).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotFound,
    NotReachable,
    PermissionDenied,
    ServiceUnavailable,
)

MASK = "******"  # what a secret value is shown as
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _default_kubeconfig() -> Path:
    """Where `oc login` writes: the kubernetes client's own default (KUBECONFIG, else ~/.kube/config)."""
    from kubernetes.config import kube_config

    return Path(kube_config.KUBE_CONFIG_DEFAULT_LOCATION.split(":")[0]).expanduser()


def kube_api_client(kubeconfig: str | Path | None = None, context: str | None = None):
    """A `kubernetes` ApiClient, as the learner: `kubeconfig` if given; else the login `oc login` wrote
    (KUBECONFIG or ~/.kube/config), so that a learner who logged in inside a workbench acts as themself;
    else, in a pod (a workbench), the pod's service account. `identity(api)` says which one is used."""
    from kubernetes import client, config

    path = Path(kubeconfig) if kubeconfig else _default_kubeconfig()
    if kubeconfig or path.is_file():
        try:
            api = config.new_client_from_config(config_file=str(path), context=context)
        except (config.ConfigException, OSError, TypeError, yaml.YAMLError) as exc:
            if kubeconfig or not (SERVICE_ACCOUNT_DIR / "token").is_file():
                raise AuthRefused(
                    f"no usable Kubernetes credentials in {path} ({type(exc).__name__}: {exc})",
                    "log in again with `oc login ...` (OpenShift console: your name → Copy login command)",
                    service="kubernetes",
                ) from None
        else:
            api.docbot_source = f"your login in {path}"
            return api
    try:
        config.load_incluster_config()
    except config.ConfigException:
        raise ConfigError(
            "no Kubernetes cluster is configured: no `oc login` and not in a pod",
            "log in with `oc login ...` (OpenShift console: your name → Copy login command), "
            "or run in an OpenShift AI workbench",
            service="kubernetes",
        ) from None
    api = client.ApiClient()
    # our note on the client, read by identity() and api_error(): where its login comes from
    api.docbot_source = "the workbench pod's service account (no `oc login` in this workbench)"  # type: ignore[attr-defined]
    return api


def whoami(api_client) -> str | None:
    """The user name the cluster sees behind `api_client` (`oc whoami`): a user, or
    system:serviceaccount:NS:NAME; None when the cluster does not say (SelfSubjectReview: Kubernetes 1.28+)."""
    try:
        review = kube_request(
            api_client,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except Exception:  # noqa: BLE001 - an older cluster, or no right to ask
        return None
    return ((review.get("status") or {}).get("userInfo") or {}).get("username") or None


def identity(api_client) -> str:
    """Who acts through `api_client`, and where that login comes from, e.g. "alice (your login in ~/.kube/config)"."""
    source = getattr(api_client, "docbot_source", "the given client")
    name = whoami(api_client)
    return f"{name} ({source})" if name else source


def current_namespace(settings=None) -> str:
    """The project to deploy into: settings.namespace (DOCBOT_NAMESPACE / a NAMESPACE parameter); else, in a
    workbench, the workbench's own project; else the current project of your `oc login` (`oc project`)."""
    if settings is not None and settings.namespace:
        return settings.namespace
    pod_namespace = SERVICE_ACCOUNT_DIR / "namespace"
    if pod_namespace.is_file() and pod_namespace.read_text().strip():
        return pod_namespace.read_text().strip()
    try:
        from kubernetes import config

        _contexts, active = config.list_kube_config_contexts(config_file=str(_default_kubeconfig()))
        found = (active or {}).get("context", {}).get("namespace")
    except Exception:  # noqa: BLE001 - no kubeconfig: no namespace from it
        found = None
    if found:
        return found
    raise ConfigError(
        "no namespace (OpenShift project) to deploy into",
        "set NAMESPACE in the parameters cell (or DOCBOT_NAMESPACE), or choose one with `oc project NAME`",
        service="kubernetes",
    )


def kube_request(
    api_client, method: str, path: str, body: dict | None = None, query: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """One call of the Kubernetes API through the client's own serialization, auth and TLS."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    params = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*params)
    response.read()
    return api_client.response_deserialize(response, {"2XX": "object"}).data


_FORBIDDEN = re.compile(r'cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?')


def api_error(exc: Exception, what: str, namespace: str, api_client=None, hidden: Iterable[str] = ()) -> DocbotError:
    """The DocbotError for a failed Kubernetes API call about `what` (e.g. "InferenceService/x"); a 403
    names the identity that lacked the right (asked of the cluster through `api_client`) and how to grant it.
    The `hidden` values (the keys a Secret carried) are masked in the API's message: it must not bring them back."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return NotReachable(
            f"the Kubernetes API does not answer ({type(exc).__name__}: {exc})",
            "check the cluster URL and your login (`oc whoami`)",
            service="kubernetes",
        )
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    for value in hidden:
        message = (message or "").replace(value, MASK)
    if exc.status == 401:
        return AuthRefused(
            f"the cluster refused the credentials (401) used for {what} (HTTP 401: {message})",
            "log in again: `oc login ...` (OpenShift console: your name → Copy login command)",
            service="kubernetes",
        )
    if exc.status == 403:
        user = whoami(api_client) if api_client is not None else None
        source = getattr(api_client, "docbot_source", "")
        who = f"{user} ({source})" if user and source else user or source or "your login"
        found = _FORBIDDEN.search(message or "")
        right = (f"{found[1]} {found[2]}" + (f" ({found[3]})" if found[3] else "")) if found else f"write {what}"
        grant = f"oc adm policy add-role-to-user edit {user} -n {namespace}" if user else ""
        return PermissionDenied(
            f"{who} may not {right} in namespace {namespace} (HTTP 403)",
            "use a login that may, or ask the project's admin to grant it"
            + (f": `{grant}`" if grant else "")
            + "; in a workbench, `oc login` as yourself in its terminal: Doc Bot then uses your login, "
            "not the pod's service account",
            service="kubernetes",
        )
    if exc.status == 404:
        return NotFound(
            f"the cluster has no {what} in namespace {namespace}, or no API for its kind (HTTP 404: {message})",
            f"check the name and the namespace (`oc new-project {namespace}` creates a missing project; NAMESPACE "
            "sets yours), and that the operator serving this kind is installed (KServe: OpenShift AI single-model "
            "serving)",
            service="kubernetes",
        )
    kind = BadInput if 400 <= (exc.status or 0) < 500 else ServiceUnavailable  # the manifest, or the cluster
    return kind(
        f"the cluster rejected {what} (HTTP {exc.status}: {message})",
        "correct the manifest (docbot_lib.k8s.manifests.validate shows schema problems offline)"
        if kind is BadInput
        else "try again; the cluster's API server or an admission webhook failed",
        service="kubernetes",
    )
