"""Milvus on the cluster: the manifests Doc Bot ships (standalone in one pod, Attu), and Helm's output patched.

`standalone_objects()` / `attu_objects()` read manifests/milvus/ (plain YAML that `oc apply -f` takes too);
`attu_objects(expose=True, ...)` adds a public Route through an OpenShift OAuth proxy, only once root's
default password is gone;
`helm_objects(rendered)` patches `helm template` output for OpenShift (docbot_lib.k8s.openshift) and adds the
release's NetworkPolicies; every component comes with NetworkPolicies (manifests/milvus/networkpolicy.yaml);
`summary(objects)` is the short listing a notebook prints instead of the whole YAML.
Applying goes through docbot_lib.k8s.manifests.apply (server-side dry run first).

Layer: pipeline, step `milvus_deploy`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from docbot_lib.clients import kube
from docbot_lib.core.envfile import project_dir
from docbot_lib.core.errors import BadInput, ConfigError
from docbot_lib.k8s.manifests import wait_ready  # noqa: F401 - moved to manifests (the chatbot waits too); old name kept
from docbot_lib.k8s.openshift import Dropped, load_documents, patch_rendered

MILVUS_DIR = project_dir() / "manifests" / "milvus"
STANDALONE = MILVUS_DIR / "milvus-standalone.yaml"
ATTU = MILVUS_DIR / "attu.yaml"
ATTU_OAUTH = MILVUS_DIR / "attu-oauth.yaml"
NETWORK_POLICY = MILVUS_DIR / "networkpolicy.yaml"
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

    raise BadInput(
        f"no Service with port {MILVUS_PORT} among the Milvus objects",
        "deploy Milvus' own Service (standalone_objects(), or the whole Helm output)",
    )


def deploy(
    settings,
    objects: list[dict[str, Any]],
    namespace: str | None = None,
    api_client=None,
    timeout: float = 600,
    echo=print,
):
    """Apply the Milvus objects, wait until they are ready, and record Milvus' URI for the next notebooks:
    the one the settings name (a MILVUS_URI parameter, DOCBOT_MILVUS_URI), else the in-cluster address of the
    Service just deployed. Returns the settings with it."""
    from docbot_lib.k8s import manifests

    api = api_client or kube.kube_api_client()
    namespace = namespace or kube.current_namespace(settings)
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
    from docbot_lib.k8s import manifests
    from docbot_lib.pipeline.vectordb import credentials_secrets

    api = api_client or kube.kube_api_client()
    for applied in manifests.apply(credentials_secrets(tokens), kube.current_namespace(settings), api):
        echo(str(applied))


def _load(path: Path) -> list[dict[str, Any]]:
    return load_documents(path.read_text())


def standalone_objects() -> list[dict[str, Any]]:
    """Milvus standalone in one pod: user.yaml ConfigMap (auth on), PVC, Deployment, Service (19530 only), and
    the NetworkPolicy that admits only Doc Bot's clients."""
    return _load(STANDALONE) + _load(NETWORK_POLICY)


def client_peers() -> list[dict[str, Any]]:
    """Who may reach Milvus' 19530 (workbenches, chatbot, ingestion, Attu; the same in a class's learner
    projects): the `from` list of manifests/milvus/networkpolicy.yaml, the one place it is written."""
    (policy,) = _load(NETWORK_POLICY)
    return policy["spec"]["ingress"][0]["from"]


