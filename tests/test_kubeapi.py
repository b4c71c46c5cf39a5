"""The Kubernetes API stand-in (tests/kubeapi.py) behaves like the API server where tests rely on it,
as seen through the real `kubernetes` client."""

from __future__ import annotations

import pytest
from kubeapi import KubeApi
from kubernetes import client
from kubernetes.client.rest import ApiException

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


def isvc(name: str, uri: str) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": {"app": "docbot"}},
        "spec": {"predictor": {"model": {"storageUri": uri, "args": ["--dtype=half"]}}},
    }


def test_custom_objects_create_patch_status_list_delete():
    with KubeApi() as kube:
        api = client.CustomObjectsApi(kube.api_client())
        created = api.create_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], isvc("mistral", "s3://m/a"))
        assert created["metadata"]["generation"] == 1 and created["metadata"]["namespace"] == "docbot"
        with pytest.raises(ApiException) as exists:
            api.create_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], isvc("mistral", "s3://m/a"))
        assert exists.value.status == 409 and '"reason": "AlreadyExists"' in exists.value.body

        patched = api.patch_namespaced_custom_object(
            *ISVC[:2], "docbot", ISVC[2], "mistral", {"spec": {"predictor": {"model": {"storageUri": "s3://m/b"}}}}
        )
        model = patched["spec"]["predictor"]["model"]
        assert model == {"storageUri": "s3://m/b", "args": ["--dtype=half"]}  # merged, not replaced
        assert patched["metadata"]["generation"] == 2

        kube.set_status(
            "apis/serving.kserve.io/v1beta1",
            "docbot",
            "inferenceservices",
            "mistral",
            {"conditions": [{"type": "Ready", "status": "True"}], "url": "https://mistral.example"},
        )
        got = api.get_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], "mistral")
        assert got["status"]["url"] == "https://mistral.example"

        api.create_namespaced_custom_object(
            *ISVC[:2], "docbot", ISVC[2], {**isvc("other", "s3://m/c"), "metadata": {"name": "other"}}
        )
        listed = api.list_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], label_selector="app=docbot")
        assert listed["kind"] == "InferenceServiceList" and [i["metadata"]["name"] for i in listed["items"]] == [
            "mistral"
        ]

        api.delete_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], "mistral")
        with pytest.raises(ApiException) as gone:
            api.get_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], "mistral")
        assert gone.value.status == 404
        assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in kube.requests][-2:] == [
            ("DELETE", "mistral"),
            ("GET", "mistral"),
        ]


def test_put_with_a_stale_resource_version_conflicts_and_status_survives_a_replace():
    with KubeApi() as kube:
        core = client.CoreV1Api(kube.api_client())
        first = core.create_namespaced_config_map(
            "docbot", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
        )
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"a": "2"},
            "metadata": {"name": "c", "resourceVersion": first.metadata.resource_version},
        }
        assert core.replace_namespaced_config_map("c", "docbot", body).data == {"a": "2"}
        with pytest.raises(ApiException) as stale:  # the same resourceVersion again: now stale
            core.replace_namespaced_config_map("c", "docbot", body)
        assert stale.value.status == 409 and '"reason": "Conflict"' in stale.value.body

        api = client.CustomObjectsApi(kube.api_client())
        api.create_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], isvc("m", "s3://m/a"))
        kube.set_status("apis/serving.kserve.io/v1beta1", "docbot", "inferenceservices", "m", {"url": "u"})
        replaced = api.replace_namespaced_custom_object(*ISVC[:2], "docbot", ISVC[2], "m", isvc("m", "s3://m/z"))
        assert replaced["status"] == {"url": "u"} and replaced["spec"]["predictor"]["model"]["storageUri"] == "s3://m/z"


def test_json_patch_and_cluster_scoped_objects():
    with KubeApi() as kube:
        core = client.CoreV1Api(kube.api_client())
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "docbot"}})
        assert core.read_namespace("docbot").metadata.name == "docbot"
        core.create_namespaced_config_map(
            "docbot", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
        )
        patched = core.patch_namespaced_config_map(
            "c", "docbot", [{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}]
        )
        assert patched.data == {"b": "2"}
        assert kube.requests[-1].content_type == "application/json-patch+json"
