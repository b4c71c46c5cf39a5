"""Milvus manifests applied through the real `kubernetes` client to the Kubernetes API stand-in (tests/kubeapi.py)."""

from __future__ import annotations

import json

import pytest
import yaml
from kubeapi import KubeApi

from docbot_lib.clients.milvus import parse_version
from docbot_lib.core.errors import DocbotError
from docbot_lib.k8s import manifests
from docbot_lib.pipeline import milvus_deploy, vectordb

NS = "docbot"
# The first release of each line without the published advisories (GHSA-mhjq-8c7m-3f7p / CVE-2025-64513,
# GHSA-7ppg-37fh-vcr6 / CVE-2026-26190); a line not listed has no fixed release.
FIXED = {(2, 5): (2, 5, 27), (2, 6): (2, 6, 10)}


def _milvus_tags() -> dict[str, str]:
    """Every Milvus server tag Doc Bot ships: the one-pod manifest and the Helm values."""
    tags = {
        f"standalone {i}": image.rsplit(":", 1)[1]
        for i, image in enumerate(milvus_deploy.images(milvus_deploy.standalone_objects()))
        if "/milvus:" in image
    }
    for path in sorted((milvus_deploy.MILVUS_DIR / "helm").glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        tag = ((values.get("image") or {}).get("all") or {}).get("tag")
        if tag:
            tags[path.name] = tag
    return tags


def test_every_milvus_image_has_the_advisories_fixed():
    tags = _milvus_tags()
    assert "values-openshift.yaml" in tags and any(k.startswith("standalone") for k in tags)
    for where, tag in tags.items():
        version = parse_version(tag)
        assert version[:2] in FIXED and version >= FIXED[version[:2]], f"{where}: Milvus {tag} has published advisories"
    # one version everywhere: the chart's default, which the standalone manifest follows
    assert set(tags.values()) == {"v2.6.15"}


def test_standalone_is_one_pod_with_auth_on_and_pinned_images():
    objects = milvus_deploy.standalone_objects()
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == 1 and "StatefulSet" not in kinds
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert "authorizationEnabled: true" in config["data"]["user.yaml"]
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "docker.io/milvusdb/milvus:v2.6.15"
    assert container["command"] == ["milvus", "run", "standalone"]
    # the message queue is pinned (it must never change across an upgrade) and lives on the PVC
    user = yaml.safe_load(config["data"]["user.yaml"])
    assert user["mq"] == {"type": "rocksmq"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ETCD_USE_EMBED"] == "true" and env["COMMON_STORAGETYPE"] == "local"
    assert {
        "mountPath": "/milvus/configs/user.yaml",
        "name": "user-config",
        "subPath": "user.yaml",
        "readOnly": True,
    } in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # 9091 serves the probes from the container port, and no Service carries it (GHSA-7ppg-37fh-vcr6)
    assert {"name": "metrics", "containerPort": 9091} in container["ports"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(19530, "grpc")]
    template = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    assert "prometheus.io/port" not in template["metadata"].get("annotations", {})
    attu = next(o for o in milvus_deploy.attu_objects() if o["kind"] == "Deployment")
    attu_env = attu["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MILVUS_URL", "value": "milvus:19530"} in attu_env


def test_apply_and_wait_until_ready():
    objects = milvus_deploy.standalone_objects() + milvus_deploy.attu_objects()
    with KubeApi(namespaces={NS}) as kube:
        polls = {"n": 0}

        def controller(k, request):
            # the Deployments become ready after a few status reads, like pods starting
            if request.method == "GET" and request.path.endswith("/status"):
                polls["n"] += 1
                if polls["n"] >= 3:
                    for name in ("milvus", "attu"):
                        if k.get("apis/apps/v1", NS, "deployments", name):
                            k.set_status("apis/apps/v1", NS, "deployments", name, {"readyReplicas": 1})

        kube.hooks.append(controller)
        api = kube.api_client()
        applied = manifests.apply(objects, NS, api)
        assert [str(a) for a in applied] == [
            "ConfigMap/milvus-user-config created",
            "PersistentVolumeClaim/milvus-data created",
            "Deployment/milvus created",
            "Service/milvus created",
            "NetworkPolicy/milvus created",
            "Deployment/attu created",
            "Service/attu created",
            "NetworkPolicy/attu created",
        ]
        said = []
        milvus_deploy.wait_ready(api, NS, objects, timeout=30, interval=0.05, echo=said.append)
        assert sorted(said) == ["Deployment/attu: ready", "Deployment/milvus: ready"]
        # no public Route by default; the policy lands where the API serves NetworkPolicies (plural -ies)
        assert kube.get("apis/route.openshift.io/v1", NS, "routes", "attu") is None
        assert kube.get("apis/networking.k8s.io/v1", NS, "networkpolicies", "attu")["spec"]["ingress"] == []
        # the credentials Secrets go the same way; their values never appear in the printed YAML
        secrets = vectordb.credentials_secrets({"DOCBOT_MILVUS_TOKEN": "docbot_ingest:s3cret-value"})
        manifests.apply(secrets, NS, api)
        assert kube.get("api/v1", NS, "secrets", "docbot-milvus-writer")["data"]
        assert "s3cret-value" not in manifests.to_yaml(secrets)


def test_wait_ready_names_what_never_became_ready():
    objects = milvus_deploy.standalone_objects()
    with KubeApi(namespaces={NS}) as kube:
        api = kube.api_client()
        manifests.apply(objects, NS, api)
        with pytest.raises(DocbotError) as err:
            milvus_deploy.wait_ready(api, NS, objects, timeout=0.3, interval=0.05, echo=lambda _m: None)
    assert "Deployment/milvus" in err.value.problem and "oc get pods -n docbot" in err.value.fix


def test_each_identity_has_its_own_secret_and_no_deployment_mounts_roots():
    """Root's token in a Secret of its own that no workload reads; the chatbot's holds the reader's token only."""
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline.chatbot_deploy import chatbot_manifests

    tokens = {
        "DOCBOT_MILVUS_ROOT_TOKEN": "root:r00t-value",
        "DOCBOT_MILVUS_TOKEN": "docbot_ingest:wr1ter-value",
        "DOCBOT_MILVUS_APP_TOKEN": "docbot_app:re4der-value",
    }
    secrets = {s["metadata"]["name"]: s["stringData"] for s in vectordb.credentials_secrets(tokens)}
    assert secrets == {
        "docbot-milvus-root": {"DOCBOT_MILVUS_ROOT_TOKEN": "root:r00t-value"},
        "docbot-milvus-writer": {"DOCBOT_MILVUS_TOKEN": "docbot_ingest:wr1ter-value"},
        "docbot-milvus-reader": {"DOCBOT_MILVUS_APP_TOKEN": "docbot_app:re4der-value"},
    }
    manifests.validate(vectordb.credentials_secrets(tokens))
    with pytest.raises(DocbotError, match="no Secret holds AWS_SECRET_ACCESS_KEY"):
        vectordb.credentials_secrets({"AWS_SECRET_ACCESS_KEY": "x"})
    # every workload Doc Bot ships: which Secrets do its pods read?
    workloads = (
        milvus_deploy.standalone_objects()
        + milvus_deploy.attu_objects()
        + chatbot_manifests(Settings.load(stack="cluster", namespace="lab"))
    )
    read = {ref["name"] for obj in workloads for ref in _secret_refs(obj)}
    assert "docbot-milvus-root" not in read and "docbot-milvus-writer" not in read
    assert "docbot-milvus-reader" in read  # the chatbot


def _secret_refs(obj):
    from docbot_lib.k8s.openshift import pod_spec

    spec = pod_spec(obj) or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                yield ref
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                yield source["secretRef"]
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            yield {"name": volume["secret"]["secretName"]}


# -- Attu: not exposed by default; exposed only behind the OAuth proxy, after root's password changed ------------


def test_attu_is_not_exposed_by_default():
    objects = milvus_deploy.attu_objects()
    manifests.validate(objects)
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "NetworkPolicy"]
    policy = objects[2]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "attu"}
    assert policy["spec"]["ingress"] == []  # nobody; `oc port-forward` enters through the kubelet


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"namespace": "team-a"}, "default password"),
        ({"namespace": "team-a", "root_password_changed": False}, "default password"),
        ({"root_password_changed": True}, "needs the namespace"),
        ({"namespace": "Team A", "root_password_changed": True}, "needs the namespace"),
    ],
)
def test_exposing_attu_needs_root_password_changed_and_a_namespace(kwargs, message):
    with pytest.raises(DocbotError, match=message) as err:
        milvus_deploy.attu_objects(expose=True, **kwargs)
    assert "port-forward" in err.value.fix or "namespace" in err.value.fix


