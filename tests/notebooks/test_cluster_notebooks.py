"""The cluster path, executed: notebooks 00-08 as a learner in an OpenShift AI workbench runs them.

`DOCBOT_STACK=cluster` comes from the environment only (the notebooks' STACK parameter stays None), and every
service is a real one standing in for the cluster's:
  - the Kubernetes API: the stand-in at its HTTP boundary (tests/kubeapi.py), reached through a kubeconfig as
    after `oc login`; hooks play the controllers (the InferenceService turning Ready with the LLM's URL, the
    token controller filling the model's service-account token, Deployments becoming ready);
  - "MinIO": the local S3 server, through the `AWS_*` variables a data connection injects;
  - "vLLM": the local llama.cpp server, which requires its token; the learner never types it: notebook 03
    reads it from the token Secret and records it;
  - Milvus: the real Milvus 2.3.5 server with auth on (no BM25: the store runs dense-only), secured by
    notebook 04, then used as the least-privilege users it created: ingestion as the writer (05, 07),
    the chat and the API as the reader (06);
  - the chatbot's pod (08): `docbot serve` started on this machine, by a hook playing the kubelet, with the
    environment the applied Deployment gives its container (ConfigMap, and the keys of the Secrets it names:
    the API key the notebook generated, the reader's token, the model's token); ready once its readiness
    probe (/readyz: the model and Milvus answer) does. The notebook calls it through CHATBOT_URL (no Route
    host resolves here) with the `openai` client.
What 03 and 04 deploy reaches 05-07 through the cluster state file only. After the run, every forbidden
action is tried and must be refused.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from kubeapi import KubeApi
from milvus_server import milvus_server  # noqa: F401 - the module's server

from docbot_lib.clients import milvus
from docbot_lib.core.envfile import read_env
from docbot_lib.core.names import LabNames
from docbot_lib.core.settings import Settings
from docbot_lib.local.services import LOCAL_MODEL_NAME
from docbot_lib.pipeline import vectordb
from docbot_lib.workshop import execute, lab_notebooks

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "learner1"
LEARNER = "learner1"
KUBE_TOKEN = "sha256~learner1-login-token"
BUCKET = "learner1-models"
NAMES = LabNames(LEARNER)
NOTEBOOKS = [p for p in lab_notebooks(REPO / "notebooks") if p.name[:2] <= "08"]
CHATBOT_IMAGE = "quay.io/example/docbot-chatbot:0.1.0"  # given as IMAGE: no build here

pytestmark = [pytest.mark.stack, pytest.mark.cluster]


def controllers(llm_url: str, llm_key: str):
    """What the cluster's controllers would do, as a KubeApi hook: the token controller fills a
    service-account token Secret; KServe makes the InferenceService Ready (after it was polled once);
    Deployments get their replicas ready."""
    polls: dict[str, int] = {}

    def hook(kube: KubeApi, request) -> None:
        for (api, ns, plural, name), obj in list(kube.objects.items()):
            if (
                plural == "secrets"
                and obj.get("type") == "kubernetes.io/service-account-token"
                and not (obj.get("data") or {}).get("token")
            ):
                obj.setdefault("data", {})["token"] = base64.b64encode(llm_key.encode()).decode()
            elif (
                plural == "deployments"
                and not (obj.get("status") or {}).get("readyReplicas")
                and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "chatbot"
            ):
                replicas = (obj.get("spec") or {}).get("replicas", 1)
                kube.set_status(api, ns, plural, name, {"replicas": replicas, "readyReplicas": replicas})
            elif plural == "inferenceservices" and request.method == "GET" and request.path.endswith(f"/{name}"):
                polls[name] = polls.get(name, 0) + 1
                if polls[name] == 2:  # the first poll sees it not ready yet
                    kube.set_status(
                        api,
                        ns,
                        plural,
                        name,
                        {
                            "url": llm_url.removesuffix("/v1"),
                            "conditions": [
                                {"type": "Ready", "status": "True"},
                                {"type": "PredictorReady", "status": "True"},
                            ],
                        },
                    )
            elif plural == "routes" and not (obj.get("spec") or {}).get("host"):
                obj["spec"]["host"] = f"{name}-{ns}.apps.cluster.example.com"  # the router admits it

    return hook


class ChatbotPod:
    """The kubelet for the chatbot's Deployment, as a KubeApi hook: once it is applied, `docbot serve` starts
    here with its container's environment (ConfigMap values and Secret keys as the Deployment names them;
    only the in-cluster addresses of the model and Milvus, which do not resolve here, point at the local
    ones); the Deployment turns ready when the readiness probe (/readyz) answers 200."""

    def __init__(self, folder: Path, llm_url: str, milvus_uri: str):
        from conftest import free_port

        self.folder, self.llm_url, self.milvus_uri = folder, llm_url, milvus_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.lock = threading.Lock()

    def container_env(self, kube: KubeApi, deployment: dict) -> dict[str, str]:
        ns = deployment["metadata"]["namespace"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            env.update(kube.get("api/v1", ns, "configmaps", source["configMapRef"]["name"])["data"])
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                data = (kube.get("api/v1", ns, "secrets", ref["name"]) or {}).get("data") or {}
                assert ref["key"] in data or ref.get("optional"), f"the pod would wait for {ref}"
                if ref["key"] in data:
                    env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:
                env[item["name"]] = item["value"]
        env.pop("SSL_CERT_FILE")  # the service CA's file exists in a pod only; the local model speaks http
        return {
            **env,
            "HOME": str(self.folder),
            "DOCBOT_HOME": str(self.folder / "docbot"),
            "DOCBOT_ENV_FILE": str(self.folder / "none.env"),
            "PATH": os.environ["PATH"],
            "DOCBOT_LLM_BASE_URL": self.llm_url,
            "DOCBOT_MILVUS_URI": self.milvus_uri,
        }

    def __call__(self, kube: KubeApi, request) -> None:
        with self.lock:
            for (api, ns, plural, name), obj in list(kube.objects.items()):
                if (
                    plural != "deployments"
                    or obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "chatbot"
                ):
                    continue
                if self.proc is None:
                    self.env = self.container_env(kube, obj)
                    self.folder.mkdir(parents=True, exist_ok=True)
                    log = (self.folder / "chatbot.log").open("ab")
                    self.proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "docbot_lib.cli",
                            "serve",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(self.port),
                        ],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                elif not (obj.get("status") or {}).get("readyReplicas") and self.ready():
                    kube.set_status(api, ns, plural, name, {"replicas": 1, "readyReplicas": 1})

    def ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@pytest.fixture(scope="module")
def workbench(_session_stack, milvus_server, tmp_path_factory):  # noqa: F811
    """A learner's workbench: the environment a kernel there has, and the cluster it talks to."""
    stack, env = _session_stack
    local = Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()})
    folder = tmp_path_factory.mktemp("workbench")
    kube = KubeApi(token=KUBE_TOKEN, namespaces={NAMESPACE}, user=LEARNER).start()
    kube.hooks.append(controllers(local.llm_base_url, local.secret("llm_api_key")))
    pod = ChatbotPod(folder / "chatbot-pod", local.llm_base_url, milvus_server.uri)
    kube.hooks.append(pod)
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("DOCBOT_", "AWS_")) or name in ("HF_TOKEN", "HF_ENDPOINT", "KUBECONFIG"):
                mp.delenv(name)
        workbench_env = {
            "DOCBOT_STACK": "cluster",
            "DOCBOT_HOME": str(folder / "home"),
            # the learner's .env: notebook 04 writes the Milvus users' tokens into it
            "DOCBOT_ENV_FILE": str(milvus_server.env_file),
            "KUBECONFIG": str(kube.write_kubeconfig(folder / "kubeconfig", LEARNER, KUBE_TOKEN, NAMESPACE)),
            # the data connection attached to the workbench
            "AWS_S3_ENDPOINT": local.s3_endpoint,
            "AWS_ACCESS_KEY_ID": local.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": local.secret("s3_secret_key"),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_S3_BUCKET": BUCKET,
            # the hub (a stand-in: the real one is not reachable here) and the model the lab serves
            "HF_ENDPOINT": local.hf_endpoint,
            "DOCBOT_MODEL_ID": local.model_id,
            "DOCBOT_MODEL_REVISION": local.model_revision,
        }
        for key, value in workbench_env.items():
            mp.setenv(key, value)
        try:
            yield {
                "kube": kube,
                "local": local,
                "milvus": milvus_server,
                "folder": folder,
                "env": workbench_env,
                "state": milvus_server.env_file.parent / "cluster.env",
                "pod": pod,
            }
        finally:
            pod.stop()
    kube.stop()


