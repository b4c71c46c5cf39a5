"""The chatbot's cluster manifests: rendered from the settings, valid offline, secrets only in the Secret.
(tests/test_policy.py checks them against the schemas and OpenShift's restricted policy too.)"""
from __future__ import annotations

import pytest
import yaml

from docbot_lib import manifests
from docbot_lib.chatbot_deploy import ChatbotOptions, chatbot_manifests, chatbot_secret
from docbot_lib.errors import DocbotError
from docbot_lib.settings import Settings


@pytest.fixture
def cluster() -> Settings:
    return Settings.load(stack="cluster", namespace="lab", milvus_collection="git_docs", search_k=4,
                         api_key="api-key-not-shown", llm_api_key="llm-key-not-shown")


def test_manifests_carry_the_settings_and_validate(cluster):
    objects = chatbot_manifests(cluster, ChatbotOptions(image="quay.io/acme/docbot:1.2.3"))
    manifests.validate(objects)
    config, deployment, service, route, policy = objects
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service", "Route", "NetworkPolicy"]
    # only the OpenShift router may connect, on the chatbot's port
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["spec"]["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}]}]
    assert manifests.services_without_network_policy(objects) == []
    assert config["data"]["DOCBOT_MILVUS_COLLECTION"] == "git_docs" and config["data"]["DOCBOT_SEARCH_K"] == "4"
    assert config["data"]["DOCBOT_MILVUS_URI"] == "http://milvus:19530"
    # token auth on (the default): through the predictor's proxy, HTTPS with the service CA's certificate
    assert config["data"]["DOCBOT_LLM_BASE_URL"] == "https://mistral-7b-instruct-predictor.lab.svc.cluster.local:8443/v1"
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


@pytest.mark.parametrize("field, value", [("image", "quay.io/acme/docbot:latest"), ("image", "quay.io/acme/docbot"),
                                          ("name", "Doc_Bot"), ("memory", "lots")])
def test_bad_options_are_refused(field, value):
    with pytest.raises(DocbotError):
        ChatbotOptions(**{field: value})


def test_the_prompt_is_in_the_configmap_and_reaches_the_bot():
    from docbot_lib.chatbot_deploy import chatbot_manifests
    from docbot_lib.rag import INSTRUCTIONS
    from docbot_lib.settings import Settings

    def config(settings):
        return next(o for o in chatbot_manifests(settings) if o["kind"] == "ConfigMap")["data"]

    base = Settings.load(stack="cluster", namespace="lab", llm_base_url="http://llm/v1", milvus_uri="http://milvus:19530")
    assert config(base)["DOCBOT_RAG_INSTRUCTIONS"] == INSTRUCTIONS
    own = 'Answer in "French"; cite [n].\nNever guess.'
    assert config(base.model_copy(update={"rag_instructions": own}))["DOCBOT_RAG_INSTRUCTIONS"] == own


def test_the_default_image_and_database_are_the_learners(cluster):
    from docbot_lib.chatbot_deploy import image_for

    ann = cluster.model_copy(update={"user": "ann", "namespace": None})
    assert ann.stack == "cluster"
    config, deployment = chatbot_manifests(ann)[:2]
    assert config["data"]["DOCBOT_USER"] == "ann"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "image-registry.openshift-image-registry.svc:5000/ann/docbot-chatbot:0.1.0" == image_for(ann)
    assert "/team-x/" in image_for(cluster.model_copy(update={"namespace": "team-x"}))


def test_the_model_is_reached_the_way_its_authentication_needs(cluster):
    from docbot_lib.chatbot_deploy import inference_service_url

    def url(settings, **options):
        return chatbot_manifests(settings, ChatbotOptions(**options))[0]["data"]["DOCBOT_LLM_BASE_URL"]

    assert url(cluster, llm_auth=False) == "http://mistral-7b-instruct-predictor/v1"
    assert url(cluster.model_copy(update={"namespace": None, "user": "ann"})).startswith(
        "https://mistral-7b-instruct-predictor.ann.svc.cluster.local:8443/")
    assert url(cluster, llm_base_url="https://model.apps.example/v1") == "https://model.apps.example/v1"
    with pytest.raises(DocbotError, match="names its namespace"):
        inference_service_url("mistral", namespace=None)
