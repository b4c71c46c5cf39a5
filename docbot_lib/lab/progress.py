"""`lab status`: each learner's workbench, model, chatbot and documents, read with the administrator's access.

Layer: top (lab): imports any layer below, and lab.report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from docbot_lib.clients import kube as kube_api
from docbot_lib.clients import milvus as milvus_api
from docbot_lib.core.errors import ConfigError
from docbot_lib.core.names import DEFAULT_DATABASE, LabNames
from docbot_lib.core.settings import Settings
from docbot_lib.lab.report import LabReport, LabRow


def status(
    settings: Settings, users: list[str], *, milvus: bool = True, kube: bool = True, api_client=None
) -> LabReport:
    """Each learner's progress, for the workshop host: model deployed? documents ingested? chatbot up?"""
    start = time.monotonic()
    report = LabReport("status")
    api = (api_client or kube_api.kube_api_client()) if kube else None
    admin = _Milvus.of(settings) if milvus else None
    root = admin.connect() if admin else None
    try:
        for user in users:
            names = LabNames(user)
            if api is not None:
                report.rows.append(LabRow(user, "workbench (Notebook)", _workbench_state(api, user)))
                report.rows.append(LabRow(user, "model (InferenceService)", _isvc_state(api, user)))
                report.rows.append(LabRow(user, "chatbot (Deployment)", _deployment_state(api, user)))
            if root is not None and admin is not None:
                report.rows.append(LabRow(user, "documents ingested", _documents(settings, root, admin, names)))
    finally:
        if root is not None:
            root.close()
    report.seconds = time.monotonic() - start
    return report


def _list(api, path: str) -> list[dict[str, Any]]:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube_api.kube_request(api, "GET", path).get("items") or []
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


def _workbench_state(api, namespace: str) -> str:
    """The learner's workbench (OpenShift AI's Notebook resource): running, starting, stopped, or none yet."""
    items = _list(api, f"/apis/kubeflow.org/v1/namespaces/{namespace}/notebooks")
    if not items:
        return "none yet (create one in the dashboard)"
    notebook = items[0]
    name = notebook["metadata"]["name"]
    if "kubeflow-resource-stopped" in (notebook["metadata"].get("annotations") or {}):
        return f"stopped: {name}"
    ready = (notebook.get("status") or {}).get("readyReplicas") or 0
    return f"{'running' if ready else 'starting'}: {name}"


def _isvc_state(api, namespace: str) -> str:
    items = _list(api, f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices")
    if not items:
        return "not deployed (notebook 03)"
    ready = [
        i["metadata"]["name"]
        for i in items
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (i.get("status") or {}).get("conditions", [])
        )
    ]
    return f"ready: {', '.join(ready)}" if ready else f"deployed, not ready: {items[0]['metadata']['name']}"


def _deployment_state(api, namespace: str) -> str:
    items = [
        d
        for d in _list(api, f"/apis/apps/v1/namespaces/{namespace}/deployments")
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "chatbot"
    ]
    if not items:
        return "not deployed"
    ready = (items[0].get("status") or {}).get("readyReplicas") or 0
    return f"{'up' if ready else 'not ready'}: {items[0]['metadata']['name']}"


@dataclass(frozen=True)
class _Milvus:
    """The class's Milvus as root: its URI and root's token."""

    uri: str
    token: str

    @classmethod
    def of(cls, settings: Settings) -> _Milvus:
        """From Settings.milvus_uri and .milvus_root_token; a clear error without either."""
        token = settings.secret("milvus_root_token")
        if not settings.milvus_uri or not token:
            raise ConfigError(
                "the lab's Milvus steps need its URI and root's token",
                "set DOCBOT_MILVUS_URI and DOCBOT_MILVUS_ROOT_TOKEN=root:<password> (or pass --no-milvus)",
                service="milvus",
            )
        return cls(settings.milvus_uri, token)

    def connect(self, database: str = DEFAULT_DATABASE):
        return milvus_api.connect(self.uri, self.token, database=database)


def _documents(settings: Settings, root, admin: _Milvus, names: LabNames) -> str:
    if names.database not in root.list_databases():
        return "no database (provision first)"
    inside = admin.connect(database=names.database)
    try:
        if not inside.has_collection(settings.milvus_collection):
            return "none yet (notebook 05)"
        rows = inside.get_collection_stats(settings.milvus_collection).get("row_count", 0)
        return f"{rows} chunks in {settings.milvus_collection}"
    finally:
        inside.close()
