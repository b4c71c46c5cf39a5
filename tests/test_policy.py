"""Every manifest under manifests/ (this component's and any later one's) against the Kubernetes schemas and
OpenShift's restricted-v2 policy. Templated files (with ${...}) are rendered with defaults first.

Schema and base policy checks come from docbot_lib.k8s.manifests.problems (closed schemas: a misplaced key such as
`labels` outside `metadata` is an error; resources and the restricted container securityContext on every pod).
Checked here on top: no host namespaces or hostPath, no fixed UID/GID/fsGroup anywhere, pinned images, every
Route has a spec pointing at a Service with TLS.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.k8s.openshift import pod_spec

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
# Helm values files are chart input, not Kubernetes objects (tests/test_openshift.py checks them).
NOT_MANIFESTS = ("helm/",)


def _cluster_settings() -> Settings:
    # placeholders only: rendering needs values, nothing here is a real credential
    return Settings.load(
        stack="cluster",
        namespace="lab",
        s3_endpoint="https://s3.example.com",
        s3_access_key="AKIAEXAMPLE",
        s3_secret_key="example-secret-key",
        s3_bucket="models",
    )


def _serving(part: str) -> Callable[[], list[dict[str, Any]]]:
    def render() -> list[dict[str, Any]]:
        from docbot_lib.pipeline import serving

        settings = _cluster_settings()
        if part == "standalone":
            return serving.standalone_manifests(settings)
        if part == "standalone-secret":
            return [serving.standalone_secret(settings.model_copy(update={"llm_api_key": SecretStr("example-key")}))]
        if part == "token-auth":
            return serving.token_auth_manifests("mistral-7b-instruct")
        if part == "learner-networkpolicy":
            return [serving.learner_network_policy("mistral-7b-instruct", "mistral-7b-instruct-user1", "user1")]
        runtime, isvc, policy = serving.inference_service_manifests(settings)
        return {"servingruntime": [runtime], "inferenceservice": [isvc], "networkpolicy": [policy]}[part]

    return render


def _chatbot(part: str) -> Callable[[], list[dict[str, Any]]]:
    def render() -> list[dict[str, Any]]:
        from docbot_lib.pipeline import chatbot_deploy

        settings = _cluster_settings().model_copy(update={"api_key": SecretStr("example-api-key")})
        if part == "secret":
            return [chatbot_deploy.chatbot_secret(settings)]
        if part == "build":
            return chatbot_deploy.build_manifests("https://github.com/example/docbot.git")
        return chatbot_deploy.chatbot_manifests(settings)

    return render


def _attu_exposed() -> list[dict[str, Any]]:
    from docbot_lib.pipeline import milvus_deploy

    return milvus_deploy.attu_objects(expose=True, namespace="docbot", root_password_changed=True)


# templated file (relative to manifests/) -> how to render it with defaults
RENDERERS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "milvus/attu-oauth.yaml": _attu_exposed,
    "chatbot/chatbot.yaml": _chatbot("app"),
    "chatbot/chatbot-secret.yaml": _chatbot("secret"),
    "chatbot/networkpolicy.yaml": _chatbot("app"),
    "serving/vllm-networkpolicy.yaml": _serving("networkpolicy"),
    "chatbot/chatbot-build.yaml": _chatbot("build"),
    "serving/vllm-servingruntime.yaml": _serving("servingruntime"),
    "serving/vllm-inferenceservice.yaml": _serving("inferenceservice"),
    "serving/vllm-standalone.yaml": _serving("standalone"),
    "serving/vllm-standalone-secret.yaml": _serving("standalone-secret"),
    "serving/vllm-token-auth.yaml": _serving("token-auth"),
    "serving/vllm-learner-networkpolicy.yaml": _serving("learner-networkpolicy"),
}


def manifest_files() -> list[Path]:
    return sorted(
        p
        for p in MANIFESTS.rglob("*.y*ml")
        if not any(part in p.relative_to(MANIFESTS).as_posix() for part in NOT_MANIFESTS)
    )


def objects_of(path: Path) -> list[dict[str, Any]]:
    rel = path.relative_to(MANIFESTS).as_posix()
    if "${" in path.read_text():
        assert rel in RENDERERS, f"{rel} is templated: add a renderer with defaults to RENDERERS in {__file__}"
        return RENDERERS[rel]()
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


FILES = manifest_files()


def test_the_policy_sees_every_component():
    folders = {p.relative_to(MANIFESTS).parts[0] for p in FILES}
    assert {"milvus", "serving", "chatbot"} <= folders


def openshift_problems(obj: dict[str, Any]) -> list[str]:
    found = []
    kind = obj.get("kind")
    spec = pod_spec(obj)
    if spec is not None:
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                found.append(f"pod uses {key}")
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                found.append(f"volume {volume.get('name')} is a hostPath")
        pod_sc = spec.get("securityContext") or {}
        found += [f"pod securityContext fixes {k}" for k in ("runAsUser", "runAsGroup", "fsGroup") if k in pod_sc]
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                sc = c.get("securityContext") or {}
                found += [f"{c.get('name')}: securityContext fixes {k}" for k in ("runAsUser", "runAsGroup") if k in sc]
                if sc.get("privileged"):
                    found.append(f"{c.get('name')}: privileged")
                image = c.get("image", "")
                tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
                if "@sha256:" not in image and (not tag or tag == "latest"):
                    found.append(f"{c.get('name')}: image {image!r} is not pinned")
    if kind == "Route":
        route = obj.get("spec")
        if not isinstance(route, dict) or (route.get("to") or {}).get("kind") != "Service":
            found.append("a Route needs a spec with `to: {kind: Service, name: ...}`")
        elif (route.get("tls") or {}).get("insecureEdgeTerminationPolicy") not in ("Redirect", "None"):
            found.append("a Route should redirect http to https (tls.insecureEdgeTerminationPolicy: Redirect)")
    if not isinstance((obj.get("metadata") or {}).get("labels"), dict):
        found.append("no labels under metadata")
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_manifest_passes_schema_and_openshift_policy(path):
    objects = objects_of(path)
    assert objects, f"{path} holds no object"
    report = []
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        report += [f"{name}: {p}" for p in manifests.problems(obj) + openshift_problems(obj)]
    assert not report, "\n".join(report)


def test_the_policy_catches_what_openshift_refuses():
    """A pod with every fault: the checks above must name each one (else they could not fail)."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "hostNetwork": True,
                    "securityContext": {"fsGroup": 0, "runAsUser": 0},
                    "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                    "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
                },
            },
        },
    }
    text = "\n".join(manifests.problems(bad) + openshift_problems(bad))
    for fault in (
        "hostNetwork",
        "hostPath",
        "fixes fsGroup",
        "privileged",
        "not pinned",
        "resources lack",
        "drop must include ALL",
        "no labels under metadata",
    ):
        assert fault in text, fault
    route = {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "r", "labels": {}}}
    assert "needs a spec" in "\n".join(openshift_problems(route))
    misplaced = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "labels": {"a": "b"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert any("labels" in p for p in manifests.problems(misplaced))


# -- NetworkPolicies: every component's Services have one --------------------------------------------------


def _milvus(part: str) -> Callable[[], list[dict[str, Any]]]:
    def render() -> list[dict[str, Any]]:
        from docbot_lib.pipeline import milvus_deploy

        return milvus_deploy.standalone_objects() if part == "standalone" else milvus_deploy.attu_objects()

    return render


# each component's objects, as its library function returns them
COMPONENTS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "milvus standalone": _milvus("standalone"),
    "attu": _milvus("attu"),
    "attu exposed": _attu_exposed,
    "vllm standalone": _serving("standalone"),
    "chatbot": _chatbot("app"),
}


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_every_service_of_a_component_has_a_network_policy(component):
    """Each component's objects carry NetworkPolicies that select the pods behind each of its Services
    (the Helm release: tests/test_openshift.py; KServe's predictor, which has no Service here: test_serving)."""
    objects = COMPONENTS[component]()
    assert any(o["kind"] == "Service" for o in objects)
    assert any(o["kind"] == "NetworkPolicy" for o in objects)
    assert manifests.services_without_network_policy(objects) == []


