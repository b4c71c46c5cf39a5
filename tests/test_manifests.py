"""docbot_lib.k8s.manifests: rendering, offline validation (official schemas + policy), apply against a stand-in API."""

from __future__ import annotations

import base64
import copy

import pytest
import yaml
from kubeapi import KubeApi

from docbot_lib.clients import kube as kube_client
from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline import serving

SECRET = 'p@ss"w\\ord/+$x'  # quotes, backslash, dollar: must survive rendering unchanged


@pytest.fixture
def cluster_settings() -> Settings:
    return Settings.load(
        stack="cluster",
        s3_endpoint="https://minio-api.apps.example.com",
        s3_access_key="docbot",
        s3_secret_key=SECRET,
        s3_bucket="models",
    )


@pytest.fixture
def serving_objects(cluster_settings) -> list[dict]:
    return (
        serving.inference_service_manifests(cluster_settings)
        + serving.standalone_manifests(cluster_settings)
        + [serving.data_connection(cluster_settings)]
    )


def by_kind(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


# -- rendering -------------------------------------------------------------------------------------


def test_render_fills_placeholders_and_escapes_values(tmp_path):
    tpl = tmp_path / "cm.yaml"
    tpl.write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "${name}"\ndata:\n  text: "${text}"\n  size: "${size}"\n'
    )
    text = 'a "quoted" \\ value\nwith a newline: and: colons'
    (obj,) = manifests.render(tpl, {"name": "demo", "text": text, "size": 3})
    assert obj["data"] == {"text": text, "size": "3"}


def test_render_names_missing_and_unused_values(tmp_path):
    tpl = tmp_path / "t.yaml"
    tpl.write_text('kind: ConfigMap\nmetadata: {name: "${name}"}\n')
    with pytest.raises(DocbotError, match=r"needs values for \['name'\]"):
        manifests.render(tpl, {})
    with pytest.raises(DocbotError, match=r"no placeholder for \['nme'\]"):
        manifests.render(tpl, {"name": "x", "nme": "x"})
    with pytest.raises(DocbotError, match="not found"):
        manifests.render("serving/no-such-template.yaml", {})
    with pytest.raises(DocbotError, match="is a dict"):
        manifests.render(tpl, {"name": {"a": 1}})


def test_to_yaml_masks_secret_values(serving_objects):
    text = manifests.to_yaml(serving_objects)
    assert SECRET not in text and "AWS_SECRET_ACCESS_KEY: '******'" in text
    assert len(list(yaml.safe_load_all(text))) == len(serving_objects)
    revealed = manifests.to_yaml(serving_objects, reveal_secrets=True)
    assert by_kind(list(yaml.safe_load_all(revealed)), "Secret")["stringData"]["AWS_SECRET_ACCESS_KEY"] == SECRET


def test_to_yaml_shows_only_the_keys_said_to_be_public(serving_objects):
    secret = by_kind(serving_objects, "Secret")
    values = secret["stringData"]
    shown = yaml.safe_load(manifests.to_yaml([secret], public_keys={"AWS_S3_BUCKET", "NOT_IN_IT"}))["stringData"]
    assert shown == {k: v if k == "AWS_S3_BUCKET" else "******" for k, v in values.items()}
    assert SECRET not in manifests.to_yaml([secret], public_keys={"AWS_S3_BUCKET"})
    config = {"kind": "ConfigMap", "data": {"AWS_SECRET_ACCESS_KEY": "not a Secret"}}
    assert yaml.safe_load(manifests.to_yaml([config])) == config  # only a Secret's values are masked


# -- validation ------------------------------------------------------------------------------------


def test_serving_manifests_pass_the_official_schemas_and_policy(serving_objects):
    kinds = sorted(o["kind"] for o in serving_objects)
    assert kinds == [
        "Deployment",
        "InferenceService",
        "NetworkPolicy",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Route",
        "Secret",
        "Service",
        "ServingRuntime",
    ]
    for obj in serving_objects:
        assert manifests.problems(obj) == [], manifests._describe(obj)
    manifests.validate(serving_objects)  # no error


