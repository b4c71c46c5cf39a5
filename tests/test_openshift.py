"""OpenShift patches of `helm template` output, on a fixture shaped like the Milvus chart's (standalone)."""

from __future__ import annotations

import pytest
import yaml

from docbot_lib.core.errors import DocbotError
from docbot_lib.k8s import manifests
from docbot_lib.k8s.openshift import SAMPLE_RENDERED, patch_diff, patch_rendered, pod_spec
from docbot_lib.pipeline.milvus_deploy import HELM_VALUES, helm_objects

# What `helm template milvus milvus/milvus -f values-openshift.yaml` renders, cut down (shipped for notebook 04):
# etcd (bitnami-style StatefulSet with fixed UIDs), MinIO (a Deployment with fsGroup/runAsUser), Milvus standalone,
# and the stray cluster RBAC of a Pulsar that is disabled.
RENDERED = SAMPLE_RENDERED.read_text()


def test_rendered_fixture_is_what_openshift_refuses():
    """The fixture really has the problems (otherwise the patch tests prove nothing)."""
    raw = [d for d in yaml.safe_load_all(RENDERED) if d]
    assert any("fsGroup" in (pod_spec(o) or {}).get("securityContext", {}) for o in raw)
    assert any(o["kind"] == "ClusterRole" for o in raw)
    assert any(p for o in raw for p in manifests.problems(o) if "runAsUser" in p or "drop must include ALL" in p)


def test_patch_makes_every_pod_restricted_and_valid():
    printed = []
    kept, dropped = patch_rendered(RENDERED, echo=printed.append)
    names = {(o["kind"], o["metadata"]["name"]) for o in kept}
    assert names == {
        ("StatefulSet", "milvus-etcd"),
        ("Deployment", "milvus-minio"),
        ("Deployment", "milvus-standalone"),
        ("Service", "milvus"),
        ("Service", "milvus-etcd"),
        ("Service", "milvus-etcd-headless"),
        ("Service", "milvus-minio"),
    }
    for obj in kept:
        assert manifests.problems(obj) == [], obj["metadata"]["name"]
        spec = pod_spec(obj)
        if spec is not None:
            assert spec["securityContext"] == {}
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c["securityContext"]
                assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
                assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
                assert "runAsUser" not in sc
    # the MinIO credentials still come from the existing Secret
    minio = next(o for o in kept if o["metadata"]["name"] == "milvus-minio")
    env = minio["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "milvus-minio"
    # dropped, each with its reason, and said out loud
    assert {(d.kind, d.name) for d in dropped} == {
        ("ClusterRole", "milvus-pulsarv3-psp"),
        ("ConfigMap", "milvus-pulsarv3-zookeeper"),
        ("Service", "milvus-datanode"),
    }
    assert any("cluster-scoped" in line and "ClusterRole/milvus-pulsarv3-psp" in line for line in printed)
    assert any("Pulsar is disabled" in line for line in printed)


def test_pulsar_kept_when_enabled_but_cluster_rbac_still_dropped():
    kept, dropped = helm_objects(RENDERED, pulsar_enabled=True, echo=lambda _l: None)
    assert ("ConfigMap", "milvus-pulsarv3-zookeeper") in {(o["kind"], o["metadata"]["name"]) for o in kept}
    assert [d.kind for d in dropped] == ["ClusterRole", "Service"]


def test_port_9091_comes_off_every_service():
    """9091 answers REST /api/v1 and /expr without authentication (GHSA-7ppg-37fh-vcr6): no Service may carry it,
    the app's Service keeps 19530, a metrics-only Service goes, and both are said out loud."""
    raw = {o["metadata"]["name"]: o for o in yaml.safe_load_all(RENDERED) if o and o["kind"] == "Service"}
    assert 9091 in [p["port"] for p in raw["milvus"]["spec"]["ports"]]  # the fixture has the problem
    printed = []
    kept, dropped = patch_rendered(RENDERED, echo=printed.append)
    services = {o["metadata"]["name"]: o for o in kept if o["kind"] == "Service"}
    assert [p["port"] for p in services["milvus"]["spec"]["ports"]] == [19530]
    assert "milvus-datanode" not in services
    assert any("9091" in d.reason for d in dropped if d.name == "milvus-datanode")
    assert any("removed port 9091 from Service/milvus" in line for line in printed)
    for service in services.values():
        for port in service["spec"]["ports"]:
            assert 9091 not in (port.get("port"), port.get("targetPort"))


def test_patch_does_not_change_its_input():
    before = RENDERED
    patch_rendered(RENDERED, echo=lambda _l: None)
    assert RENDERED == before


@pytest.mark.parametrize("text", ["a: [unclosed", "- just\n- a list\n"])
def test_not_helm_output_is_a_clear_error(text):
    with pytest.raises(DocbotError, match="helm template"):
        patch_rendered(text, echo=lambda _l: None)


def test_helm_values_pin_images_and_keep_auth_on_without_default_credentials():
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert values["cluster"]["enabled"] is False
    assert values["pulsar"]["enabled"] is False and values["pulsarv3"]["enabled"] is False
    assert values["metrics"]["enabled"] is False  # else the chart puts 9091 on the main Service
    assert yaml.safe_load(values["extraConfigFiles"]["user.yaml"])["common"]["security"]["authorizationEnabled"]
    assert values["image"]["all"]["tag"] == "v2.6.15"
    assert values["standalone"]["messageQueue"] == "rocksmq"  # must not change across the 2.5 -> 2.6 upgrade
    assert values["minio"]["existingSecret"] and not values["minio"]["accessKey"] and not values["minio"]["secretKey"]
    # the images the chart 5.0.19 pins (the 2023-03 MinIO and etcd 3.5.18 were older releases)
    assert values["etcd"]["image"] == {"repository": "milvusdb/etcd", "tag": "3.5.25-r1"}
    assert values["minio"]["image"] == {"repository": "minio/minio", "tag": "RELEASE.2024-12-18T13-15-44Z"}


def _minio_key_refs(env: list[dict]) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in env or []
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }


def test_milvus_itself_reads_the_minio_keys_from_the_secret_never_minioadmin():
    """The chart writes minio.accessKey/secretKey (default minioadmin) into Milvus' own config and ignores
    minio.existingSecret there: every Milvus component needs the Secret's keys as environment variables."""
    wanted = {
        "MINIO_ACCESS_KEY_ID": ("milvus-minio", "accesskey"),
        "MINIO_SECRET_ACCESS_KEY": ("milvus-minio", "secretkey"),
    }
    standalone = yaml.safe_load(HELM_VALUES.read_text())
    assert standalone["minio"]["existingSecret"] == "milvus-minio"
    assert _minio_key_refs(standalone["standalone"]["extraEnv"]) == wanted
    cluster = yaml.safe_load((HELM_VALUES.parent / "values-cluster.yaml").read_text())
    for component in ("proxy", "mixCoordinator", "queryNode", "dataNode", "streamingNode"):
        assert _minio_key_refs(cluster[component]["extraEnv"]) == wanted, component

    def strings(node):
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        return [s for v in node for s in strings(v)] if isinstance(node, list) else [node]

    for path in HELM_VALUES.parent.glob("*.yaml"):
        assert "minioadmin" not in strings(yaml.safe_load(path.read_text())), path.name


def test_helm_release_gets_network_policies_for_every_service():
    """The release's pods talk to each other (Milvus -> etcd, MinIO); only Doc Bot's clients reach 19530; pods
    whose only Service was dropped (9091) are covered too."""
    from docbot_lib.pipeline import milvus_deploy

    objects, _dropped = helm_objects(RENDERED, echo=lambda _l: None)
    plain, _ = patch_rendered(RENDERED, echo=lambda _l: None)
    assert manifests.services_without_network_policy(plain)  # without the policies the check fails
    assert manifests.services_without_network_policy(objects) == []
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    manifests.validate(list(policies.values()))
    own = [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "milvus"}}},
        {"podSelector": {"matchLabels": {"release": "milvus"}}},
    ]
    assert policies["milvus-release"]["spec"]["podSelector"] == own[0]["podSelector"]
    assert policies["milvus-release-subcharts"]["spec"]["podSelector"] == own[1]["podSelector"]
    for name in ("milvus-release", "milvus-release-subcharts"):
        assert policies[name]["spec"]["ingress"] == [{"from": own}]  # all ports, release pods only
    clients = policies["milvus-clients"]["spec"]
    assert clients["podSelector"]["matchLabels"]["component"] == "standalone"
    assert clients["ingress"] == [{"from": milvus_deploy.client_peers(), "ports": [{"protocol": "TCP", "port": 19530}]}]
    assert len(policies) == 3
    # every pod of the release is selected by a policy: the dropped datanode Service's pods, etcd's, MinIO's
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    datanode = {"app.kubernetes.io/name": "milvus", "app.kubernetes.io/instance": "milvus", "component": "datanode"}
    for labels in pods + [datanode]:
        assert any(manifests._selects(p["spec"]["podSelector"], labels) for p in policies.values()), labels


def test_helm_objects_need_the_milvus_service():
    without = "\n---\n".join(doc for doc in RENDERED.split("\n---\n") if "port: 19530" not in doc)
    with pytest.raises(DocbotError, match="no Milvus Service with port 19530"):
        helm_objects(without, echo=lambda _l: None)


def test_patch_diff_shows_each_change_and_each_drop_with_its_reason():
    diff = patch_diff(RENDERED)
    assert "--- StatefulSet/milvus-etcd (helm template)" in diff
    assert "+++ StatefulSet/milvus-etcd (patched for OpenShift)" in diff
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert "fsGroup: 1001" in removed and "runAsUser: 1001" in removed  # etcd's fixed ids go
    assert "- ALL" in added and "type: RuntimeDefault" in added and "securityContext: {}" in added
    assert "(dropped: cluster-scoped" in diff and "kind: ClusterRole" in removed
    assert "port: 9091" in removed and "port: 19530" not in removed  # the metrics port comes off, the API stays


def test_patch_diff_is_empty_for_what_needs_no_patch():
    clean = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
    assert patch_diff(clean) == ""