def test_exposed_attu_goes_through_the_oauth_proxy_only():
    objects = milvus_deploy.attu_objects(expose=True, namespace="team-a", root_password_changed=True)
    manifests.validate(objects)
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert list(by) == [
        ("ServiceAccount", "attu-proxy"),
        ("Secret", "attu-proxy"),
        ("Deployment", "attu"),
        ("Service", "attu"),
        ("Service", "attu-proxy"),
        ("Route", "attu"),
        ("NetworkPolicy", "attu"),
    ]
    route = by[("Route", "attu")]["spec"]
    proxy_service = by[("Service", "attu-proxy")]
    assert route["to"]["name"] == "attu-proxy" and route["port"]["targetPort"] == "https"
    assert route["tls"] == {"termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect"}
    # the service CA signs the proxy's certificate, which the pod mounts
    cert = proxy_service["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"]
    pod = by[("Deployment", "attu")]["spec"]["template"]["spec"]
    assert {"name": "proxy-tls", "secret": {"secretName": cert}} in pod["volumes"]
    # the service account is the OAuth client, redirecting to the Route
    sa = by[("ServiceAccount", "attu-proxy")]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    redirect = json.loads(sa["metadata"]["annotations"]["serviceaccounts.openshift.io/oauth-redirectreference.primary"])
    assert redirect["reference"] == {"kind": "Route", "name": "attu"}
    attu, proxy = pod["containers"]
    assert proxy["name"] == "oauth-proxy"
    assert proxy["image"] == "registry.redhat.io/openshift4/ose-oauth-proxy-rhel9:v4.18"
    args = dict(a.split("=", 1) for a in proxy["args"])
    assert args["--upstream"] == "http://localhost:3000" and args["--https-address"] == ":8443"
    assert args["--openshift-service-account"] == "attu-proxy"
    assert json.loads(args["--openshift-sar"]) == {
        "namespace": "team-a",
        "resource": "services",
        "resourceName": "attu",
        "verb": "get",
    }
    assert args["--cookie-secret-file"].startswith("/etc/proxy/secrets/")
    # Attu itself is the same container as unexposed (the two files cannot drift apart)
    plain = next(o for o in milvus_deploy.attu_objects() if o["kind"] == "Deployment")
    assert attu == plain["spec"]["template"]["spec"]["containers"][0]
    # only the router, only to the proxy's port
    policy = by[("NetworkPolicy", "attu")]["spec"]
    assert policy["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}}],
            "ports": [{"protocol": "TCP", "port": 8443}],
        }
    ]
    # the cookie key: random per render, 32 bytes, masked when shown
    cookie = by[("Secret", "attu-proxy")]["stringData"]["session_secret"]
    again = milvus_deploy.attu_objects(expose=True, namespace="team-a", root_password_changed=True)
    assert (
        len(cookie) == 32 and cookie != next(o for o in again if o["kind"] == "Secret")["stringData"]["session_secret"]
    )
    assert cookie not in manifests.to_yaml(objects)