def _deployment(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": {**labels, "tier": "web"}}, "spec": {"containers": []}},
        },
    }


def _service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80}]},
    }


def _policy(pod_selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": []},
    }


def test_the_network_policy_check_can_fail():
    app = {"app": "a"}
    assert manifests.services_without_network_policy([_deployment(app), _service("s", app)]) == ["Service/s"]
    # a policy for other pods does not count; one on the pod template's own labels does
    other = _policy({"matchLabels": {"app": "b"}})
    assert manifests.services_without_network_policy([_deployment(app), _service("s", app), other]) == ["Service/s"]
    tier = _policy({"matchLabels": {"tier": "web"}})
    assert manifests.services_without_network_policy([_deployment(app), _service("s", app), tier]) == []
    # matchExpressions, and {} (every pod)
    assert (
        manifests.services_without_network_policy(
            [_service("s", app), _policy({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]})]
        )
        == []
    )
    assert manifests.services_without_network_policy(
        [_service("s", app), _policy({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})]
    ) == ["Service/s"]
    assert manifests.services_without_network_policy([_service("s", app), _policy({})]) == []


def test_network_policies_are_checked_against_their_schema():
    good = _policy({"matchLabels": {"app": "a"}})
    good["metadata"]["labels"] = {"app": "a"}
    assert manifests.problems(good) == []
    misspelt = copy.deepcopy(good)
    misspelt["spec"]["podSelectr"] = misspelt["spec"].pop("podSelector")
    assert any("podSelectr" in p for p in manifests.problems(misspelt))
    bad_port = copy.deepcopy(good)
    bad_port["spec"]["ingress"] = [{"ports": [{"port": {"number": 80}}]}]
    assert manifests.problems(bad_port)


