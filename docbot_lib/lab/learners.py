"""`lab provision` and `lab teardown`: a class's learners on one cluster (Milvus, Kubernetes, S3), idempotent.

Layer: top (lab): imports any layer below, and the modules of lab/ above.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from docbot_lib.clients import kube as kube_api
from docbot_lib.core.errors import ConfigError
from docbot_lib.core.names import LabNames
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.lab.objects import DATA_CONNECTION, LEARNER_SECRET, SharedModel, learner_objects
from docbot_lib.lab.progress import _Milvus
from docbot_lib.lab.report import LabReport, LabRow, _row
from docbot_lib.lab.s3users import drop_s3_user, ensure_s3_user, s3_user
from docbot_lib.pipeline import serving, vectordb
from docbot_lib.pipeline.s3 import data_connection_secret_name


def _stored_s3_key(api_client, names: LabNames) -> tuple[str, str] | None:
    """The S3 key the learner's data connection holds, or None."""
    data = _secret_data(api_client, names, data_connection_secret_name(DATA_CONNECTION))
    return (data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"]) if "AWS_ACCESS_KEY_ID" in data else None


def _namespace(names: LabNames) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": names.user,
            "labels": {"opendatahub.io/dashboard": "true", "app.kubernetes.io/part-of": "docbot"},
            "annotations": {"openshift.io/display-name": f"Doc Bot lab: {names.user}"},
        },
    }


def _secret_data(api_client, names: LabNames, name: str) -> dict[str, str]:
    """The decoded data of a Secret in the learner's project, or {} when it is not there."""
    from kubernetes.client.exceptions import ApiException

    try:
        secret = kube_api.kube_request(api_client, "GET", f"/api/v1/namespaces/{names.user}/secrets/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise kube_api.api_error(exc, f"Secret/{name}", names.user or "", api_client) from None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _stored_tokens(api_client, names: LabNames) -> dict[str, str]:
    """The learner's tokens from their Secret (a second run keeps their passwords), or {}."""
    data = _secret_data(api_client, names, LEARNER_SECRET)
    return {k: v for k, v in data.items() if k in (vectordb.INGEST_TOKEN_KEY, vectordb.APP_TOKEN_KEY)}


def provision(
    settings: Settings,
    users: list[str],
    *,
    milvus: bool = True,
    kube: bool = True,
    model: str | None = None,
    s3_users: bool = False,
    api_client=None,
    echo: Callable[[str], None] = lambda _m: None,
) -> LabReport:
    """Everything each learner needs, as described in the module's docstring; safe to run again.
    `model`: "NAMESPACE/NAME" of the InferenceService the class shares (its token authentication on);
    `s3_users`: an S3 user per learner, limited to their prefix (else the class's key in every data connection)."""
    start = time.monotonic()
    report = LabReport("provision")
    api = (api_client or kube_api.kube_api_client()) if kube else None
    shared = SharedModel.parse(model) if model else None
    if shared and api is None:
        raise ConfigError("a shared model needs the cluster", "drop --no-kube, or leave out --model")
    model_url = shared.url(api) if shared and api is not None else None
    admin = _Milvus.of(settings) if milvus else None
    root = admin.connect() if admin else None
    try:
        for user in users:
            names = LabNames(user)
            echo(f"provisioning {user} ...")
            if api is not None:
                manifests.validate([_namespace(names)])
                applied = manifests.apply([_namespace(names)], user, api, keep_existing=["Namespace"])
                report.rows += [_row(user, a) for a in applied]
            tokens = vectordb.learner_tokens(_stored_tokens(api, names) if api is not None else {}, names)
            if root is not None and admin is not None:
                created, _granted = vectordb.secure_learner(
                    root, admin.uri, admin.token, settings.milvus_collection, tokens, names
                )
                for item in (
                    f"database {names.database}",
                    f"role {names.reader_role}",
                    f"role {names.writer_role}",
                    f"user {names.app_user}",
                    f"user {names.ingest_user}",
                ):
                    state = (
                        "created"
                        if item in created
                        else "password reset"
                        if f"{item} (password reset)" in created
                        else "already there"
                    )
                    report.rows.append(LabRow(user, f"Milvus {item}", state))
            model_settings = None
            if shared is not None and model_url is not None:
                access = shared.objects(user)
                manifests.validate(access)
                applied = manifests.apply(access, shared.namespace, api, keep_existing=[o["kind"] for o in access])
                report.rows += [_row(user, a) for a in applied]
                token = serving.read_token(shared.identity(user), shared.namespace, api)
                model_settings = shared.learner_settings(model_url, token)
            s3_key = stored_key = None
            if s3_users:
                stored_key = _stored_s3_key(api, names) if api is not None else None
                s3_key, state = ensure_s3_user(settings, names, stored_key)
                report.rows.append(LabRow(user, f"S3 user {s3_user(names)} ({names.s3_prefix} only)", state))
            if api is not None:
                objects = learner_objects(settings, names, tokens, model_settings, s3_key)
                manifests.validate(objects)
                # a data connection that holds a stale key (or the class's) is replaced; other Secrets are kept
                stale = [
                    o
                    for o in objects
                    if o["metadata"]["name"] == data_connection_secret_name(DATA_CONNECTION)
                    and s3_key is not None
                    and stored_key is not None
                    and s3_key != stored_key
                ]
                applied = manifests.apply(
                    [o for o in objects if o not in stale], user, api, keep_existing=["Secret", "RoleBinding"]
                ) + manifests.apply(stale, user, api)
                report.rows += [_row(user, a) for a in applied]
    finally:
        if root is not None:
            root.close()
    report.seconds = time.monotonic() - start
    return report


def teardown(
    settings: Settings,
    users: list[str],
    *,
    milvus: bool = True,
    kube: bool = True,
    model: str | None = None,
    s3_users: bool = False,
    api_client=None,
) -> LabReport:
    """Remove each learner's Milvus database, users and roles, their project, (with `model`) their access to
    the shared model and (with `s3_users`) their S3 user; the other learners' stay intact."""
    start = time.monotonic()
    report = LabReport("teardown")
    api = (api_client or kube_api.kube_api_client()) if kube else None
    admin = _Milvus.of(settings) if milvus else None
    shared = SharedModel.parse(model) if model else None
    for user in users:
        names = LabNames(user)
        if admin:
            removed = vectordb.drop_learner(admin.uri, admin.token, names, settings.milvus_collection)
            report.rows += [LabRow(user, f"Milvus {item}", "removed") for item in removed] or [
                LabRow(user, f"Milvus database {names.database}", "absent")
            ]
        if api is not None:
            report.rows.append(LabRow(user, f"Namespace/{user}", _delete(api, _namespace(names), user)))
            if shared is not None:
                for obj in shared.objects(user):
                    row = LabRow(user, f"{obj['kind']}/{obj['metadata']['name']}", _delete(api, obj, shared.namespace))
                    report.rows.append(row)
        if s3_users:
            report.rows.append(LabRow(user, f"S3 user {s3_user(names)}", drop_s3_user(settings, names)))
    report.seconds = time.monotonic() - start
    return report


def _delete(api, obj: dict[str, Any], namespace: str) -> str:
    """Delete one object; "removed", or "absent" when it was not there."""
    from kubernetes.client.exceptions import ApiException

    path = manifests.object_path(obj, namespace)
    try:
        kube_api.kube_request(api, "DELETE", path)
    except ApiException as exc:
        if exc.status == 404:
            return "absent"
        raise kube_api.api_error(exc, f"{obj['kind']}/{obj['metadata']['name']}", namespace, api) from None
    return "removed"
