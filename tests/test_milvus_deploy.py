"""Milvus manifests applied through the real `kubernetes` client to the Kubernetes API stand-in (tests/kubeapi.py)."""
from __future__ import annotations

import pytest
from kubeapi import KubeApi

from docbot_lib import manifests, milvus_deploy, vectordb
from docbot_lib.errors import DocbotError

NS = "docbot"


def test_standalone_is_one_pod_with_auth_on_and_pinned_images():
    objects = milvus_deploy.standalone_objects()
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == 1 and "StatefulSet" not in kinds
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert "authorizationEnabled: true" in config["data"]["user.yaml"]
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("docker.io/milvusdb/milvus:v2.5.")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ETCD_USE_EMBED"] == "true" and env["COMMON_STORAGETYPE"] == "local"
    assert {"mountPath": "/milvus/configs/user.yaml", "name": "user-config", "subPath": "user.yaml",
            "readOnly": True} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
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
            "ConfigMap/milvus-user-config created", "PersistentVolumeClaim/milvus-data created",
            "Deployment/milvus created", "Service/milvus created", "Deployment/attu created",
            "Service/attu created", "Route/attu created"]
        said = []
        milvus_deploy.wait_ready(api, NS, objects, timeout=30, interval=0.05, echo=said.append)
        assert sorted(said) == ["Deployment/attu: ready", "Deployment/milvus: ready"]
        route = kube.get("apis/route.openshift.io/v1", NS, "routes", "attu")
        assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
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
    from docbot_lib.chatbot_deploy import chatbot_manifests
    from docbot_lib.settings import Settings

    tokens = {"DOCBOT_MILVUS_ROOT_TOKEN": "root:r00t-value", "DOCBOT_MILVUS_TOKEN": "docbot_ingest:wr1ter-value",
              "DOCBOT_MILVUS_APP_TOKEN": "docbot_app:re4der-value"}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in vectordb.credentials_secrets(tokens)}
    assert secrets == {"docbot-milvus-root": {"DOCBOT_MILVUS_ROOT_TOKEN": "root:r00t-value"},
                       "docbot-milvus-writer": {"DOCBOT_MILVUS_TOKEN": "docbot_ingest:wr1ter-value"},
                       "docbot-milvus-reader": {"DOCBOT_MILVUS_APP_TOKEN": "docbot_app:re4der-value"}}
    manifests.validate(vectordb.credentials_secrets(tokens))
    with pytest.raises(DocbotError, match="no Secret holds AWS_SECRET_ACCESS_KEY"):
        vectordb.credentials_secrets({"AWS_SECRET_ACCESS_KEY": "x"})
    # every workload Doc Bot ships: which Secrets do its pods read?
    workloads = milvus_deploy.standalone_objects() + milvus_deploy.attu_objects() + \
        chatbot_manifests(Settings.load(stack="cluster", namespace="lab"))
    read = {ref["name"] for obj in workloads for ref in _secret_refs(obj)}
    assert "docbot-milvus-root" not in read and "docbot-milvus-writer" not in read
    assert "docbot-milvus-reader" in read  # the chatbot


def _secret_refs(obj):
    from docbot_lib.openshift import pod_spec

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
