"""Milvus on the cluster: the manifests Doc Bot ships (standalone in one pod, Attu), and Helm's output patched.

`standalone_objects()` / `attu_objects()` read manifests/milvus/ (plain YAML that `oc apply -f` takes too);
`helm_objects(rendered)` patches `helm template` output for OpenShift (docbot_lib.openshift);
`summary(objects)` is the short listing a notebook prints instead of the whole YAML.
Applying goes through docbot_lib.manifests.apply (server-side dry run first).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from docbot_lib.manifests import wait_ready  # noqa: F401 - moved to manifests (the chatbot waits too); old name kept
from docbot_lib.openshift import Dropped, load_documents, patch_rendered
from docbot_lib.settings import project_dir

MILVUS_DIR = project_dir() / "manifests" / "milvus"
STANDALONE = MILVUS_DIR / "milvus-standalone.yaml"
ATTU = MILVUS_DIR / "attu.yaml"
HELM_VALUES = MILVUS_DIR / "helm" / "values-openshift.yaml"
# what the app and the notebooks reach inside the namespace
SERVICE_URI = "http://milvus:19530"
MILVUS_PORT = 19530


def service_uri(objects: list[dict[str, Any]], namespace: str) -> str:
    """The in-cluster URI of the Service among `objects` that serves Milvus' gRPC port (19530)."""
    for obj in objects:
        ports = ((obj.get("spec") or {}).get("ports") or []) if obj.get("kind") == "Service" else []
        if any(p.get("port") == MILVUS_PORT for p in ports):
            return f"http://{obj['metadata']['name']}.{namespace}.svc.cluster.local:{MILVUS_PORT}"
    from docbot_lib.errors import DocbotError

    raise DocbotError(f"no Service with port {MILVUS_PORT} among the Milvus objects",
                      "deploy Milvus' own Service (standalone_objects(), or the whole Helm output)")


def deploy(settings, objects: list[dict[str, Any]], namespace: str | None = None, api_client=None,
           timeout: float = 600, echo=print):
    """Apply the Milvus objects, wait until they are ready, and record Milvus' URI for the next notebooks:
    the one the settings name (a MILVUS_URI parameter, DOCBOT_MILVUS_URI), else the in-cluster address of the
    Service just deployed. Returns the settings with it."""
    from docbot_lib import manifests

    api = api_client or manifests.kube_api_client()
    namespace = namespace or manifests.current_namespace(settings)
    for applied in manifests.apply(objects, namespace, api):
        echo(str(applied))
    wait_ready(api, namespace, objects, timeout=timeout, echo=echo)
    uri = settings.milvus_uri or service_uri(objects, namespace)
    echo(f"recorded for the next notebooks: Milvus at {uri}")
    return settings.record(milvus_uri=uri, namespace=namespace)


def apply_credentials(settings, tokens: dict[str, str], api_client=None, echo=print) -> None:
    """The generated Milvus credentials as Secrets in the lab's namespace, one per identity
    (`vectordb.credentials_secrets`): the chatbot's Deployment reads only the reader's, ingestion the
    writer's; root's is read by the day-2 steps alone."""
    from docbot_lib import manifests
    from docbot_lib.vectordb import credentials_secrets

    api = api_client or manifests.kube_api_client()
    for applied in manifests.apply(credentials_secrets(tokens), manifests.current_namespace(settings), api):
        echo(str(applied))


def _load(path: Path) -> list[dict[str, Any]]:
    return load_documents(path.read_text())


def standalone_objects() -> list[dict[str, Any]]:
    """Milvus standalone in one pod: user.yaml ConfigMap (auth on), PVC, Deployment, Service."""
    return _load(STANDALONE)


def attu_objects() -> list[dict[str, Any]]:
    """Attu: Deployment, Service and an edge-TLS Route, pointing at the `milvus` Service."""
    return _load(ATTU)


def helm_objects(rendered: str, *, pulsar_enabled: bool = False,
                 echo=print) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """`helm template` output (standalone or cluster) made applicable on OpenShift by a namespace admin."""
    return patch_rendered(rendered, pulsar_enabled=pulsar_enabled, echo=echo)


def images(objects: list[dict[str, Any]]) -> list[str]:
    """Every container image the objects run (to check the pins)."""
    from docbot_lib.openshift import pod_spec

    found = []
    for obj in objects:
        spec = pod_spec(obj) or {}
        for group in ("initContainers", "containers"):
            found += [c.get("image", "") for c in spec.get(group) or []]
    return found


def summary(objects: list[dict[str, Any]]) -> str:
    """One line per object (kind/name), then the count per kind."""
    lines = [f"  {o['kind']}/{(o.get('metadata') or {}).get('name', '?')}" for o in objects]
    counts = Counter(o["kind"] for o in objects)
    lines.append(f"{len(objects)} object(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(lines)