def test_schemas_catch_misplaced_labels_and_unknown_fields(serving_objects):
    runtime = copy.deepcopy(by_kind(serving_objects, "ServingRuntime"))
    runtime["labels"] = runtime["metadata"].pop("labels")  # a classic: labels beside metadata
    isvc = copy.deepcopy(by_kind(serving_objects, "InferenceService"))
    isvc["spec"]["predictor"]["model"]["storge"] = isvc["spec"]["predictor"]["model"].pop("storage")
    isvc["metadata"]["labels"]["opendatahub.io/dashboard"] = True  # YAML true, not "true"
    deployment = copy.deepcopy(by_kind(serving_objects, "Deployment"))
    deployment["spec"]["replicas"] = "one"

    assert manifests.problems(runtime) == [
        "(top level): Additional properties are not allowed ('labels' was unexpected)"
    ]
    found = manifests.problems(isvc)
    assert any("spec.predictor.model" in p and "'storge' was unexpected" in p for p in found)
    assert any(p.startswith("metadata.labels.opendatahub.io/dashboard: True is not of type") for p in found)
    assert any(p.startswith("spec.replicas: 'one' is not of type") for p in manifests.problems(deployment))


def test_every_route_has_a_spec_with_tls(serving_objects):
    route = by_kind(serving_objects, "Route")
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert route["spec"]["port"] == {"targetPort": "http"}
    bare = {k: v for k, v in route.items() if k != "spec"}
    assert "(top level): 'spec' is a required property" in manifests.problems(bare)
    plain = copy.deepcopy(route)
    del plain["spec"]["tls"]
    assert [p for p in manifests.problems(plain) if p.startswith("spec.tls:")]


