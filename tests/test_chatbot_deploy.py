"""The chatbot's cluster manifests: rendered from the settings, valid offline, secrets only in the Secret.
(tests/test_policy.py checks them against the schemas and OpenShift's restricted policy too.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline.chatbot_deploy import ChatbotOptions, chatbot_manifests, chatbot_secret

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster() -> Settings:
    return Settings.load(
        stack="cluster",
        namespace="lab",
        milvus_collection="git_docs",
        search_k=4,
        api_key="api-key-not-shown",
        llm_api_key="llm-key-not-shown",
    )


def test_manifests_carry_the_settings_and_validate(cluster):
    objects = chatbot_manifests(cluster, ChatbotOptions(image="quay.io/acme/docbot:1.2.3"))
    manifests.validate(objects)
    config, deployment, service, route, policy = objects
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service", "Route", "NetworkPolicy"]
    # only the OpenShift router may connect, on the chatbot's port
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}}],
            "ports": [{"protocol": "TCP", "port": 8080}],
        }
    ]
    assert manifests.services_without_network_policy(objects) == []
    assert config["data"]["DOCBOT_MILVUS_COLLECTION"] == "git_docs" and config["data"]["DOCBOT_SEARCH_K"] == "4"
    assert config["data"]["DOCBOT_MILVUS_URI"] == "http://milvus:19530"
    # token auth on (the default): through the predictor's proxy, HTTPS with the service CA's certificate
    assert (
        config["data"]["DOCBOT_LLM_BASE_URL"] == "https://mistral-7b-instruct-predictor.lab.svc.cluster.local:8443/v1"
    )
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SSL_CERT_FILE"] == "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "quay.io/acme/docbot:1.2.3"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["DOCBOT_MILVUS_TOKEN"] == {"name": "docbot-milvus-reader", "key": "DOCBOT_MILVUS_APP_TOKEN"}
    assert refs["DOCBOT_API_KEY"]["name"] == "docbot-secrets"
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert "not-shown" not in yaml.safe_dump_all(objects)  # no credential outside the Secret


def test_the_secret_holds_the_keys_and_prints_masked(cluster):
    secret = chatbot_secret(cluster)
    manifests.validate(secret)
    assert secret["stringData"] == {"DOCBOT_API_KEY": "api-key-not-shown", "DOCBOT_LLM_API_KEY": "llm-key-not-shown"}
    assert "not-shown" not in manifests.to_yaml([secret])
    with pytest.raises(DocbotError, match="DOCBOT_API_KEY"):
        chatbot_secret(cluster.model_copy(update={"api_key": None}))


@pytest.mark.parametrize(
    "field, value",
    [
        ("image", "quay.io/acme/docbot:latest"),
        ("image", "quay.io/acme/docbot"),
        ("name", "Doc_Bot"),
        ("memory", "lots"),
    ],
)
def test_bad_options_are_refused(field, value):
    with pytest.raises(DocbotError):
        ChatbotOptions(**{field: value})


def test_the_prompt_is_in_the_configmap_and_reaches_the_bot():
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline.chatbot_deploy import chatbot_manifests
    from docbot_lib.pipeline.rag import INSTRUCTIONS

    def config(settings):
        return next(o for o in chatbot_manifests(settings) if o["kind"] == "ConfigMap")["data"]

    base = Settings.load(
        stack="cluster", namespace="lab", llm_base_url="http://llm/v1", milvus_uri="http://milvus:19530"
    )
    assert config(base)["DOCBOT_RAG_INSTRUCTIONS"] == INSTRUCTIONS
    own = 'Answer in "French"; cite [n].\nNever guess.'
    assert config(base.model_copy(update={"rag_instructions": own}))["DOCBOT_RAG_INSTRUCTIONS"] == own


def test_the_default_image_and_database_are_the_learners(cluster):
    from docbot_lib.pipeline.chatbot_deploy import image_for

    ann = cluster.model_copy(update={"user": "ann", "namespace": None})
    assert ann.stack == "cluster"
    config, deployment = chatbot_manifests(ann)[:2]
    assert config["data"]["DOCBOT_USER"] == "ann"
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == "image-registry.openshift-image-registry.svc:5000/ann/docbot-chatbot:0.1.0"
        == image_for(ann)
    )
    assert "/team-x/" in image_for(cluster.model_copy(update={"namespace": "team-x"}))


def test_the_model_is_reached_the_way_its_authentication_needs(cluster):
    from docbot_lib.pipeline.chatbot_deploy import inference_service_url

    def url(settings, **options):
        return chatbot_manifests(settings, ChatbotOptions(**options))[0]["data"]["DOCBOT_LLM_BASE_URL"]

    assert url(cluster, llm_auth=False) == "http://mistral-7b-instruct-predictor/v1"
    assert url(cluster.model_copy(update={"namespace": None, "user": "ann"})).startswith(
        "https://mistral-7b-instruct-predictor.ann.svc.cluster.local:8443/"
    )
    assert url(cluster, llm_base_url="https://model.apps.example/v1") == "https://model.apps.example/v1"
    # a model deployed under another name (notebook 03's NAME, recorded as the served name)
    assert url(cluster.model_copy(update={"llm_model_name": "granite"})).startswith("https://granite-predictor.lab.")
    with pytest.raises(DocbotError, match="names its namespace"):
        inference_service_url("mistral", namespace=None)


# -- the image, built on the cluster ------------------------------------------------------------------------

GIT = "https://github.com/acme/docbot.git"
NS = "lab"
BUILDS = "apis/build.openshift.io/v1"


def test_the_build_makes_the_default_image_from_the_containerfile(cluster):
    from docbot_lib.pipeline.chatbot_deploy import build_manifests, image_for

    objects = build_manifests(GIT, "v0.1.0")
    manifests.validate(objects)  # OpenShift's own kinds: no schema ships, the policy still applies
    stream, config = objects
    assert (stream["kind"], config["kind"]) == ("ImageStream", "BuildConfig")
    spec = config["spec"]
    assert spec["source"] == {"type": "Git", "git": {"uri": GIT, "ref": "v0.1.0"}}
    assert spec["strategy"] == {"type": "Docker", "dockerStrategy": {"dockerfilePath": "images/chatbot/Containerfile"}}
    assert (REPO / spec["strategy"]["dockerStrategy"]["dockerfilePath"]).is_file()
    assert spec["output"]["to"] == {"kind": "ImageStreamTag", "name": "docbot-chatbot:0.1.0"}
    assert image_for(cluster).endswith(f"/{NS}/{stream['metadata']['name']}:0.1.0")
    with pytest.raises(DocbotError, match="GIT_URL"):
        build_manifests(None)
    # the schema check is skipped for those two kinds only: any other unknown kind still has no schema
    with pytest.raises(DocbotError, match="no schema"):
        manifests.validate({"apiVersion": "build.openshift.io/v1", "kind": "Build", "metadata": {"name": "b"}})
    assert manifests.problems({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {}})


def build_controller(phases: list[str], digest: str = "sha256:" + "ab" * 32):
    """The build controller, as a KubeApi hook: each read of a Build moves it to the next phase."""

    def hook(kube, request):
        if request.method != "GET" or "/builds/" not in request.path:
            return
        name = request.path.rsplit("/", 1)[-1]
        build = kube.get(BUILDS, NS, "builds", name)
        if build and phases:
            phase = phases.pop(0)
            ref = f"image-registry.openshift-image-registry.svc:5000/{NS}/docbot-chatbot:0.1.0"
            status = {"phase": phase, "outputDockerImageReference": ref}
            if phase == "Complete":
                status["output"] = {"to": {"imageDigest": digest}}
            if phase == "Failed":
                status.update(reason="DockerBuildFailed", message="Docker build strategy has failed.")
            kube.set_status(BUILDS, NS, "builds", name, status)

    return hook


def test_build_image_starts_a_build_and_runs_its_image_by_digest(cluster):
    from kubeapi import KubeApi

    from docbot_lib.pipeline.chatbot_deploy import build_image

    with KubeApi(namespaces={NS}) as kube:
        kube.hooks.append(build_controller(["Pending", "Running", "Complete"]))
        said = []
        image = build_image(cluster, GIT, api_client=kube.api_client(), interval=0.01, echo=said.append)
        assert image == f"image-registry.openshift-image-registry.svc:5000/{NS}/docbot-chatbot@sha256:" + "ab" * 32
        assert kube.get("apis/image.openshift.io/v1", NS, "imagestreams", "docbot-chatbot")
        assert kube.get(BUILDS, NS, "buildconfigs", "docbot-chatbot")["status"]["lastVersion"] == 1
        started = [r for r in kube.requests if r.method == "POST" and r.path.endswith("/instantiate")]
        assert len(started) == 1 and started[0].body["kind"] == "BuildRequest"
        assert "Build/docbot-chatbot-1: Running" in said and said[-1] == f"image: {image}"


def test_a_failed_build_says_where_its_log_is(cluster):
    from kubeapi import KubeApi

    from docbot_lib.pipeline.chatbot_deploy import build_image

    with KubeApi(namespaces={NS}) as kube:
        kube.hooks.append(build_controller(["Running", "Failed"]))
        with pytest.raises(DocbotError, match="oc logs build/docbot-chatbot-1 -n lab") as failed:
            build_image(cluster, GIT, api_client=kube.api_client(), interval=0.01, echo=lambda _m: None)
        assert "Docker build strategy has failed" in str(failed.value)


# -- deploying ----------------------------------------------------------------------------------------------


def chatbot_controllers(kube, request):
    """The Deployment's pods become ready; the router gives the Route a host."""
    for (api, ns, plural, name), obj in list(kube.objects.items()):
        if plural == "deployments" and not (obj.get("status") or {}).get("readyReplicas"):
            kube.set_status(api, ns, plural, name, {"replicas": 1, "readyReplicas": 1})
        if plural == "routes" and not (obj.get("spec") or {}).get("host"):
            obj["spec"]["host"] = f"{name}-{ns}.apps.example.com"