def release_network_policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NetworkPolicies for a Helm release: every pod of the release accepts connections from the release's own
    pods only (Milvus, etcd, MinIO, Pulsar talk to each other; 9091 of every Milvus component stays closed to
    the rest of the cluster), and Milvus' 19530 also from `client_peers()`.

    The release is named by the Service with port 19530 (its selector's app.kubernetes.io/instance). The
    chart's subcharts label pods with app.kubernetes.io/instance (Milvus, etcd) or release (MinIO, Pulsar):
    one policy for each label covers every pod, with a Service or without."""

    services = [o for o in objects if o["kind"] == "Service" and (o.get("spec") or {}).get("selector")]
    main = next((s for s in services if any(p.get("port") == MILVUS_PORT for p in s["spec"].get("ports") or [])), None)
    release = ((main or {}).get("spec", {}).get("selector") or {}).get("app.kubernetes.io/instance")
    if main is None or not release:
        raise BadInput(
            f"no Milvus Service with port {MILVUS_PORT} and an app.kubernetes.io/instance selector in the Helm output",
            "pass the whole, unchanged output of `helm template`",
        )
    labels = [{"app.kubernetes.io/instance": release}, {"release": release}]
    own = [{"podSelector": {"matchLabels": pods}} for pods in labels]

    def policy(name: str, pods: dict[str, str], rule: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/instance": release, "app.kubernetes.io/part-of": "docbot"},
            },
            "spec": {"podSelector": {"matchLabels": dict(pods)}, "policyTypes": ["Ingress"], "ingress": [rule]},
        }

    return [
        policy(f"{release}-release", labels[0], {"from": own}),
        policy(f"{release}-release-subcharts", labels[1], {"from": own}),
        policy(
            f"{release}-clients",
            main["spec"]["selector"],
            {"from": client_peers(), "ports": [{"protocol": "TCP", "port": MILVUS_PORT}]},
        ),
    ]


def attu_objects(
    expose: bool = False, *, namespace: str | None = None, root_password_changed: bool = False
) -> list[dict[str, Any]]:
    """Attu, pointing at the `milvus` Service: by default a Deployment, a Service and a NetworkPolicy that lets
    nobody in (reach it with `oc port-forward svc/attu 3000:3000`).

    `expose=True` puts it on a public Route behind an OpenShift OAuth proxy: reencrypt TLS, and only cluster
    users who may `get` the Service attu in `namespace` (required) get through. Anyone who gets through sees
    Attu's Milvus login, so exposing needs `root_password_changed=True`: pass it only after root's default
    password is gone (vectordb.secure() returned, or your lab's administrator secured this Milvus).
    The result holds a Secret (the proxy's cookie key): show it with `manifests.to_yaml()`.
    """
    objects = _load(ATTU)
    if not expose:
        return objects
    import secrets

    from docbot_lib.core.names import DNS_LABEL
    from docbot_lib.k8s import manifests

    if not root_password_changed:
        raise ConfigError(
            "Attu is not exposed while Milvus' root may still have its default password (root/Milvus "
            "is public knowledge, and Attu's login page would take it)",
            "run the day-2 step first (vectordb.secure, notebook 04), then call "
            "attu_objects(expose=True, namespace=..., root_password_changed=True); "
            "until then use `oc port-forward svc/attu 3000:3000`",
        )
    if not namespace or not DNS_LABEL.fullmatch(namespace):
        raise BadInput(
            f"exposing Attu needs the namespace it runs in, got {namespace!r}",
            "pass namespace= your project (kube.current_namespace(settings)): the proxy admits "
            "only users who may get the Service attu there",
        )
    # 32 random bytes as 32 hex characters: an AES-256 key for the proxy's session cookie
    extra = manifests.render(ATTU_OAUTH, {"namespace": namespace, "cookie_secret": secrets.token_hex(16)})
    replaced = {(o["kind"], o["metadata"]["name"]) for o in extra}
    kept = [o for o in objects if (o["kind"], o["metadata"]["name"]) not in replaced]
    # the service account and the cookie Secret before the Deployment that uses them
    first = [o for o in extra if o["kind"] in ("ServiceAccount", "Secret")]
    return (
        first
        + [o for o in extra if o["kind"] == "Deployment"]
        + kept
        + [o for o in extra if o["kind"] not in ("ServiceAccount", "Secret", "Deployment")]
    )


def expose_attu(settings, root_password_changed: bool, api_client=None, echo=print) -> str:
    """Notebook 04's optional step: apply `attu_objects(expose=True, ...)` in the lab's namespace (refused while
    root may still have its default password) and return the Route's https URL."""
    from docbot_lib.k8s import manifests

    api = api_client or kube.kube_api_client()
    namespace = kube.current_namespace(settings)
    objects = attu_objects(expose=True, namespace=namespace, root_password_changed=root_password_changed)
    manifests.validate(objects)
    for applied in manifests.apply(objects, namespace, api):
        echo(str(applied))
    route = kube.kube_request(api, "GET", f"/apis/route.openshift.io/v1/namespaces/{namespace}/routes/attu")
    host = (route.get("spec") or {}).get("host") or next(
        (i.get("host") for i in (route.get("status") or {}).get("ingress") or [] if i.get("host")), None
    )
    url = f"https://{host}" if host else "(the router has not given the Route a host yet: `oc get route attu`)"
    echo(f"Attu: {url} (OpenShift login, then a Milvus user: {settings.names.app_user} to browse)")
    return url


def helm_objects(
    rendered: str, *, pulsar_enabled: bool = False, echo=print
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """`helm template` output (standalone or cluster) made applicable on OpenShift by a namespace admin, plus
    the release's NetworkPolicies (`release_network_policies`)."""
    objects, dropped = patch_rendered(rendered, pulsar_enabled=pulsar_enabled, echo=echo)
    return objects + release_network_policies(objects), dropped


def images(objects: list[dict[str, Any]]) -> list[str]:
    """Every container image the objects run (to check the pins)."""
    from docbot_lib.k8s.openshift import pod_spec

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