PARAMETERS = {
    "00-environment-check.ipynb": {"USER": LEARNER},  # the one thing a learner of a class sets, once
    "02-upload-model-to-s3.ipynb": {"APPLY_TO_CLUSTER": True},
    "03-serve-model.ipynb": {"NAME": LOCAL_MODEL_NAME, "APPLY_TO_CLUSTER": True, "WAIT_TIMEOUT": 120},
    "04-deploy-milvus.ipynb": {"APPLY_TO_CLUSTER": True},
    "07-evaluate.ipynb": {"ANSWER_QUESTIONS": 1},
}


def outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if isinstance(o.get("text"), str)
    )


@pytest.fixture(scope="module")
def lab_run(workbench):
    """Notebooks 00-08 in order, as `make workshop` runs them; stops at the first failure."""
    runs = {}
    for notebook in NOTEBOOKS:
        parameters = dict(PARAMETERS.get(notebook.name, {}))
        if notebook.name.startswith("04"):
            parameters["MILVUS_URI"] = workbench["milvus"].uri  # the Milvus the learner was given
        if notebook.name.startswith("07"):
            parameters["OUTPUT_DIR"] = str(workbench["folder"] / "figures")
        if notebook.name.startswith("08"):  # the image given (no build here); the pod answers on this machine
            parameters.update(APPLY_TO_CLUSTER=True, IMAGE=CHATBOT_IMAGE, CHATBOT_URL=workbench["pod"].url)
        run = execute(notebook, workbench["folder"] / "runs" / notebook.name, parameters)
        runs[notebook.name[:2]] = run
        if not run.ok:
            break
    return runs