# -- container images: every base pinned ----------------------------------------------------------------------

IMAGES = MANIFESTS.parent / "images"


def unpinned_bases(text: str) -> list[str]:
    """The base images of a Containerfile that are not pinned (no tag, :latest, no digest), ARG defaults resolved."""
    import re

    args: dict[str, str] = {}
    stages: set[str] = set()
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0].upper() == "ARG" and "=" in words[1]:
            name, default = words[1].split("=", 1)
            args[name] = default.strip("\"'")
        elif len(words) >= 2 and words[0].upper() == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], ""), image)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1])
            if image in stages or image == "scratch":
                continue
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                found.append(image or "(empty: an ARG without a default)")
    return found


def containerfiles() -> list[Path]:
    return sorted(
        p for p in IMAGES.rglob("*") if p.is_file() and p.name.split(".")[0] in ("Containerfile", "Dockerfile")
    )


@pytest.mark.parametrize("path", containerfiles(), ids=lambda p: p.relative_to(IMAGES).as_posix())
def test_container_base_images_are_pinned(path):
    assert "FROM" in path.read_text()
    assert unpinned_bases(path.read_text()) == []


def test_the_base_image_check_can_fail():
    assert containerfiles(), "no Containerfile under images/"
    assert unpinned_bases("ARG BASE=registry.access.redhat.com/ubi9/python-311:latest\nFROM ${BASE}\n") == [
        "registry.access.redhat.com/ubi9/python-311:latest"
    ]
    assert unpinned_bases("FROM registry.access.redhat.com/ubi9/python-311\n") == [
        "registry.access.redhat.com/ubi9/python-311"
    ]
    assert unpinned_bases("ARG BASE\nFROM $BASE\n") == ["(empty: an ARG without a default)"]
    assert (
        unpinned_bases(
            "FROM --platform=linux/amd64 quay.io/a/b:1.2 AS build\nFROM build\n"
            "FROM localhost:5000/x@sha256:" + "0" * 64 + "\n"
        )
        == []
    )
    assert unpinned_bases("FROM localhost:5000/x\n") == ["localhost:5000/x"]
