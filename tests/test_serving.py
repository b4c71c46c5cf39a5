"""docbot_lib.pipeline.serving (cluster part): the vLLM manifests, waiting for the InferenceService, vLLM's metrics."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from kubeapi import KubeApi
from pydantic import SecretStr

from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests
from docbot_lib.pipeline import serving
from docbot_lib.pipeline.serving import VllmOptions

ISVC_API = "apis/serving.kserve.io/v1beta1"
NAME = "mistral-7b-instruct"


@pytest.fixture
def cluster_settings() -> Settings:
    return Settings.load(
        stack="cluster",
        s3_endpoint="https://minio-api.apps.example.com",
        s3_access_key="docbot",
        s3_secret_key="s3cr3t",
        s3_bucket="models",
    )


# -- manifests -------------------------------------------------------------------------------------


def test_inference_service_serves_the_settings_model_from_the_data_connection(cluster_settings):
    opts = VllmOptions(max_model_len=16384, gpu_product="NVIDIA-A10G", extra_args=("--enable-prefix-caching",))
    runtime, isvc, policy = serving.inference_service_manifests(cluster_settings, opts)
    manifests.validate([runtime, isvc, policy])

    assert runtime["metadata"]["labels"] == {"opendatahub.io/dashboard": "true"}
    assert runtime["metadata"]["annotations"]["opendatahub.io/recommended-accelerators"] == '["nvidia.com/gpu"]'
    assert runtime["spec"]["annotations"] == {"prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    assert runtime["spec"]["supportedModelFormats"] == [{"name": "vLLM", "autoSelect": True}]
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == serving.VLLM_IMAGE
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
    assert container["args"] == [
        "--port=8080",
        "--model=/mnt/models",
        "--served-model-name=mistral-7b-instruct",
        "--max-model-len=16384",
        "--dtype=auto",
        "--gpu-memory-utilization=0.9",
        "--enable-prefix-caching",
    ]
    assert runtime["spec"]["volumes"] == [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]

    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "exposed"
    assert predictor["model"]["modelFormat"] == {"name": "vLLM"} and predictor["model"]["runtime"] == NAME
    assert predictor["model"]["storage"] == {
        "key": "aws-connection-models",
        "path": "models/mistralai/Mistral-7B-Instruct-v0.2/",
    }
    resources = predictor["model"]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 1)


def test_serverless_with_auth_and_scale_to_zero(cluster_settings):
    opts = VllmOptions(
        name="granite",
        deployment_mode="Serverless",
        min_replicas=0,
        max_replicas=2,
        auth=True,
        served_model_name="granite-3b",
        gpus=2,
        model_path="models/ibm/granite/",
    )
    *auth, runtime, isvc, policy = serving.inference_service_manifests(cluster_settings, opts)
    manifests.validate(auth + [runtime, isvc, policy])
    assert [o["kind"] for o in auth] == ["ServiceAccount", "Role", "RoleBinding", "Secret"]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "granite-sa" == auth[0]["metadata"]["name"]
    assert auth[1]["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": ["granite"],
            "verbs": ["get"],
        }
    ]
    assert auth[3]["type"] == "kubernetes.io/service-account-token"
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert annotations["sidecar.istio.io/inject"] == "true"
    assert annotations["security.opendatahub.io/enable-auth"] == "true"
    assert "networking.kserve.io/visibility" not in isvc["metadata"]["labels"]
    assert "--served-model-name=granite-3b" in runtime["spec"]["containers"][0]["args"]
    assert isvc["spec"]["predictor"]["model"]["storage"]["path"] == "models/ibm/granite/"
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nodeSelector" not in isvc["spec"]["predictor"]


def test_standalone_deployment_is_restricted_and_probed(cluster_settings):
    pvc, deployment, service, route, policy = serving.standalone_manifests(
        cluster_settings, VllmOptions(dtype="float16")
    )
    manifests.validate([pvc, deployment, service, route, policy])
    assert manifests.services_without_network_policy([deployment, service, policy]) == []
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    vllm = pod["containers"][0]
    assert "--dtype=float16" in vllm["args"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert vllm["ports"][0]["containerPort"] == 8080
    init = pod["initContainers"][0]
    assert '"s3://models/models/mistralai/Mistral-7B-Instruct-v0.2/" /mnt/models' in init["args"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in init["env"]} == {"aws-connection-models"}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert route["spec"]["to"]["name"] == service["metadata"]["name"]


ROUTER = {"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}}


def test_the_predictor_pods_admit_their_project_the_router_and_monitoring_only(cluster_settings):
    *_, isvc, policy = serving.inference_service_manifests(cluster_settings)
    manifests.validate(policy)
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    # KServe labels the predictor pods with the InferenceService's name
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": NAME}}
    assert isvc["metadata"]["name"] == NAME
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"podSelector": {}} in peers and ROUTER in peers
    assert {"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "monitoring"}}} in peers
    assert len(peers) == 3  # nobody else: no other namespace, no ipBlock
    # not exposed: no Route, so the router has no rule either
    hidden = serving.inference_service_manifests(cluster_settings, VllmOptions(expose=False))[-1]
    assert ROUTER not in [peer for rule in hidden["spec"]["ingress"] for peer in rule["from"]]
    assert (
        "networking.kserve.io/visibility"
        not in serving.inference_service_manifests(cluster_settings, VllmOptions(expose=False))[1]["metadata"]["labels"]
    )


def test_standalone_vllm_never_answers_without_its_api_key(cluster_settings):
    """vLLM without KServe: the key comes from a Secret (VLLM_API_KEY, which vLLM reads as --api-key), the pod
    cannot start without it, and the public Route forwards only /v1, the paths vLLM checks the key on."""
    pvc, deployment, service, route, policy = serving.standalone_manifests(cluster_settings)
    vllm = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in vllm["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": f"{NAME}-api-key", "key": "VLLM_API_KEY"}}
    assert "optional" not in env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]  # no key, no pod
    assert not any(a.startswith("--api-key") for a in vllm["args"])  # never in the pod spec in clear
    assert route["spec"]["path"] == "/v1"
    # the Secret it reads: the settings' LLM key, masked when shown; none is an error, never an open endpoint
    keyed = cluster_settings.model_copy(update={"llm_api_key": SecretStr("vllm-key-not-shown")})
    secret = serving.standalone_secret(keyed)
    manifests.validate(secret)
    assert secret["metadata"]["name"] == f"{NAME}-api-key"
    assert secret["stringData"] == {"VLLM_API_KEY": "vllm-key-not-shown"}
    assert "vllm-key-not-shown" not in manifests.to_yaml([secret])
    assert "not-shown" not in yaml.safe_dump_all([pvc, deployment, service, route, policy])
    with pytest.raises(DocbotError, match="no API key for vLLM") as err:
        serving.standalone_secret(cluster_settings)
    assert "DOCBOT_LLM_API_KEY" in err.value.fix
    # not exposed: no Route, and the router may not connect
    hidden = serving.standalone_manifests(cluster_settings, VllmOptions(expose=False))
    assert [o["kind"] for o in hidden] == ["PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"]
    assert ROUTER not in [peer for rule in hidden[-1]["spec"]["ingress"] for peer in rule["from"]]


def test_serverless_is_an_openshift_ai_2x_option_only():
    """OpenShift AI 3.x has no Serverless: RawDeployment is the default, and the errors say which release has what."""
    assert VllmOptions().deployment_mode == "RawDeployment"
    with pytest.raises(DocbotError) as err:
        VllmOptions(deployment_mode="Knative")
    assert "3.x has no other" in err.value.fix and "2.x only" in err.value.fix
    with pytest.raises(DocbotError) as err:
        VllmOptions(min_replicas=0)
    assert "OpenShift AI 2.x" in err.value.problem and "3.x: RawDeployment only" in err.value.fix


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "Mistral_7B"}, "not a DNS label"),
        ({"gpus": 0}, "needs a GPU"),
        ({"min_replicas": 0}, "needs deployment_mode='Serverless'"),
        ({"memory": "16 GB"}, "not a Kubernetes quantity"),
        ({"extra_args": ("enable-prefix-caching",)}, "do not start with --"),
        ({"gpu_memory_utilization": 1.5}, "outside"),
        ({"dtype": "bf16"}, "not a vLLM --dtype"),
        ({"deployment_mode": "Knative"}, "unknown"),
        ({"model_path": 'models/x"; rm -rf /'}, "not a folder in the bucket"),
    ],
)
def test_options_refuse_bad_values(kwargs, message):
    with pytest.raises(DocbotError, match=message):
        VllmOptions(**kwargs)


def test_standalone_refuses_a_bucket_name_that_is_not_one():
    settings = Settings.load(stack="cluster", s3_bucket="My Bucket")
    with pytest.raises(DocbotError, match="not a valid S3 bucket name"):
        serving.standalone_manifests(settings)


def test_data_connection_needs_s3_credentials():
    settings = Settings.load(stack="cluster", s3_endpoint="https://minio.example.com")
    with pytest.raises(DocbotError, match="no S3 access key") as err:
        serving.data_connection(settings)
    assert "AWS_SECRET_ACCESS_KEY" in err.value.fix


# -- waiting for Ready ----------------------------------------------------------------------------


def _deploy(kube: KubeApi, settings: Settings) -> object:
    api = kube.api_client()
    manifests.apply(serving.inference_service_manifests(settings), "docbot", api)
    return api


def _isvc_gets(kube: KubeApi) -> int:
    return sum(1 for r in kube.requests if r.method == "GET" and r.path.endswith(f"/inferenceservices/{NAME}"))


LOADING = {
    "conditions": [
        {"type": "PredictorReady", "status": "False", "reason": "ContainersNotReady", "message": "loading"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
    ]
}


def test_wait_returns_the_url_once_ready(cluster_settings):
    url = f"https://{NAME}-docbot.apps.example.com"

    def controller(kube, request):  # KServe: loading at the first poll, Ready at the third
        if request.method == "GET" and request.path.endswith(f"/inferenceservices/{NAME}"):
            polls = _isvc_gets(kube)
            if polls == 1:
                kube.set_status(ISVC_API, "docbot", "inferenceservices", NAME, LOADING)
            if polls == 3:
                kube.set_status(
                    ISVC_API,
                    "docbot",
                    "inferenceservices",
                    NAME,
                    {
                        "url": url,
                        "address": {"url": f"http://{NAME}-predictor.docbot.svc.cluster.local"},
                        "conditions": [
                            {"type": "PredictorReady", "status": "True"},
                            {"type": "Ready", "status": "True"},
                        ],
                    },
                )

    with KubeApi() as kube:
        api = _deploy(kube, cluster_settings)
        kube.hooks.append(controller)
        said: list[str] = []
        assert serving.wait_inference_service_ready(NAME, "docbot", api, timeout=10, poll=0.01, echo=said.append) == url
        assert _isvc_gets(kube) == 3
        assert said == [
            f"waiting for {NAME}: PredictorReady=False (ContainersNotReady): loading; Ready=False (ContainersNotReady)",
            f"InferenceService {NAME} is ready: {url}",
        ]


def test_wait_falls_back_to_the_cluster_address(cluster_settings):
    address = f"http://{NAME}-predictor.docbot.svc.cluster.local"
    with KubeApi() as kube:
        api = _deploy(kube, cluster_settings)
        kube.set_status(
            ISVC_API,
            "docbot",
            "inferenceservices",
            NAME,
            {"address": {"url": address}, "conditions": [{"type": "Ready", "status": "True"}]},
        )
        assert serving.wait_inference_service_ready(NAME, "docbot", api, timeout=5, poll=0.01, echo=None) == address


def _event(name: str, kind: str, involved: str, reason: str, message: str, when: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "type": "Warning",
        "reason": reason,
        "message": message,
        "metadata": {"name": name, "namespace": "docbot"},
        "involvedObject": {"kind": kind, "name": involved, "namespace": "docbot"},
        "firstTimestamp": when,
        "lastTimestamp": when,
    }


def test_timeout_shows_conditions_and_recent_events(cluster_settings):
    with KubeApi() as kube:
        api = _deploy(kube, cluster_settings)
        kube.set_status(
            ISVC_API,
            "docbot",
            "inferenceservices",
            NAME,
            {
                "conditions": [
                    {
                        "type": "PredictorReady",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available",
                    },
                    {"type": "Ready", "status": "False", "reason": "Unschedulable"},
                ],
                "modelStatus": {"lastFailureInfo": {"reason": "ModelLoadFailed", "message": "out of memory"}},
            },
        )
        for event in (
            _event(
                "e1",
                "Pod",
                f"{NAME}-predictor-7d9f-abc",
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                "2026-11-25T10:00:05Z",
            ),
            _event(
                "e2", "InferenceService", NAME, "InternalError", "fails to reconcile predictor", "2026-11-25T10:00:01Z"
            ),
            _event("e3", "Pod", "milvus-0", "BackOff", "unrelated", "2026-11-25T10:00:09Z"),
        ):
            kube.objects[("api/v1", "docbot", "events", event["metadata"]["name"])] = event
        with pytest.raises(DocbotError) as err:
            serving.wait_inference_service_ready(NAME, "docbot", api, timeout=0.05, poll=0.01, echo=None)
    message = str(err.value)
    assert f"InferenceService {NAME} in docbot is not ready after 0 s" in message
    assert "PredictorReady=False (Unschedulable): 0/3 nodes are available" in message
    assert "model: ModelLoadFailed: out of memory" in message
    events = message.split("recent events:")[1]
    # oldest first, only the InferenceService's own and its pods'
    assert events.index("Warning InternalError InferenceService/mistral-7b-instruct") < events.index(
        f"Warning FailedScheduling Pod/{NAME}-predictor-7d9f-abc: 0/3 nodes are available: "
        "3 Insufficient nvidia.com/gpu."
    )
    assert "milvus-0" not in events
    assert "Insufficient nvidia.com/gpu" in err.value.fix


def test_wait_for_an_unknown_inference_service_says_so(cluster_settings):
    with KubeApi() as kube:
        with pytest.raises(
            DocbotError, match=r"no InferenceService/ghost in namespace docbot, or no API for its kind \(HTTP 404"
        ):
            serving.wait_inference_service_ready("ghost", "docbot", kube.api_client(), timeout=1, poll=0.01)


# -- vLLM metrics ---------------------------------------------------------------------------------

VLLM_METRICS = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 18242.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.218563072e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="mistral-7b-instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="mistral-7b-instruct"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="mistral-7b-instruct"} 0.4237
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="mistral-7b-instruct"} 20480.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="mistral-7b-instruct"} 18352.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="mistral-7b-instruct"} 5120.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="mistral-7b-instruct"} 41.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="mistral-7b-instruct"} 2.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="mistral-7b-instruct"} 30.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0",model_name="mistral-7b-instruct"} 42.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="mistral-7b-instruct"} 43.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="mistral-7b-instruct"} 43.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="mistral-7b-instruct"} 5.72
"""