def test_deploy_applies_waits_and_answers_the_routes_https_url(cluster):
    from kubeapi import KubeApi

    from docbot_lib.pipeline.chatbot_deploy import deploy
    from docbot_lib.pipeline.vectordb import credentials_secrets

    with KubeApi(namespaces={NS}) as kube:
        api = kube.api_client()
        manifests.apply(credentials_secrets({"DOCBOT_MILVUS_APP_TOKEN": "docbot_app:reader-pw"}), NS, api)
        kube.hooks.append(chatbot_controllers)
        objects = chatbot_manifests(cluster, ChatbotOptions(image="quay.io/acme/docbot:1.2.3"))
        said = []
        url = deploy(cluster, objects, chatbot_secret(cluster), api_client=api, echo=said.append)
        assert url == "https://docbot-lab.apps.example.com"
        assert "Deployment/docbot: ready" in said and said[-1] == f"the chatbot answers at {url}"
        secret = kube.get("api/v1", NS, "secrets", "docbot-secrets")
        assert set(secret["data"]) == {"DOCBOT_API_KEY", "DOCBOT_LLM_API_KEY"}
        assert "not-shown" not in "\n".join(said)

        def checksum():
            pod = kube.get("apis/apps/v1", NS, "deployments", "docbot")["spec"]["template"]
            return pod["metadata"]["annotations"]["docbot.io/secrets-checksum"]

        first = checksum()
        assert "not-shown" not in first
        deploy(
            cluster.model_copy(update={"api_key": SecretStr("a-new-key")}),
            objects,
            chatbot_secret(cluster.model_copy(update={"api_key": SecretStr("a-new-key")})),
            api_client=api,
            echo=lambda _m: None,
        )
        assert checksum() != first, "a new API key restarts the pods (they read the Secret when they start)"


