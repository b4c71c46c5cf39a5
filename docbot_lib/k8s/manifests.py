"""Kubernetes manifests: render the templates in manifests/, check them offline, apply them to a cluster.

- `render(template, values)` fills the `${...}` placeholders of a YAML template and returns the objects.
  String placeholders stand inside double quotes in the templates; values are escaped for that, so a value
  can never change the structure of the YAML.
- `problems(obj)` / `validate(obj)`: KServe and OpenShift objects against their official CRD schemas
  (closed: an unknown key is an error, as with `kubectl --validate=strict`), core objects against the
  Kubernetes OpenAPI schemas that `kubernetes-validate` ships, plus Doc Bot's policy (resources and the
  restricted security context on every container, TLS on every Route).
- `apply(objects, namespace, api_client)`: create, or replace what exists, after a server-side dry run of
  every object, so that a rejected object leaves nothing half-applied.
- `services_without_network_policy(objects)`: the Services among a component's objects whose pods no
  NetworkPolicy of the same objects selects (every component ships its policies with its objects).
- `wait_ready(api_client, namespace, objects)`: until every Deployment/StatefulSet among them has its replicas ready.

Other components (Milvus, the chatbot) use the same functions; a new custom kind needs its CRD schema in
`CRD_SCHEMAS` (and its plural in `PLURALS` when it is not kind + "s").

Layer: k8s: imports core and clients.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from docbot_lib.clients.kube import MASK, api_error, kube_request
from docbot_lib.core.envfile import project_dir
from docbot_lib.core.errors import BadInput, ConfigError, DocbotError, NotFound, ServiceUnavailable

MANIFESTS_DIR = project_dir() / "manifests"
# The official CRD schemas, vendored gzip-compressed with the package (docbot_lib/schemas/README.md says whence).
SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"
KUBERNETES_VERSION = "1.31"  # OpenShift 4.18

CRD_SCHEMAS: dict[tuple[str, str], str] = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "kserve/servingruntime-serving-v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve/inferenceservice-serving-v1beta1.json",
    ("route.openshift.io/v1", "Route"): "openshift/route-route-v1.json",
}
PLURALS: dict[str, str] = {"NetworkPolicy": "networkpolicies"}  # kind -> plural, where not kind.lower() + "s"
# OpenShift's own API kinds served by its API server, not by CRDs: no official JSON Schema ships for them (the
# OpenAPI document is published only by a running cluster), so their schema check is skipped, here and only here;
# the server's strict field validation still checks them in apply()'s dry run. Doc Bot's policy checks still apply.
SCHEMALESS_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("build.openshift.io/v1", "BuildConfig"),
        ("image.openshift.io/v1", "ImageStream"),
    }
)
# kinds that are not inside a namespace: their API path has no namespace, and a namespace admin cannot create them
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "PodSecurityPolicy",
    "CustomResourceDefinition",
    "Namespace",
    "PriorityClass",
    "StorageClass",
    "SecurityContextConstraints",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
}
# A Kubernetes resource quantity as Doc Bot accepts one (cpu "2", "500m"; memory "16Gi"): a number, maybe a suffix
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?\Z")

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# where each workload kind keeps its pod's spec
POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


# -- rendering ----------------------------------------------------------------------------------


def template_path(name: str | Path) -> Path:
    """A template by path, or by its name under manifests/ (e.g. "serving/vllm-servingruntime.yaml")."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = MANIFESTS_DIR / path
    if not path.is_file():
        raise NotFound(f"manifest template {name} not found", f"use a file under {MANIFESTS_DIR}")
    return path


def _yaml_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        # the JSON escapes are YAML's double-quoted escapes: the value stays one scalar, whatever it holds
        return json.dumps(value)[1:-1]
    raise BadInput(
        f"template value {name!r} is a {type(value).__name__}",
        "give a string or a number; structured parts are added to the rendered objects",
    )