@pytest.mark.parametrize("number", [p.name[:2] for p in NOTEBOOKS])
def test_notebook_runs_in_cluster_mode(lab_run, number):
    assert number in lab_run, "an earlier notebook failed"
    run = lab_run[number]
    assert run.ok, f"{run.notebook}: {run.error}"


def test_the_start_of_the_lab_checks_only_what_exists_yet(lab_run):
    text = outputs(lab_run["00"].output)
    assert "running in: this machine, against a cluster; S3 credentials set" in text
    assert f"learner {LEARNER} (Milvus database {NAMES.database})" in text
    rows = {
        line.split()[0]: line
        for line in text.splitlines()
        if line.split()[:1] and line.split()[0] in ("S3", "Kubernetes", "LLM", "Milvus", "embeddings", "Hugging")
    }
    assert "OK" in rows["S3"] and "OK" in rows["Hugging"] and "OK" in rows["embeddings"]
    assert f"{LEARNER} (your login in" in rows["Kubernetes"] and f"project '{NAMESPACE}'" in rows["Kubernetes"]
    assert "TO DO" in rows["LLM"] and "TO DO" in rows["Milvus"]
    assert "03-serve-model.ipynb serves the model" in text and "04-deploy-milvus.ipynb deploys Milvus" in text
    assert "Ready for the next notebook (LLM, Milvus: deployed later in the lab)." in text