def test_deploy_without_the_milvus_reader_secret_applies_nothing(cluster):
    from kubeapi import KubeApi

    from docbot_lib.pipeline.chatbot_deploy import deploy

    with KubeApi(namespaces={NS}) as kube:
        with pytest.raises(DocbotError, match="docbot-milvus-reader.*notebook 04"):
            deploy(cluster, chatbot_manifests(cluster), chatbot_secret(cluster), api_client=kube.api_client())
        assert not [r for r in kube.requests if r.method in ("POST", "PUT")]


# -- the API key ----------------------------------------------------------------------------------------------


def test_a_missing_api_key_is_generated_once_stored_private_and_never_shown(tmp_path, monkeypatch):
    import os
    import stat

    from docbot_lib.core.envfile import read_env
    from docbot_lib.pipeline.chatbot_deploy import ensure_api_key

    env_file = tmp_path / "lab.env"
    env_file.write_text("DOCBOT_MILVUS_COLLECTION=git_docs\n")
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    said = []
    settings = ensure_api_key(Settings.load(stack="cluster"), echo=said.append)
    key = settings.secret("api_key")
    assert key and len(key) >= 40 and key not in "\n".join(said) and str(env_file) in said[0]
    assert read_env(env_file) == {"DOCBOT_MILVUS_COLLECTION": "git_docs", "DOCBOT_API_KEY": key}
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    again = ensure_api_key(Settings.load(stack="cluster"), echo=said.append)
    assert again.secret("api_key") == key and said[-1] == "API key: DOCBOT_API_KEY is set (not shown)"