def test_parse_vllm_metrics():
    metrics = serving.parse_vllm_metrics(VLLM_METRICS)
    assert metrics.is_vllm and metrics.model_names == ("mistral-7b-instruct",)
    assert (metrics.kv_cache_usage, metrics.requests_running, metrics.requests_waiting) == (0.4237, 3.0, 2.0)
    assert (metrics.prompt_tokens_total, metrics.generation_tokens_total) == (18352.0, 5120.0)
    assert str(metrics) == (
        "vLLM mistral-7b-instruct: KV cache 42.4% used, 3 running, 2 waiting, "
        "18352 prompt / 5120 generated tokens so far"
    )


def test_parse_older_vllm_metrics_name():
    older = VLLM_METRICS.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    assert serving.parse_vllm_metrics(older).kv_cache_usage == 0.4237


def test_parse_other_prometheus_text_or_garbage():
    other = serving.parse_vllm_metrics("# TYPE up gauge\nup 1.0\n")
    assert not other.is_vllm and other.detail == "not a vLLM endpoint: /metrics has no vllm:* metrics"
    assert not serving.parse_vllm_metrics('{"detail": "Not Found"}').is_vllm


@pytest.fixture
def fake_vllm_metrics():
    """vLLM itself cannot run here: an HTTP server that answers /metrics as vLLM does (with a token)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer tok":
                code, body = 401, b"Unauthorized"
            elif self.path == "/metrics":
                code, body = 200, VLLM_METRICS.encode()
            else:
                code, body = 404, b""
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_vllm_metrics_over_http(fake_vllm_metrics):
    metrics = serving.vllm_metrics(fake_vllm_metrics, api_key="tok")
    assert metrics.is_vllm and metrics.requests_running == 3.0
    with pytest.raises(DocbotError, match="refused the token"):
        serving.vllm_metrics(fake_vllm_metrics, api_key="wrong")


@pytest.mark.stack
def test_llama_cpp_server_is_not_a_vllm_endpoint(settings):
    metrics = serving.vllm_metrics(settings.llm_base_url, api_key=settings.secret("llm_api_key"))
    assert not metrics.is_vllm
    assert metrics.detail.startswith("not a vLLM endpoint: ")
    assert str(metrics) == metrics.detail


def test_unreachable_metrics_endpoint_is_an_error():
    from conftest import free_port

    with pytest.raises(DocbotError, match="cannot read"):
        serving.vllm_metrics(f"http://127.0.0.1:{free_port()}/v1", timeout=2)


# -- the image of OpenShift AI's template, a model deployed another way, the server's API docs ----------

PLATFORM_IMAGE = "registry.redhat.io/rhoai/odh-vllm-cuda-rhel9@sha256:" + "a" * 64


def _template(image: str) -> dict:
    return {
        "apiVersion": "template.openshift.io/v1",
        "kind": "Template",
        "metadata": {"name": serving.PLATFORM_TEMPLATE, "labels": {"opendatahub.io/dashboard": "true"}},
        "objects": [
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ServingRuntime",
                "metadata": {"name": "vllm-cuda-runtime"},
                "spec": {"containers": [{"name": "kserve-container", "image": image}]},
            }
        ],
    }


def test_runtime_image_is_read_from_the_platform_template_and_labels_the_runtime(cluster_settings):
    from kubernetes import client

    with KubeApi() as kube:
        api = kube.api_client()
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "template.openshift.io", "v1", "redhat-ods-applications", "templates", _template(PLATFORM_IMAGE)
        )
        found = serving.runtime_image(api)
    assert found.from_platform and found.image == PLATFORM_IMAGE and "redhat-ods-applications" in found.note
    runtime = serving.inference_service_manifests(
        cluster_settings, VllmOptions(image=found.image, platform_image=found.from_platform)
    )[0]
    assert runtime["spec"]["containers"][0]["image"] == PLATFORM_IMAGE
    assert runtime["metadata"]["annotations"]["opendatahub.io/template-name"] == serving.PLATFORM_TEMPLATE


def test_runtime_image_falls_back_to_the_pin_and_says_why(cluster_settings):
    from kubernetes import client

    with KubeApi(forbid={("get", "templates")}) as kube:
        forbidden = serving.runtime_image(kube.api_client())
    with KubeApi() as kube:  # Open Data Hub's template, not yet filled in by its operator: no image
        client.CustomObjectsApi(kube.api_client()).create_namespaced_custom_object(
            "template.openshift.io", "v1", "opendatahub", "templates", _template("$(vllm-cuda-image)")
        )
        unfilled = serving.runtime_image(kube.api_client())
    assert not forbidden.from_platform and forbidden.image == serving.VLLM_IMAGE
    assert "redhat-ods-applications: not allowed to read it" in forbidden.note
    assert "redhat-ods-applications: not found; opendatahub: the template names no image" in unfilled.note
    without_cluster = serving.runtime_image(None)
    assert not without_cluster.from_platform and "not applying to a cluster" in without_cluster.note
    runtime = serving.inference_service_manifests(cluster_settings, VllmOptions(image=forbidden.image))[0]
    annotations = runtime["metadata"]["annotations"]
    assert "opendatahub.io/template-name" not in annotations  # not labelled as the platform's template
    assert serving.VLLM_IMAGE in annotations["opendatahub.io/template-display-name"]


def test_serving_name_from_the_model_id():
    assert serving.serving_name("mistralai/Mistral-7B-Instruct-v0.2") == "mistral-7b-instruct-v0-2"
    assert serving.serving_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    VllmOptions(name=serving.serving_name("org/" + "A" * 80))  # a valid DNS label of at most 45 characters
    with pytest.raises(DocbotError, match="NAME"):
        serving.serving_name("org/---")


def test_use_existing_needs_an_endpoint_and_records_it_without_the_token(tmp_path, monkeypatch):
    from docbot_lib.core.envfile import cluster_state_file, read_env

    monkeypatch.setenv("DOCBOT_ENV_FILE", str(tmp_path / ".env"))
    (tmp_path / ".env").write_text("DOCBOT_LLM_API_KEY=tok3n\n")
    with pytest.raises(DocbotError, match="LLM_BASE_URL"):
        serving.use_existing(Settings.load(stack="cluster"), echo=lambda _s: None)
    said: list[str] = []
    used = serving.use_existing(
        Settings.load(stack="cluster", llm_base_url="https://m-docbot.apps.example.com/", llm_model_name="granite"),
        echo=said.append,
    )
    assert used.llm_base_url == "https://m-docbot.apps.example.com/v1" and used.llm_model_name == "granite"
    recorded = read_env(cluster_state_file())
    assert recorded == {
        "DOCBOT_LLM_BASE_URL": "https://m-docbot.apps.example.com/v1",
        "DOCBOT_LLM_MODEL_NAME": "granite",
    }
    assert "token: set" in said[0] and "tok3n" not in said[0]


def test_api_docs_lists_the_servers_operations(settings):
    docs = serving.api_docs(settings)
    assert docs.docs_url == settings.llm_base_url.removesuffix("/v1") + "/docs"
    assert "POST /v1/chat/completions" in docs.operations and "GET /v1/models" in docs.operations
