"""OpenShift patches for what `helm template` renders: the restricted-v2 SCC, and what a namespace admin may apply.

`patch_rendered(text)` takes helm's multi-document YAML and returns the objects to apply plus what was dropped
and why. It does in Python what hand-run `yq` steps used to do, and does it right:
  - every pod (etcd's and MinIO's StatefulSets/Deployments included): the pod securityContext is emptied
    (no runAsUser/runAsGroup/fsGroup: OpenShift assigns them from the namespace's range), and each container
    gets the restricted one (drop ALL capabilities, runAsNonRoot, no privilege escalation, seccomp RuntimeDefault);
  - cluster-scoped objects (ClusterRole, ClusterRoleBinding, PodSecurityPolicy, ...) are dropped: a namespace
    admin cannot create them (the Pulsar charts render them even when Pulsar is disabled);
  - with `pulsar_enabled=False`, anything of Pulsar's is dropped too;
  - Milvus' port 9091 (metrics, health and a REST API without authentication: GHSA-7ppg-37fh-vcr6) comes off
    every Service (the chart puts it on the main one beside 19530); a Service left without ports is dropped.
    The kubelet's probes reach the container port directly, so health checks keep working.
`patch_diff(text)` shows the same changes as a unified diff a person can read (notebook 04); `SAMPLE_RENDERED`
is a small rendered chart to show it on when no `helm template` output is at hand.

Layer: k8s: imports core, clients and its peer k8s.manifests (POD_SPEC_PATHS).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from docbot_lib.core.errors import BadInput
from docbot_lib.k8s.manifests import CLUSTER_SCOPED, POD_SPEC_PATHS

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# what OpenShift assigns itself, and what restricted-v2 refuses
_FIXED_IDS = ("runAsUser", "runAsGroup", "fsGroup", "privileged")
# Milvus' metrics/health/REST port: never behind a Service (see the module docstring)
MILVUS_METRICS_PORT = 9091
# A cut-down `helm template` output of the Milvus chart (etcd, MinIO, Milvus, Pulsar's stray RBAC)
SAMPLE_RENDERED = Path(__file__).resolve().parents[1] / "data" / "milvus-helm-sample.yaml"
# What renders the chart: run it where `helm` is installed (a laptop; a workbench has none), from
# manifests/milvus/helm/, then upload rendered.yaml to the workbench and set HELM_RENDERED in notebook 04.
HELM_TEMPLATE_COMMAND = (
    "helm repo add milvus https://zilliztech.github.io/milvus-helm && helm repo update\n"
    "helm template milvus milvus/milvus --version 5.0.19 -f values-openshift.yaml > rendered.yaml"
)


@dataclass(frozen=True)
class Dropped:
    kind: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"dropped {self.kind}/{self.name}: {self.reason}"


def load_documents(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML (empty documents and `List` wrappers unfolded)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise BadInput(
            f"the rendered manifests are not valid YAML ({exc})", "pass the output of `helm template` unchanged"
        ) from None
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise BadInput(
                f"a document of the rendered manifests is not a Kubernetes object: {str(doc)[:80]}",
                "pass the output of `helm template` unchanged",
            )
        objects += doc.get("items", []) if doc["kind"] == "List" else [doc]
    return objects


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload (or a Pod's spec); None for other kinds."""
    path = POD_SPEC_PATHS.get(obj.get("kind", ""))
    if not path:
        return None
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    return spec if isinstance(spec, dict) else None


def restrict_pod(spec: dict[str, Any]) -> None:
    """Make one pod spec pass OpenShift's restricted-v2 SCC (in place)."""
    spec["securityContext"] = {}
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            sc = {k: v for k, v in (container.get("securityContext") or {}).items() if k not in _FIXED_IDS}
            container["securityContext"] = {**sc, **copy.deepcopy(RESTRICTED_CONTAINER)}


def _is_pulsar(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    names = [
        meta.get("name", ""),
        labels.get("app", ""),
        labels.get("app.kubernetes.io/name", ""),
        labels.get("component", ""),
        labels.get("release", ""),
    ]
    return any("pulsar" in str(n).lower() for n in names)


def _without_metrics_port(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The Service's ports without 9091 (as `port` or `targetPort`), in place; returns the removed ones."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    removed = [p for p in ports if MILVUS_METRICS_PORT in (p.get("port"), p.get("targetPort"))]
    if removed:
        spec["ports"] = [p for p in ports if p not in removed]
    return removed


def patch_rendered(
    text: str, *, pulsar_enabled: bool = False, echo=print
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """(objects to apply, objects dropped with the reason) from `helm template` output; each drop is echoed."""
    kept, dropped = [], []
    for obj in load_documents(text):
        kind, name = obj["kind"], (obj.get("metadata") or {}).get("name", "?")
        if kind in CLUSTER_SCOPED:
            dropped.append(
                Dropped(
                    kind,
                    name,
                    "cluster-scoped: a namespace admin cannot create it "
                    "(ask a cluster admin if the component really needs it)",
                )
            )
        elif not pulsar_enabled and _is_pulsar(obj):
            dropped.append(
                Dropped(kind, name, "Pulsar is disabled (pulsar/pulsarv3.enabled=false) but the chart rendered it")
            )
        else:
            obj = copy.deepcopy(obj)
            spec = pod_spec(obj)
            if spec is not None:
                restrict_pod(spec)
            removed = _without_metrics_port(obj) if kind == "Service" else []
            if not removed or obj["spec"]["ports"]:
                if removed:
                    echo(
                        f"removed port {MILVUS_METRICS_PORT} from Service/{name}: metrics and a REST API "
                        "without authentication (GHSA-7ppg-37fh-vcr6); probes use the container port"
                    )
                kept.append(obj)
                continue
            dropped.append(
                Dropped(
                    kind,
                    name,
                    f"its only port is {MILVUS_METRICS_PORT} (metrics and a REST API "
                    "without authentication, GHSA-7ppg-37fh-vcr6)",
                )
            )
        echo(str(dropped[-1]))
    return kept, dropped


def _object_yaml(obj: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100).splitlines(keepends=True)


def patch_diff(text: str, *, pulsar_enabled: bool = False, context: int = 2) -> str:
    """What `patch_rendered` changes in `helm template` output, as one unified diff per object ("-" as rendered,
    "+" as applied); a dropped object shows as removed, with the reason. Empty when nothing changes."""
    kept, dropped = patch_rendered(text, pulsar_enabled=pulsar_enabled, echo=lambda _line: None)
    after = {(o["kind"], (o.get("metadata") or {}).get("name", "?")): o for o in kept}
    why = {(d.kind, d.name): d.reason for d in dropped}
    parts = []
    for obj in load_documents(text):
        key = (obj["kind"], (obj.get("metadata") or {}).get("name", "?"))
        label = f"{key[0]}/{key[1]}"
        new = _object_yaml(after[key]) if key in after else []
        diff = "".join(
            difflib.unified_diff(
                _object_yaml(obj),
                new,
                f"{label} (helm template)",
                f"{label} (patched for OpenShift)" if new else f"{label} (dropped: {why.get(key, 'not applied')})",
                n=context,
            )
        )
        if diff:
            parts.append(diff)
    return "\n".join(parts)
