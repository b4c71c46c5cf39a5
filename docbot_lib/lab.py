"""The lab's administrator: provision a class of learners on one cluster, show their progress, tear them down.

Layer: top (the administrator's tools, beside the CLI): imports any layer below.

For each learner (`docbot_lib.core.names.LabNames(user)`):
  Milvus       their database, reader and writer roles granted in it, their two users (vectordb.secure_learner)
  Kubernetes   their project (namespace <user>, an OpenShift AI data science project), a RoleBinding that gives
               the learner `edit` there and nowhere else (what creating an InferenceService, the chatbot's
               Deployment, Route and Secrets needs), the data connection Secret, a Secret `docbot-learner`
               holding their Milvus URI, user name and their two users' tokens (never root's; for their .env),
               and the reader's and writer's Secrets the chatbot and ingestion read (vectordb.credentials_secrets)
  S3           with `s3_users=True`: an S3 user of their own (`docbot-<user>`, through the storage's IAM API: AWS,
               Ceph RGW / ODF, the local moto) whose policy allows their prefix `<user>/` of the class's bucket and
               nothing else, and their data connection holds that user's key, not the administrator's. Without it
               every learner's data connection holds the class's key and only the prefix separates them.
  One model    with `model="NAMESPACE/NAME"` (the class shares one InferenceService the administrator deployed,
               token authentication on): in the model's namespace a service account per learner whose token may
               only `get` that InferenceService (serving.token_auth_manifests), and the model's endpoint, served
               name and that token in the learner's `docbot-learner` Secret. Without it, each learner deploys
               their own model (notebook 03) where the cluster has GPUs for it.
Idempotent: what exists is kept and reported "already there" (a second run changes nothing); passwords are
read back from the learner's Secret, so their tokens keep working. Nothing secret is ever printed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docbot_lib.clients import kube as kube_api
from docbot_lib.clients import milvus as milvus_api
from docbot_lib.core.errors import BadInput, ConfigError, DocbotError, ServiceUnavailable
from docbot_lib.core.names import DEFAULT_DATABASE, LabNames
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline import serving, vectordb
from docbot_lib.pipeline.s3 import data_connection_secret_name

LEARNER_SECRET = "docbot-learner"
DATA_CONNECTION = "models"  # the learner's data connection: Secret aws-connection-models
ROLEBINDING = "docbot-learner-edit"


@dataclass
class LabRow:
    user: str
    what: str
    state: str  # created | already there | removed | absent | a progress value


@dataclass
class LabReport:
    """What a lab command did, one row per object; printable (no secret in it)."""

    action: str
    rows: list[LabRow] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.rows)

    def __str__(self) -> str:
        width = max([len("user")] + [len(r.user) for r in self.rows])
        what = max([len("object")] + [len(r.what) for r in self.rows])
        lines = [f"{'user':<{width}}  {'object':<{what}}  state", f"{'-' * width}  {'-' * what}  -----"]
        lines += [f"{r.user:<{width}}  {r.what:<{what}}  {r.state}" for r in self.rows]
        states = sorted({r.state for r in self.rows})
        learners = len({r.user for r in self.rows})
        lines.append(
            f"{self.action}: {learners} learner(s) in {self.seconds:.1f} s; "
            + ", ".join(f"{self.count(s)} {s}" for s in states)
        )
        if self.action == "provision" and self.rows and self.count("created") == 0:
            lines.append("nothing changed: everything was already there")
        return "\n".join(lines)


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


# -- S3: a user per learner, limited to their prefix ------------------------------------------------------

S3_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def s3_user(names: LabNames) -> str:
    return f"docbot-{names.user}"


def learner_s3_policy(bucket: str, names: LabNames) -> dict[str, Any]:
    """The learner's S3 policy (AWS's policy language, which MinIO and Ceph RGW read too): list, read and write
    under their prefix `<user>/` of the class's bucket, and nothing else. For MinIO, which has no IAM API:
    `mc admin policy create ALIAS docbot-<user> policy.json` then `mc admin policy attach ALIAS docbot-<user>
    --user docbot-<user>` (README: the lab's administrator)."""
    prefix = names.s3_prefix
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": S3_ACTIONS, "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"},
        ],
    }


def _iam(settings: Settings):
    """The storage's IAM API, as the administrator (the class's S3 key)."""
    import boto3

    return boto3.client(
        "iam",
        endpoint_url=settings.s3_endpoint or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.secret("s3_secret_key"),
    )


def _iam_error(exc: Exception, doing: str) -> DocbotError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return ServiceUnavailable(
        f"the S3 service refused to {doing} ({code})",
        "the class's S3 key needs IAM rights (iam:CreateUser, PutUserPolicy, CreateAccessKey, "
        "DeleteUser...); on MinIO, which has no IAM API, create the users with `mc admin` and leave "
        "out --s3-users (README: the lab's administrator)",
        service="s3",
    )


def ensure_s3_user(settings: Settings, names: LabNames, stored: tuple[str, str] | None) -> tuple[tuple[str, str], str]:
    """The learner's S3 user with their policy; returns (their key, "created" | "already there"). `stored` is the
    key their data connection holds (kept when it still belongs to the user); else a new key replaces the old."""
    import json

    from botocore.exceptions import BotoCoreError, ClientError

    iam, user = _iam(settings), s3_user(names)
    try:
        try:
            iam.create_user(UserName=user, Tags=[{"Key": "app.kubernetes.io/part-of", "Value": "docbot"}])
            state = "created"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            state = "already there"
        iam.put_user_policy(
            UserName=user,
            PolicyName="docbot-learner",
            PolicyDocument=json.dumps(learner_s3_policy(settings.s3_bucket, names)),
        )
        keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
        if stored is not None and stored[0] in keys:
            return stored, state
        for old in keys:  # a key whose secret nobody kept is of no use, and IAM allows two a user
            iam.delete_access_key(UserName=user, AccessKeyId=old)
        key = iam.create_access_key(UserName=user)["AccessKey"]
    except (BotoCoreError, ClientError) as exc:
        raise _iam_error(exc, f"create the S3 user {user}") from None
    return (key["AccessKeyId"], key["SecretAccessKey"]), "created"


def drop_s3_user(settings: Settings, names: LabNames) -> str:
    """Remove the learner's S3 user (keys and policy first); "removed" or "absent". Their objects stay in the
    bucket under `<user>/` for the administrator to keep or delete."""
    from botocore.exceptions import BotoCoreError, ClientError

    iam, user = _iam(settings), s3_user(names)
    try:
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        for policy in iam.list_user_policies(UserName=user)["PolicyNames"]:
            iam.delete_user_policy(UserName=user, PolicyName=policy)
        iam.delete_user(UserName=user)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return "absent"
        raise _iam_error(exc, f"remove the S3 user {user}") from None
    except BotoCoreError as exc:
        raise _iam_error(exc, f"remove the S3 user {user}") from None
    return "removed"


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


# -- helpers ---------------------------------------------------------------------------------------------


def _row(user: str, applied: manifests.Applied) -> LabRow:
    return LabRow(
        user, f"{applied.kind}/{applied.name}", "already there" if applied.action == "kept" else applied.action
    )


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


def _list(api, path: str) -> list[dict[str, Any]]:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube_api.kube_request(api, "GET", path).get("items") or []
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


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
