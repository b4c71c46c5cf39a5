"""OpenShift patches of `helm template` output, on a fixture shaped like the Milvus chart's (standalone)."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from docbot_lib import manifests
from docbot_lib.errors import DocbotError
from docbot_lib.milvus_deploy import HELM_VALUES, helm_objects
from docbot_lib.openshift import patch_rendered, pod_spec

# What `helm template milvus milvus/milvus -f values-openshift.yaml` renders, cut down: etcd (bitnami-style
# StatefulSet with fixed UIDs), MinIO (a Deployment with fsGroup/runAsUser), Milvus standalone, and the
# stray cluster RBAC of a Pulsar that is disabled.
RENDERED = textwrap.dedent("""\
    ---
    # Source: milvus/charts/etcd/templates/statefulset.yaml
    apiVersion: apps/v1
    kind: StatefulSet
    metadata:
      name: milvus-etcd
      labels: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
    spec:
      replicas: 1
      serviceName: milvus-etcd-headless
      selector:
        matchLabels: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
      template:
        metadata:
          labels: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
        spec:
          securityContext: {fsGroup: 1001}
          containers:
            - name: etcd
              image: docker.io/milvusdb/etcd:3.5.25-r1
              securityContext: {runAsNonRoot: true, runAsUser: 1001}
              resources:
                requests: {cpu: 100m, memory: 256Mi}
                limits: {memory: 1Gi}
              ports: [{name: client, containerPort: 2379}]
    ---
    # Source: milvus/charts/minio/templates/deployment.yaml
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: milvus-minio
      labels: {app: minio, release: milvus}
    spec:
      selector:
        matchLabels: {app: minio, release: milvus}
      template:
        metadata:
          labels: {app: minio, release: milvus}
        spec:
          securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000}
          initContainers:
            - name: init
              image: docker.io/minio/minio:RELEASE.2024-12-18T13-15-44Z
              command: [sh, -c, "true"]
              resources:
                requests: {cpu: 10m, memory: 16Mi}
                limits: {memory: 64Mi}
          containers:
            - name: minio
              image: docker.io/minio/minio:RELEASE.2024-12-18T13-15-44Z
              command: [/bin/sh, -ce, "/usr/bin/docker-entrypoint.sh minio server /export"]
              env:
                - name: MINIO_ACCESS_KEY
                  valueFrom: {secretKeyRef: {name: milvus-minio, key: accesskey}}
              resources:
                requests: {cpu: 100m, memory: 512Mi}
                limits: {memory: 2Gi}
    ---
    # Source: milvus/templates/standalone-deployment.yaml
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: milvus-standalone
      labels: {app.kubernetes.io/name: milvus, component: standalone}
    spec:
      selector:
        matchLabels: {app.kubernetes.io/name: milvus, app.kubernetes.io/instance: milvus, component: standalone}
      template:
        metadata:
          labels: {app.kubernetes.io/name: milvus, app.kubernetes.io/instance: milvus, component: standalone}
        spec:
          containers:
            - name: standalone
              image: milvusdb/milvus:v2.6.15
              args: [milvus, run, standalone]
              resources:
                requests: {cpu: 500m, memory: 2Gi}
                limits: {cpu: "2", memory: 4Gi}
    ---
    # Source: milvus/charts/pulsarv3/templates/psp-role.yaml
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata:
      name: milvus-pulsarv3-psp
    rules:
      - apiGroups: [policy]
        resources: [podsecuritypolicies]
        verbs: [use]
    ---
    # Source: milvus/charts/pulsarv3/templates/zookeeper-configmap.yaml
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: milvus-pulsarv3-zookeeper
      labels: {app: pulsarv3, component: zookeeper}
    data: {PULSAR_MEM: "-Xms256m"}
    ---
    # Source: milvus/templates/service.yaml (metrics.enabled: true puts 9091 beside 19530)
    apiVersion: v1
    kind: Service
    metadata:
      name: milvus
      labels: {app.kubernetes.io/name: milvus, app.kubernetes.io/instance: milvus}
    spec:
      selector: {app.kubernetes.io/name: milvus, app.kubernetes.io/instance: milvus, component: standalone}
      ports:
        - {name: milvus, port: 19530, targetPort: milvus}
        - {name: metrics, port: 9091, targetPort: metrics}
    ---
    # Source: milvus/templates/datanode-svc.yaml (cluster mode: a Service for metrics only)
    apiVersion: v1
    kind: Service
    metadata:
      name: milvus-datanode
      labels: {app.kubernetes.io/name: milvus, component: datanode}
    spec:
      selector: {app.kubernetes.io/name: milvus, app.kubernetes.io/instance: milvus, component: datanode}
      ports: [{name: metrics, port: 9091, targetPort: metrics}]
    ---
    # Source: milvus/charts/etcd/templates/svc.yaml and svc-headless.yaml
    apiVersion: v1
    kind: Service
    metadata:
      name: milvus-etcd
      labels: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
    spec:
      selector: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
      ports: [{name: client, port: 2379, targetPort: client}]
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: milvus-etcd-headless
      labels: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
    spec:
      clusterIP: None
      selector: {app.kubernetes.io/name: etcd, app.kubernetes.io/instance: milvus}
      ports: [{name: peer, port: 2380, targetPort: peer}]
    ---
    # Source: milvus/charts/minio/templates/service.yaml
    apiVersion: v1
    kind: Service
    metadata:
      name: milvus-minio
      labels: {app: minio, release: milvus}
    spec:
      selector: {app: minio, release: milvus}
      ports: [{name: http, port: 9000, targetPort: 9000}]
    """)


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
    assert names == {("StatefulSet", "milvus-etcd"), ("Deployment", "milvus-minio"),
                     ("Deployment", "milvus-standalone"), ("Service", "milvus"), ("Service", "milvus-etcd"),
                     ("Service", "milvus-etcd-headless"), ("Service", "milvus-minio")}
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
    assert {(d.kind, d.name) for d in dropped} == {("ClusterRole", "milvus-pulsarv3-psp"),
                                                   ("ConfigMap", "milvus-pulsarv3-zookeeper"),
                                                   ("Service", "milvus-datanode")}
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
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in env or [] if "secretKeyRef" in (e.get("valueFrom") or {})}


def test_milvus_itself_reads_the_minio_keys_from_the_secret_never_minioadmin():
    """The chart writes minio.accessKey/secretKey (default minioadmin) into Milvus' own config and ignores
    minio.existingSecret there: every Milvus component needs the Secret's keys as environment variables."""
    wanted = {"MINIO_ACCESS_KEY_ID": ("milvus-minio", "accesskey"),
              "MINIO_SECRET_ACCESS_KEY": ("milvus-minio", "secretkey")}
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
    from docbot_lib import milvus_deploy

    objects, _dropped = helm_objects(RENDERED, echo=lambda _l: None)
    plain, _ = patch_rendered(RENDERED, echo=lambda _l: None)
    assert manifests.services_without_network_policy(plain)  # without the policies the check fails
    assert manifests.services_without_network_policy(objects) == []
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    manifests.validate(list(policies.values()))
    own = [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "milvus"}}},
           {"podSelector": {"matchLabels": {"release": "milvus"}}}]
    assert policies["milvus-release"]["spec"]["podSelector"] == own[0]["podSelector"]
    assert policies["milvus-release-subcharts"]["spec"]["podSelector"] == own[1]["podSelector"]
    for name in ("milvus-release", "milvus-release-subcharts"):
        assert policies[name]["spec"]["ingress"] == [{"from": own}]  # all ports, release pods only
    clients = policies["milvus-clients"]["spec"]
    assert clients["podSelector"]["matchLabels"]["component"] == "standalone"
    assert clients["ingress"] == [{"from": milvus_deploy.client_peers(),
                                   "ports": [{"protocol": "TCP", "port": 19530}]}]
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