def test_what_03_and_04_deployed_is_recorded_and_nothing_secret_is_shown(lab_run, workbench):
    state_file = workbench["state"]
    state = read_env(state_file)
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert state["DOCBOT_LLM_BASE_URL"] == workbench["local"].llm_base_url
    assert state["DOCBOT_LLM_MODEL_NAME"] == LOCAL_MODEL_NAME
    assert state["DOCBOT_LLM_API_KEY"] == workbench["local"].secret("llm_api_key")  # read from the token Secret
    assert state["DOCBOT_MILVUS_URI"] == workbench["milvus"].uri and state["DOCBOT_NAMESPACE"] == NAMESPACE
    assert state["DOCBOT_USER"] == LEARNER
    kube = workbench["kube"]
    isvc = kube.get("apis/serving.kserve.io/v1beta1", NAMESPACE, "inferenceservices", LOCAL_MODEL_NAME)
    assert isvc["metadata"]["annotations"]["security.opendatahub.io/enable-auth"] == "true"
    # one Secret per identity: the chatbot's holds the read-only user's token and nothing else
    reader = kube.get("api/v1", NAMESPACE, "secrets", "docbot-milvus-reader")
    assert set(reader["data"]) == {"DOCBOT_MILVUS_APP_TOKEN"}
    assert set(kube.get("api/v1", NAMESPACE, "secrets", "docbot-milvus-writer")["data"]) == {"DOCBOT_MILVUS_TOKEN"}
    assert kube.get("apis/apps/v1", NAMESPACE, "deployments", "milvus")
    secrets = [workbench["local"].secret("llm_api_key"), workbench["local"].secret("s3_secret_key"), KUBE_TOKEN] + [
        t.split(":", 1)[-1] for t in read_env(workbench["milvus"].env_file).values()
    ]
    for run in lab_run.values():
        text = run.output.read_text()
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the executed {run.notebook}"


def test_an_existing_data_connection_is_kept(lab_run, workbench):
    """02 creates the data connection (the learner's explicit step); 03 keeps the one that exists."""
    assert f"Secret aws-connection-models created in namespace {NAMESPACE}." in outputs(lab_run["02"].output)
    assert "Secret/aws-connection-models kept" in outputs(lab_run["03"].output)
    replaced = [
        r for r in workbench["kube"].requests if r.method == "PUT" and "/secrets/aws-connection-models" in r.path
    ]
    assert not replaced, "notebook 03 replaced the data connection Secret"


def test_each_notebook_acted_as_the_right_milvus_user(lab_run):
    assert f"Milvus user: {NAMES.app_user}" in outputs(lab_run["06"].output)
    assert f"{NAMES.ingest_user} can write but not manage users or roles, in database {NAMES.database}" in outputs(
        lab_run["04"].output
    )
    assert "dense search only (HNSW, COSINE): Milvus v2.3.5" in outputs(lab_run["05"].output)


def test_notebook_04_proves_the_day_2_work_on_the_server(lab_run):
    """Its report, each line a real request: the default root password, the reader's and the writer's limits."""
    verdicts = [line for line in outputs(lab_run["04"].output).splitlines() if line.startswith(("OK  ", "FAIL"))]
    assert verdicts and not [v for v in verdicts if v.startswith("FAIL")], verdicts
    proven = " | ".join(verdicts)
    for who, action in (
        ("root", "log in as root:Milvus (the default)"),
        (NAMES.app_user, "insert into"),
        (NAMES.app_user, "drop"),
        (NAMES.ingest_user, "create a user"),
        (NAMES.ingest_user, "create a role"),
        (NAMES.ingest_user, "grant itself the admin role"),
    ):
        assert any(who in v and action in v and "refused" in v for v in verdicts), (who, action, proven)