def test_policy_requires_resources_and_restricted_security_context(serving_objects):
    deployment = copy.deepcopy(by_kind(serving_objects, "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    del pod["containers"][0]["resources"]
    pod["containers"][0]["securityContext"] = {"runAsUser": 0}
    del pod["securityContext"]
    found = manifests.problems(deployment)
    for expected in (
        "containers[vllm]: resources lack requests.cpu, requests.memory, limits.memory",
        "containers[vllm]: securityContext.allowPrivilegeEscalation must be false",
        "containers[vllm]: securityContext.capabilities.drop must include ALL",
        "containers[vllm]: runAsNonRoot must be true (container or pod securityContext)",
        "containers[vllm]: seccompProfile.type must be RuntimeDefault (container or pod securityContext)",
        "containers[vllm]: no fixed runAsUser (OpenShift assigns a UID from the namespace's range)",
    ):
        assert expected in found
    # the init container keeps its own settings and inherits the pod's (now removed) ones
    assert "initContainers[model-download]: runAsNonRoot must be true (container or pod securityContext)" in found


def test_validate_lists_every_violation_and_never_a_secret(serving_objects):
    secret = copy.deepcopy(by_kind(serving_objects, "Secret"))
    secret["stringData"]["AWS_SECRET_ACCESS_KEY"] = [SECRET]  # wrong type; the message must not quote it
    route = {k: v for k, v in by_kind(serving_objects, "Route").items() if k != "spec"}
    with pytest.raises(DocbotError) as err:
        manifests.validate([secret, route])
    message = str(err.value)
    assert "Secret/aws-connection-models: stringData.AWS_SECRET_ACCESS_KEY: fails the 'type' rule" in message
    assert "Route/mistral-7b-instruct: (top level): 'spec' is a required property" in message
    assert SECRET not in message and "p@ss" not in message


def test_unknown_kind_and_missing_schemas_are_clear(serving_objects, tmp_path):
    with pytest.raises(DocbotError, match="add its CRD JSON schema"):
        manifests.validate({"apiVersion": "milvus.io/v1beta1", "kind": "Milvus", "metadata": {"name": "m"}})
    with pytest.raises(DocbotError, match="CRD schema of InferenceService .* is not at"):
        manifests.validate(by_kind(serving_objects, "InferenceService"), schemas_dir=tmp_path)


# -- apply -----------------------------------------------------------------------------------------


def test_apply_creates_then_replaces(serving_objects):
    with KubeApi(token="t0ken", namespaces={"docbot"}) as kube:
        api = kube.api_client()
        first = manifests.apply(serving_objects, "docbot", api)
        assert [str(a) for a in first] == [
            "ServingRuntime/mistral-7b-instruct created",
            "InferenceService/mistral-7b-instruct created",
            "NetworkPolicy/mistral-7b-instruct-predictor created",
            "PersistentVolumeClaim/mistral-7b-instruct-model-cache created",
            "Deployment/mistral-7b-instruct created",
            "Service/mistral-7b-instruct created",
            "Route/mistral-7b-instruct created",
            "NetworkPolicy/mistral-7b-instruct created",
            "Secret/aws-connection-models created",
        ]
        isvc = kube.get("apis/serving.kserve.io/v1beta1", "docbot", "inferenceservices", "mistral-7b-instruct")
        assert isvc["spec"] == by_kind(serving_objects, "InferenceService")["spec"]
        secret = kube.get("api/v1", "docbot", "secrets", "aws-connection-models")
        assert base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == SECRET
        assert kube.get("apis/route.openshift.io/v1", "docbot", "routes", "mistral-7b-instruct")
        # every write was dry-run first, and asked for strict field validation
        posts = [r for r in kube.requests if r.method == "POST"]
        assert [r.query.get("dryRun") for r in posts] == [["All"]] * 9 + [None] * 9
        assert all(r.query["fieldValidation"] == ["Strict"] for r in posts)

        # the cluster filled in the Service's IP; a second apply must keep it (it is immutable)
        service = kube.objects[("api/v1", "docbot", "services", "mistral-7b-instruct")]
        service["spec"]["clusterIP"] = "172.30.0.10"
        changed = copy.deepcopy(serving_objects)
        by_kind(changed, "InferenceService")["spec"]["predictor"]["maxReplicas"] = 2
        second = manifests.apply(changed, "docbot", api)
        assert {a.action for a in second if a.kind != "PersistentVolumeClaim"} == {"replaced"}
        assert [a.action for a in second if a.kind == "PersistentVolumeClaim"] == ["kept"]
        isvc = kube.get("apis/serving.kserve.io/v1beta1", "docbot", "inferenceservices", "mistral-7b-instruct")
        assert isvc["spec"]["predictor"]["maxReplicas"] == 2 and isvc["metadata"]["generation"] == 2
        assert kube.get("api/v1", "docbot", "services", "mistral-7b-instruct")["spec"]["clusterIP"] == "172.30.0.10"


def test_a_refused_object_leaves_nothing_applied(serving_objects):
    with KubeApi(forbid={("create", "inferenceservices")}) as kube:
        with pytest.raises(DocbotError) as err:
            manifests.apply(serving_objects, "docbot", kube.api_client())
        assert "may not create inferenceservices (serving.kserve.io) in namespace docbot (HTTP 403)" in str(err.value)
        assert "edit" in err.value.fix
        assert kube.objects == {}  # the ServingRuntime before it was only dry-run


def test_apply_explains_a_missing_namespace_and_bad_credentials(serving_objects):
    with KubeApi(token="right", namespaces={"docbot"}) as kube:
        with pytest.raises(DocbotError, match=r"no ServingRuntime/mistral-7b-instruct in namespace nope, or") as err:
            manifests.apply(serving_objects, "nope", kube.api_client())
        assert "oc new-project nope" in err.value.fix
        with pytest.raises(DocbotError, match="HTTP 401") as err:
            manifests.apply(serving_objects, "docbot", kube.api_client(token="wrong"))
        assert "oc login" in err.value.fix
        assert kube.objects == {}


def test_apply_explains_an_unreachable_cluster(serving_objects):
    kube = KubeApi().start()
    api = kube.api_client()
    kube.stop()
    with pytest.raises(DocbotError, match="does not answer"):
        manifests.apply(serving_objects[:1], "docbot", api)


def test_kube_api_client_from_a_kubeconfig(serving_objects, tmp_path):
    with KubeApi(token="t0ken", namespaces={"docbot"}) as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "config", "me", "t0ken", "docbot")
        api = kube_client.kube_api_client(kubeconfig)
        assert [a.action for a in manifests.apply(serving_objects[:1], "docbot", api)] == ["created"]
    with pytest.raises(DocbotError, match="no usable Kubernetes credentials") as err:
        kube_client.kube_api_client(tmp_path / "missing")
    assert "oc login" in err.value.fix


def test_the_learners_login_comes_before_the_pods_service_account(tmp_path, monkeypatch):
    """In a workbench, `oc login` writes ~/.kube/config: Doc Bot acts as the learner, not as the pod."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "namespace").write_text("from-the-pod\n")
    (sa / "token").write_text("pod-token")
    monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT_DIR", sa)
    with KubeApi(token="t0ken", user="alice") as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "config", "alice", "t0ken", "mine")
        monkeypatch.setattr(kube_client, "_default_kubeconfig", lambda: kubeconfig)
        api = kube_client.kube_api_client()
        assert kube_client.identity(api) == f"alice (your login in {kubeconfig})"
    # the workbench's own project comes first; then the login's; DOCBOT_NAMESPACE beats both
    assert kube_client.current_namespace() == "from-the-pod"
    (sa / "namespace").unlink()
    assert kube_client.current_namespace() == "mine"
    assert kube_client.current_namespace(Settings.load(namespace="given")) == "given"
    kubeconfig.unlink()
    with pytest.raises(DocbotError, match="no namespace") as err:
        kube_client.current_namespace()
    assert "NAMESPACE" in err.value.fix


def test_a_refusal_names_who_lacked_which_right_and_how_to_grant_it(serving_objects):
    with KubeApi(
        namespaces={"docbot"}, forbid={("create", "inferenceservices")}, user="system:serviceaccount:docbot:workbench"
    ) as kube:
        with pytest.raises(DocbotError) as err:
            manifests.apply(serving_objects, "docbot", kube.api_client())
    problem, fix = err.value.problem, err.value.fix
    assert "system:serviceaccount:docbot:workbench" in problem
    assert "may not create inferenceservices (serving.kserve.io) in namespace docbot" in problem
    assert "oc adm policy add-role-to-user edit system:serviceaccount:docbot:workbench -n docbot" in fix
    assert "oc login" in fix


def test_the_environment_check_says_who_may_not_deploy_and_how_to_grant_it(tmp_path, monkeypatch):
    from docbot_lib.checks import check_kubernetes

    with KubeApi(token="t0ken", user="bob", forbid={("create", "inferenceservices")}) as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "config", "bob", "t0ken", "bobs")
        monkeypatch.setattr(kube_client, "_default_kubeconfig", lambda: kubeconfig)
        monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT_DIR", tmp_path / "not-a-pod")
        with pytest.raises(DocbotError) as err:
            check_kubernetes(Settings.load(stack="cluster"))
        assert (
            err.value.problem == f"bob (your login in {kubeconfig}) may not create inferenceservices in project 'bobs'"
        )
        assert "oc adm policy add-role-to-user edit bob -n bobs" in err.value.fix
        kube.forbid.clear()
        assert "may deploy into project 'bobs'" in check_kubernetes(Settings.load(stack="cluster"))


def test_one_rule_for_kubernetes_names_at_every_use():
    """docbot_lib.core.names.DNS_LABEL (an RFC 1123 label) is the one check of an object's name: the serving
    name and its data connection, the chatbot, the data connection Secret and Attu's namespace all refuse alike."""
    from docbot_lib.core.names import DNS_LABEL
    from docbot_lib.pipeline import chatbot_deploy, milvus_deploy, s3

    good, bad = ("a", "docbot-models", "0x-1"), ("Docbot", "-x", "x-", "a_b", "a.b", "a b", "docbot\n")
    assert all(DNS_LABEL.match(name) for name in good) and not any(DNS_LABEL.match(name) for name in ("", *bad))
    settings = Settings.load(stack="cluster", s3_access_key="key", s3_secret_key="secret")
    for name in bad:
        with pytest.raises(DocbotError, match="is not a DNS label"):
            serving.VllmOptions(name=name)
        with pytest.raises(DocbotError, match="is not a DNS label"):
            serving.VllmOptions(data_connection=name)
        with pytest.raises(DocbotError, match="is not a DNS label"):
            chatbot_deploy.ChatbotOptions(name=name)
        with pytest.raises(DocbotError, match="cannot name a data connection"):
            s3.data_connection_secret(settings, name)
        with pytest.raises(DocbotError, match="needs the namespace it runs in"):
            milvus_deploy.attu_objects(True, namespace=name, root_password_changed=True)
    for name in good:
        assert serving.VllmOptions(name=name, data_connection=name).name == name
        assert chatbot_deploy.ChatbotOptions(name=name).name == name
        assert s3.data_connection_secret(settings, name)["metadata"]["name"] == f"aws-connection-{name}"
        assert milvus_deploy.attu_objects(True, namespace=name, root_password_changed=True)


def test_one_rule_for_kubernetes_quantities_at_every_use(cluster_settings):
    """docbot_lib.k8s.manifests.QUANTITY is the one check of a resource quantity: vLLM's, the chatbot's and the
    model cache's refuse alike."""
    from docbot_lib.pipeline import chatbot_deploy

    good, bad = ("2", "500m", "1.5", "16Gi", "1536Mi"), ("", "2 Gi", "16GB", "-1", "1e3", ".5", "2Gi ", "2Gi\n")
    assert all(manifests.QUANTITY.match(q) for q in good) and not any(manifests.QUANTITY.match(q) for q in bad)
    for quantity in bad:
        with pytest.raises(DocbotError, match="is not a Kubernetes quantity"):
            serving.VllmOptions(memory=quantity)
        with pytest.raises(DocbotError, match="is not a Kubernetes quantity"):
            chatbot_deploy.ChatbotOptions(cpu=quantity)
        with pytest.raises(DocbotError, match="is not a Kubernetes quantity"):
            serving.standalone_manifests(cluster_settings, cache_size=quantity)
    for quantity in good:
        assert serving.VllmOptions(shm_size=quantity).shm_size == quantity
        assert chatbot_deploy.ChatbotOptions(memory_limit=quantity).memory_limit == quantity
        assert serving.standalone_manifests(cluster_settings, cache_size=quantity)