def render(template: str | Path, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects of a YAML template with every `${name}` replaced; a missing or unused value is an error."""
    path = template_path(template)
    text = path.read_text()
    tpl = string.Template(text)
    wanted = set(tpl.get_identifiers())
    missing, unused = wanted - set(values), set(values) - wanted
    if missing:
        raise BadInput(f"{path.name} needs values for {sorted(missing)}", "pass them to render()")
    if unused:
        raise BadInput(
            f"{path.name} has no placeholder for {sorted(unused)}",
            "check the names against the ${...} placeholders of the template",
        )
    try:
        rendered = tpl.substitute({k: _yaml_text(k, v) for k, v in values.items()})
    except ValueError as exc:  # a lone "$" or "${" in the template
        raise BadInput(f"{path.name}: {exc}", "write a literal dollar sign as $$") from None
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _masked(obj: dict[str, Any], public: Collection[str] = ()) -> dict[str, Any]:
    if obj.get("kind") != "Secret":
        return obj
    shown = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        if isinstance(shown.get(field), dict):
            shown[field] = {key: value if key in public else MASK for key, value in shown[field].items()}
    return shown


def to_yaml(
    objects: Iterable[dict[str, Any]], *, reveal_secrets: bool = False, public_keys: Collection[str] = ()
) -> str:
    """The objects as one multi-document YAML; Secret values are masked unless `reveal_secrets`, all but those
    of `public_keys` (keys a caller knows hold no secret, such as a data connection's endpoint and bucket)."""
    docs = [obj if reveal_secrets else _masked(obj, public_keys) for obj in objects]
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


# -- validation -----------------------------------------------------------------------------------


def _describe(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name", "?") if isinstance(obj, dict) else "?"
    kind = obj.get("kind", "?") if isinstance(obj, dict) else type(obj).__name__
    return f"{kind}/{name}"


def _closed(schema: Any) -> Any:
    """The schema with every struct closed to unknown keys, as the API server's strict field validation."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _core_schemas(version: str) -> tuple[str, Any]:
    """(the schema folder of the newest Kubernetes release not newer than `version`, its definitions)."""
    import importlib.resources

    from packaging.version import Version

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    releases = sorted(
        (
            p.name.removeprefix("v").removesuffix("-local-strict")
            for p in root.iterdir()
            if p.name.endswith("-local-strict")
        ),
        key=Version,
    )
    fitting = [r for r in releases if Version(r) <= Version(version + ".999")]
    if not fitting:
        raise ConfigError(
            f"kubernetes-validate has no schemas for Kubernetes {version}",
            f"use a version from {releases[0]} to {releases[-1]}",
        )
    folder = f"v{fitting[-1]}-local-strict"
    return folder, json.loads((root / folder / "_definitions.json").read_text())


def _registry(version: str):
    from referencing import Registry, Resource

    _, definitions = _core_schemas(version)
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions)), definitions["$id"]


@cache
def _crd_schema(path: str, version: str) -> dict[str, Any]:
    import gzip

    raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
    schema = _closed(json.loads(raw))
    # the CRDs leave metadata open ({"type": "object"}); the API server checks it as ObjectMeta
    _, defs_id = _registry(version)
    schema["properties"]["metadata"] = {"$ref": f"{defs_id}#/$defs/{_OBJECT_META}"}
    return schema


def _schema_for(obj: dict[str, Any], version: str, schemas_dir: Path) -> dict[str, Any]:
    import importlib.resources

    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise BadInput(f"{_describe(obj)} has no apiVersion/kind", "every object needs both")
    crd = CRD_SCHEMAS.get((api_version, kind))
    if crd:
        path = Path(schemas_dir) / crd
        if not path.is_file() and Path(f"{path}.gz").is_file():
            path = Path(f"{path}.gz")
        if not path.is_file():
            raise ConfigError(
                f"the CRD schema of {kind} ({api_version}) is not at {path}",
                "pass schemas_dir= the folder holding kserve/ and openshift/ (the workshop's shared/schemas)",
            )
        return _crd_schema(str(path), version)
    folder, _ = _core_schemas(version)
    # "apps/v1" -> "apps-v1", "rbac.authorization.k8s.io/v1" -> "rbac-v1", "v1" -> "v1"
    suffix = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    file = (
        importlib.resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / folder
        / f"{kind.lower()}-{suffix}.json"
    )
    if not file.is_file():
        raise BadInput(
            f"no schema for {kind} ({api_version})",
            "for a custom resource, add its CRD JSON schema to docbot_lib.k8s.manifests.CRD_SCHEMAS",
        )
    return json.loads(file.read_text())


def _schema_problems(obj: dict[str, Any], version: str, schemas_dir: Path) -> list[str]:
    import jsonschema

    if (obj.get("apiVersion"), obj.get("kind")) in SCHEMALESS_KINDS:
        return [] if isinstance((obj.get("metadata") or {}).get("name"), str) else ["metadata.name: required"]
    schema = _schema_for(obj, version, schemas_dir)
    registry, _ = _registry(version)
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    secret = obj.get("kind") == "Secret"
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        if secret:  # the message may quote a value: name the rule only
            message = f"fails the {error.validator!r} rule"
        else:
            message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        found.append(f"{where}: {message}")
    return found


def _container_problems(
    where: str, container: dict[str, Any], pod_sc: dict[str, Any], need_resources: bool
) -> list[str]:
    found = []
    sc = container.get("securityContext") or {}
    if need_resources:
        res = container.get("resources") or {}
        missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in (res.get("requests") or {})]
        missing += ["limits.memory"] if "memory" not in (res.get("limits") or {}) else []
        if missing:
            found.append(f"{where}: resources lack {', '.join(missing)}")
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        found.append(f"{where}: securityContext.capabilities.drop must include ALL")
    if sc.get("privileged"):
        found.append(f"{where}: must not be privileged")
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        found.append(f"{where}: runAsNonRoot must be true (container or pod securityContext)")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append(f"{where}: seccompProfile.type must be RuntimeDefault (container or pod securityContext)")
    if "runAsUser" in sc or "runAsUser" in pod_sc:
        found.append(f"{where}: no fixed runAsUser (OpenShift assigns a UID from the namespace's range)")
    return found


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _policy_problems(obj: dict[str, Any]) -> list[str]:
    kind, found = obj.get("kind"), []
    if kind in POD_SPEC_PATHS:
        pod = _dig(obj, *POD_SPEC_PATHS[kind]) or {}
        pod_sc = pod.get("securityContext") or {}
        for group in ("initContainers", "containers"):
            for c in pod.get(group) or []:
                found += _container_problems(f"{group}[{c.get('name')}]", c, pod_sc, need_resources=True)
    elif kind == "ServingRuntime":
        # resources come from the InferenceService; the pod's securityContext is not settable here
        for c in _dig(obj, "spec", "containers") or []:
            found += _container_problems(f"containers[{c.get('name')}]", c, {}, need_resources=False)
    elif kind == "InferenceService":
        model = _dig(obj, "spec", "predictor", "model") or {}
        res = model.get("resources") or {}
        if not res.get("requests") or "memory" not in (res.get("limits") or {}):
            found.append("spec.predictor.model.resources: set requests and limits.memory")
    elif kind == "Route":
        if not _dig(obj, "spec", "tls", "termination"):
            found.append(
                "spec.tls: a Route must terminate TLS (e.g. termination: edge, insecureEdgeTerminationPolicy: Redirect)"
            )
    return found


def problems(
    obj: dict[str, Any], *, kubernetes_version: str = KUBERNETES_VERSION, schemas_dir: Path | None = None
) -> list[str]:
    """Every way the object breaks its schema or Doc Bot's policy, as readable lines (empty: fine)."""
    if not isinstance(obj, dict):
        return [f"not a Kubernetes object: {type(obj).__name__}"]
    return _schema_problems(obj, kubernetes_version, schemas_dir or SCHEMAS_DIR) + _policy_problems(obj)


def validate(
    objects: dict[str, Any] | Iterable[dict[str, Any]],
    *,
    kubernetes_version: str = KUBERNETES_VERSION,
    schemas_dir: Path | None = None,
) -> None:
    """Raise one DocbotError listing every problem of the object(s); return quietly when all are fine."""
    items = [objects] if isinstance(objects, dict) else list(objects)
    report = []
    for obj in items:
        report += [
            f"{_describe(obj)}: {line}"
            for line in problems(obj, kubernetes_version=kubernetes_version, schemas_dir=schemas_dir)
        ]
    if report:
        raise BadInput(
            "invalid manifest(s):\n  " + "\n  ".join(report), "correct the template or the values passed to it"
        )


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects pods with these labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            ok = labels.get(key) in values
        elif op == "NotIn":
            ok = labels.get(key) not in values
        else:
            ok = (key in labels) == (op == "Exists") and op in ("Exists", "DoesNotExist")
        if not ok:
            return False
    return True


def services_without_network_policy(objects: Iterable[dict[str, Any]]) -> list[str]:
    """ "Service/<name>" for each Service among `objects` whose pods no NetworkPolicy among `objects` selects.

    A Service's pods are those of the workloads among `objects` whose pod template labels its selector matches;
    when none is there (KServe, a Helm subchart made elsewhere), a pod carrying exactly the selector's labels.
    A policy selects them when its podSelector matches those labels ({} selects every pod)."""
    items = list(objects)
    policies = [_dig(o, "spec", "podSelector") or {} for o in items if o.get("kind") == "NetworkPolicy"]
    pods = [
        _dig(o, *POD_SPEC_PATHS[o["kind"]][:-1], "metadata", "labels") or {}
        for o in items
        if o.get("kind") in POD_SPEC_PATHS
    ]
    missing = []
    for service in (o for o in items if o.get("kind") == "Service"):
        selector = _dig(service, "spec", "selector") or {}
        if not selector:  # no selector: no pods of its own (an ExternalName or hand-made Endpoints)
            continue
        targets = [labels for labels in pods if _selects({"matchLabels": selector}, labels)] or [selector]
        if not all(any(_selects(policy, labels) for policy in policies) for labels in targets):
            missing.append(f"Service/{_dig(service, 'metadata', 'name')}")
    return missing


# -- applying to a cluster ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str  # "created", "replaced" or "kept" (a PersistentVolumeClaim that exists is left alone)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} {self.action}"


def _collection_path(obj: dict[str, Any], namespace: str) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    plural = PLURALS.get(kind, kind.lower() + "s")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/{plural}" if kind in CLUSTER_SCOPED else f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(obj: dict[str, Any], namespace: str) -> str:
    """The API path of one object (e.g. /api/v1/namespaces/ns/secrets/name), for a GET or DELETE."""
    return f"{_collection_path(obj, namespace)}/{obj['metadata']['name']}"


def _apply_one(
    api_client, obj: dict[str, Any], namespace: str, dry_run: bool, keep_existing: frozenset[str] = frozenset()
) -> Applied:
    from kubernetes.client.exceptions import ApiException

    body = copy.deepcopy(obj)
    if body["kind"] not in CLUSTER_SCOPED:
        body.setdefault("metadata", {})["namespace"] = namespace
    name, kind = body["metadata"]["name"], body["kind"]
    collection = _collection_path(body, namespace)
    query = [("fieldValidation", "Strict"), ("fieldManager", "docbot")]
    query += [("dryRun", "All")] if dry_run else []
    try:
        kube_request(api_client, "POST", collection, body, query)
        return Applied(kind, name, "created")
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = kube_request(api_client, "GET", f"{collection}/{name}")
    if kind == "PersistentVolumeClaim" or kind in keep_existing:  # a PVC's spec is immutable once bound
        return Applied(kind, name, "kept")
    body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
    if kind == "Service":  # the cluster IP is immutable; a replace without it is rejected
        for field in ("clusterIP", "clusterIPs"):
            if field in (existing.get("spec") or {}):
                body.setdefault("spec", {})[field] = existing["spec"][field]
    kube_request(api_client, "PUT", f"{collection}/{name}", body, query)
    return Applied(kind, name, "replaced")


def wait_ready(
    api_client, namespace: str, objects: list[dict[str, Any]], timeout: float = 600, interval: float = 5, echo=print
) -> None:
    """Wait until every Deployment/StatefulSet among `objects` has all its replicas ready; a clear error
    naming the ones still not ready at the deadline (see their pods' events with `oc describe`)."""
    import time

    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    readers: dict[str, Callable[[str, str], Any]] = {
        "Deployment": apps.read_namespaced_deployment_status,
        "StatefulSet": apps.read_namespaced_stateful_set_status,
    }
    waiting = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in readers}
    deadline = time.monotonic() + timeout
    while waiting:
        for kind, name in sorted(waiting):
            status = readers[kind](name, namespace)
            wanted = status.spec.replicas if status.spec.replicas is not None else 1
            ready = (status.status.ready_replicas if status.status else 0) or 0  # no status before a pod runs
            if ready >= wanted:
                echo(f"{kind}/{name}: ready")
                waiting.discard((kind, name))
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{k}/{n}" for k, n in sorted(waiting))
            raise ServiceUnavailable(
                f"not ready after {timeout:.0f} s in namespace {namespace}: {names}",
                f"look at the pods: `oc get pods -n {namespace}` and `oc describe pod ...` "
                "(image pulls, the PVC, the security context)",
                service="kubernetes",
            )
        if waiting:
            time.sleep(interval)


def apply(
    objects: Iterable[dict[str, Any]], namespace: str, api_client, keep_existing: Iterable[str] = ()
) -> list[Applied]:
    """Create each object in the namespace, or replace it when it exists; a PVC that exists is kept, and so
    is an object of a kind in `keep_existing` (e.g. "Secret": a data connection made in the dashboard).

    Every object goes through a server-side dry run first (admission webhooks and strict field validation
    included), so a rejected object stops the whole apply before anything is written.
    """
    items = list(objects)
    for dry_run in (True, False):
        done = []
        for obj in items:
            try:
                done.append(_apply_one(api_client, obj, namespace, dry_run, frozenset(keep_existing)))
            except DocbotError:
                raise
            except Exception as exc:  # noqa: BLE001 - ApiException, or urllib3's connection errors
                raise api_error(exc, _describe(obj), namespace, api_client) from None
    return done