# -- on this machine: `docbot serve`, called with the openai client ---------------------------------------------


def nothing_listens(port: int) -> bool:
    """No process accepts connections on 127.0.0.1:port (a bind may still fail: closed sockets in TIME_WAIT)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.stack
def test_local_chatbot_answers_through_its_api_and_is_stopped_whatever_happens(_session_stack, tmp_path_factory):
    import psutil

    from docbot_lib.local.chatbot import local_chatbot
    from docbot_lib.pipeline.chatbot_deploy import ask
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    _stack, env = _session_stack
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = Settings.load(api_key="local-api-key-0123456789", milvus_collection="test_chatbot_deploy")
        ingest(settings, [str(prepare_sample_docs(tmp_path_factory.mktemp("docs")))], progress=False)
        said, pieces = [], []
        with local_chatbot(settings, max_tokens=24, echo=said.append) as url:
            port = int(url.rsplit(":", 1)[1])
            pid = int(said[0].split("pid ")[1].split(")")[0])
            assert psutil.Process(pid).cmdline()[-4:] == ["--host", "127.0.0.1", "--port", str(port)]
            assert "local-api-key" not in " ".join(psutil.Process(pid).cmdline())
            reply = ask(url, "local-api-key-0123456789", "How does KServe serve a model?", on_text=pieces.append)
            with pytest.raises(DocbotError, match="refused the API key"):
                ask(url, "a-wrong-key", "How does KServe serve a model?")
        assert reply.model == "test_chatbot_deploy" and reply.text.strip() and "".join(pieces).strip()
        assert reply.sources and {"number", "source", "title", "cited"} <= set(reply.sources[0])
        assert "source(s) from" in str(reply)
        assert not psutil.pid_exists(pid) and nothing_listens(port), "the server is stopped after the block"
        assert said[-1] == f"docbot serve (pid {pid}) stopped; port {port} released"

        with pytest.raises(RuntimeError, match="a failing cell"):
            with local_chatbot(settings, echo=said.append) as url:
                port = int(url.rsplit(":", 1)[1])
                raise RuntimeError("a failing cell")
        assert nothing_listens(port) and "stopped" in said[-1]
    assert (settings.local_dir / "logs" / "chatbot.log").is_file()