def test_milvus_admits_only_its_clients_on_19530():
    objects = milvus_deploy.standalone_objects()
    manifests.validate(objects)
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 19530}]  # not 9091
    peers = rule["from"]
    workbench = {"matchExpressions": [{"key": "notebook-name", "operator": "Exists"}]}
    chatbot = {"matchLabels": {"app.kubernetes.io/component": "chatbot"}}
    ingest = {"matchLabels": {"app.kubernetes.io/component": "ingest"}}
    learners = {"matchLabels": {"app.kubernetes.io/part-of": "docbot"}}
    assert {"podSelector": workbench} in peers and {"podSelector": chatbot} in peers
    assert {"podSelector": ingest} in peers
    attu = {"matchLabels": {"app.kubernetes.io/name": "attu"}}
    assert {"podSelector": attu} in peers
    for pod in (workbench, chatbot, ingest):
        assert {"namespaceSelector": learners, "podSelector": pod} in peers
    # no peer admits a whole namespace or everything (a namespaceSelector always comes with a podSelector)
    assert all("podSelector" in peer and peer["podSelector"] for peer in peers)
    # the chatbot's and Attu's pods really carry the labels admitted here
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline.chatbot_deploy import chatbot_manifests

    chatbot_pod = next(
        o for o in chatbot_manifests(Settings.load(stack="cluster", namespace="lab")) if o["kind"] == "Deployment"
    )["spec"]["template"]["metadata"]["labels"]
    attu_pod = next(o for o in milvus_deploy.attu_objects() if o["kind"] == "Deployment")["spec"]["template"][
        "metadata"
    ]["labels"]
    assert manifests._selects(chatbot, chatbot_pod) and manifests._selects(attu, attu_pod)
    assert manifests.services_without_network_policy(objects) == []


def test_notebook_04_exposes_attu_only_after_the_day_2_step():
    from docbot_lib.core.settings import Settings

    settings = Settings.load(stack="cluster", namespace=NS)
    with KubeApi(namespaces={NS}) as kube:
        with pytest.raises(DocbotError, match="default password"):
            milvus_deploy.expose_attu(settings, root_password_changed=False, api_client=kube.api_client())
        assert kube.get("apis/route.openshift.io/v1", NS, "routes", "attu") is None  # nothing applied
        said = []
        url = milvus_deploy.expose_attu(
            settings, root_password_changed=True, api_client=kube.api_client(), echo=said.append
        )
        route = kube.get("apis/route.openshift.io/v1", NS, "routes", "attu")
    assert route["spec"]["tls"]["termination"] == "reencrypt"
    assert "Route/attu created" in said and url.startswith(("https://", "(the router"))