def test_forbidden_actions_are_refused(lab_run, workbench):
    """The users notebook 04 created, on the collections 05-07 filled: what each may not do is refused."""
    tokens = read_env(workbench["milvus"].env_file)
    uri = workbench["milvus"].uri
    reader = milvus.connect(uri, tokens[vectordb.APP_TOKEN_KEY], database=NAMES.database)
    writer = milvus.connect(uri, tokens[vectordb.INGEST_TOKEN_KEY], database=NAMES.database)
    row = {
        "pk": "x" * 64,
        "text": "t",
        "dense": [0.0] * 384,
        "source": "s",
        "root": "r",
        "title": "t",
        "section": "",
        "page": 0,
        "chunk_index": 0,
        "doc_hash": "h",
    }
    attempts = {
        "reader inserts": lambda: reader.insert("docbot", [row]),
        "reader deletes": lambda: reader.delete("docbot", ids=["x"]),
        "reader drops the collection": lambda: reader.drop_collection("docbot"),
        "reader creates a collection": lambda: reader.create_collection("intruder", dimension=4),
        "writer drops the collection": lambda: writer.drop_collection("docbot"),
        "writer drops the evaluation's": lambda: writer.drop_collection("docbot_eval"),
        "writer creates a user": lambda: writer.create_user("intruder", "password-123"),
        "writer grants itself a role": lambda: writer.grant_role(NAMES.ingest_user, "admin"),
        "writer drops its database": lambda: writer.drop_database(NAMES.database),
    }
    try:
        seen = {what: vectordb.verify._attempt(op) for what, op in attempts.items()}
        searched = reader.search("docbot", [[0.1] * 384], limit=1, anns_field="dense")
    finally:
        reader.close()
        writer.close()
    assert seen == {what: "refused" for what in attempts}, seen
    assert searched and searched[0], "the reader searches the collection 05 filled"


def test_the_api_serves_as_the_read_only_user(lab_run, workbench, monkeypatch):
    """The chatbot API as it runs on the cluster: the reader's token, the recorded model endpoint and token."""
    from fastapi.testclient import TestClient

    from docbot_lib.pipeline.api import create_app

    for key, value in workbench["env"].items():  # each test starts with a clean environment (conftest)
        monkeypatch.setenv(key, value)
    settings = Settings.load(api_key="cluster-api-key-0123456789", max_tokens=24).as_reader()
    assert settings.milvus_user == NAMES.app_user and settings.llm_base_url == workbench["local"].llm_base_url
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer cluster-api-key-0123456789"},
            json={
                "model": "docbot",
                "messages": [{"role": "user", "content": "Which role should the chatbot's Milvus user get?"}],
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"], "the answer comes with the passages it was given"


def test_08_deploys_the_chatbot_with_only_its_keys_and_calls_it_through_its_api(lab_run, workbench):
    """The Secret holds the API key the notebook generated (into the learner's .env) and the model's token, nothing
    else; the pod reads Milvus as the reader; the notebook's openai client got an answer with sources from it."""
    kube, pod = workbench["kube"], workbench["pod"]
    api_key = read_env(workbench["milvus"].env_file)["DOCBOT_API_KEY"]
    secret = kube.get("api/v1", NAMESPACE, "secrets", "docbot-secrets")
    assert set(secret["data"]) == {"DOCBOT_API_KEY", "DOCBOT_LLM_API_KEY"}
    assert base64.b64decode(secret["data"]["DOCBOT_API_KEY"]).decode() == api_key
    assert base64.b64decode(secret["data"]["DOCBOT_LLM_API_KEY"]).decode() == workbench["local"].secret("llm_api_key")
    deployment = kube.get("apis/apps/v1", NAMESPACE, "deployments", "docbot")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == CHATBOT_IMAGE
    assert kube.get("apis/build.openshift.io/v1", NAMESPACE, "buildconfigs", "docbot-chatbot") is None
    route = kube.get("apis/route.openshift.io/v1", NAMESPACE, "routes", "docbot")
    assert route["spec"]["tls"]["termination"] == "edge"
    assert route["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"] == "5m"
    # the pod's environment, as the Deployment wires it: the reader's token, the learner's database
    assert pod.env["DOCBOT_MILVUS_TOKEN"].split(":")[0] == NAMES.app_user and pod.env["DOCBOT_USER"] == LEARNER
    assert pod.env["DOCBOT_API_KEY"] == api_key and "DOCBOT_MILVUS_APP_TOKEN" not in pod.env
    text = outputs(lab_run["08"].output)
    assert "Deployment/docbot: ready" in text
    assert f"the chatbot answers at https://docbot-{NAMESPACE}.apps.cluster.example.com" in text
    assert f"source(s) from {pod.url}/v1" in text and f"Doc Bot answered through its API at {pod.url}/v1" in text
    assert api_key not in lab_run["08"].output.read_text()
