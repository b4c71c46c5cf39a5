"""One Milvus for a class: each learner (`user`) gets a database, users and roles of their own. On the real
Milvus 2.3.5 server with auth on: three learners ingest and query at the same time, each finds only their own
documents, one learner's credentials are refused in another's database, and dropping one leaves the others."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest
from milvus_server import milvus_server  # noqa: F401 - the module's server

from docbot_lib.clients import milvus
from docbot_lib.core.envfile import read_env
from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.names import LabNames, expand_users
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline import chatbot_deploy, vectordb

LEARNERS = ["ann", "bob", "cyd"]
pytestmark = pytest.mark.stack


def test_names_per_learner_and_the_plain_ones():
    ann = LabNames("ann-lee")
    assert (ann.database, ann.reader_role, ann.writer_role, ann.app_user, ann.ingest_user, ann.s3_prefix) == (
        "docbot_ann_lee",
        "docbot_ann_lee_reader",
        "docbot_ann_lee_writer",
        "docbot_ann_lee_app",
        "docbot_ann_lee_ingest",
        "ann-lee/",
    )
    plain = LabNames()
    assert (plain.database, plain.app_user, plain.ingest_user, plain.s3_prefix) == (
        "default",
        vectordb.APP_USER,
        vectordb.INGEST_USER,
        "",
    )
    assert expand_users("user1..user3,zoe") == ["user1", "user2", "user3", "zoe"]
    for bad in ("Root", "a_b", "x" * 40, "user3..user1", "u1..v3"):
        with pytest.raises(DocbotError):
            expand_users(bad)
    for bad in ("ann\n", "Root", "a_b"):  # a learner's name from DOCBOT_USER is not stripped: a newline is refused too
        with pytest.raises(DocbotError, match="cannot name a learner's objects"):
            LabNames(bad)
    assert Settings.load(stack="cluster", user="bob").names.database == "docbot_bob"
    assert Settings.load(stack="local", user="bob").names.database == "default"  # Milvus Lite: one database


def _root_token(server) -> str:
    """Root's current token: the day-2 steps on this module's server may have changed it (they store it)."""
    stored = read_env(server.env_file).get(vectordb.ROOT_TOKEN_KEY)
    for token in filter(None, (stored, milvus.DEFAULT_ROOT_TOKEN)):
        try:
            milvus.connect(server.uri, token).close()
            return token
        except Exception:  # noqa: BLE001 - the other one
            continue
    raise AssertionError("no root password works")


@pytest.fixture(scope="module")
def learners(milvus_server, tmp_path_factory):  # noqa: F811
    """Each learner secured by root (their database, roles, users), with their own env file."""
    root_token = _root_token(milvus_server)
    if root_token == milvus.DEFAULT_ROOT_TOKEN:  # change it as the day-2 step would, and keep it
        vectordb.secure(milvus_server.uri, "docbot", milvus_server.env_file)
        root_token = _root_token(milvus_server)
    base = tmp_path_factory.mktemp("learners")
    out = {}
    for user in LEARNERS:
        env_file = base / f"{user}.env"
        env_file.write_text(f"{vectordb.ROOT_TOKEN_KEY}={root_token}\n")
        result = vectordb.secure(milvus_server.uri, "docbot", env_file, names=LabNames(user))
        assert f"database docbot_{user}" in result.created
        out[user] = result.tokens
    for user in LEARNERS:  # as notebook 04 does: prove the grants, which also waits until they apply
        report = vectordb.verify_least_privilege(milvus_server.uri, "docbot", out[user], names=LabNames(user))
        assert report.ok, str(report)
    return milvus_server, root_token, out, base


def _settings(server, user: str, token: str, home: Path) -> Settings:
    return Settings.load(stack="cluster", user=user, milvus_uri=server.uri, milvus_token=token, home=home)


def test_three_learners_ingest_and_query_at_once_and_see_only_their_own(learners):
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.store import search

    server, _root, tokens, base = learners
    for user in LEARNERS:  # each learner's own document, with a word only theirs
        docs = base / f"docs-{user}"
        docs.mkdir()
        (docs / f"{user}-notes.md").write_text(
            f"# Notes of {user}\n\nThe secret ingredient of {user} is {user}berry jam, kept in the {user} pantry.\n"
        )
    errors, reports = [], {}

    def run(user: str) -> None:
        try:
            settings = _settings(server, user, tokens[user][vectordb.INGEST_TOKEN_KEY], base / f"home-{user}")
            reports[user] = ingest(settings, [str(base / f"docs-{user}")])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{user}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(user,)) for user in LEARNERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert all(reports[user].new == 1 for user in LEARNERS)
    for user in LEARNERS:
        reader = _settings(server, user, tokens[user][vectordb.APP_TOKEN_KEY], base / f"home-{user}")
        hits = search(reader, "What is the secret ingredient?", k=5)
        assert hits and {h.source for h in hits} == {f"{user}-notes.md"}, (user, [h.source for h in hits])


def test_one_learners_credentials_are_refused_in_anothers_database(learners):
    server, _root, tokens, _base = learners
    ann_ingest, ann_app = tokens["ann"][vectordb.INGEST_TOKEN_KEY], tokens["ann"][vectordb.APP_TOKEN_KEY]
    row = {
        "pk": "p" * 64,
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
    seen = {}
    for who, token in (("ann's writer", ann_ingest), ("ann's reader", ann_app)):
        in_bob = milvus.connect(server.uri, token, database="docbot_bob")
        try:
            seen[f"{who} searches bob's"] = vectordb.verify._attempt(
                lambda: in_bob.search("docbot", [[0.1] * 384], limit=1, anns_field="dense")
            )
            seen[f"{who} queries bob's"] = vectordb.verify._attempt(
                lambda: in_bob.query("docbot", filter='pk != ""', output_fields=["text"], limit=1)
            )
            seen[f"{who} inserts into bob's"] = vectordb.verify._attempt(lambda: in_bob.insert("docbot", [row]))
            seen[f"{who} drops bob's collection"] = vectordb.verify._attempt(lambda: in_bob.drop_collection("docbot"))
            seen[f"{who} drops bob's database"] = vectordb.verify._attempt(lambda: in_bob.drop_database("docbot_bob"))
            seen[f"{who} lists the databases"] = vectordb.verify._attempt(lambda: in_bob.list_databases())
        finally:
            in_bob.close()
    assert seen == {what: "refused" for what in seen}, seen


def test_dropping_one_learner_leaves_the_others(learners):
    from docbot_lib.pipeline.store import search

    server, root, tokens, base = learners
    removed = vectordb.drop_learner(server.uri, root, LabNames("cyd"))
    assert "database docbot_cyd" in removed and "user docbot_cyd_app" in removed and "role docbot_cyd_writer" in removed
    assert vectordb.drop_learner(server.uri, root, LabNames("cyd")) == []  # nothing left to drop
    deadline = time.monotonic() + vectordb.GRANT_TIMEOUT  # the proxies learn of a dropped user as of a grant
    while True:
        try:
            milvus.connect(server.uri, tokens["cyd"][vectordb.APP_TOKEN_KEY], database="docbot_ann").close()
        except ServiceUnavailable as exc:
            assert "refused the password" in exc.problem
            break
        assert time.monotonic() < deadline, "a dropped learner still logs in"
        time.sleep(1)
    for user in ("ann", "bob"):
        reader = _settings(server, user, tokens[user][vectordb.APP_TOKEN_KEY], base / f"home-{user}")
        assert {h.source for h in search(reader, "What is the secret ingredient?", k=3)} == {f"{user}-notes.md"}
    with pytest.raises(DocbotError, match="plain"):
        vectordb.drop_learner(server.uri, root, LabNames())


# -- the administrator's commands -------------------------------------------------------------------------


@pytest.fixture
def admin(learners, monkeypatch):
    """The administrator's settings: the class's Milvus with root's token, the class's S3 bucket."""
    server, root, _tokens, _base = learners
    for key, value in {
        "DOCBOT_STACK": "cluster",
        "DOCBOT_MILVUS_URI": server.uri,
        "DOCBOT_MILVUS_ROOT_TOKEN": root,
        "AWS_S3_ENDPOINT": "https://minio.example",
        "AWS_ACCESS_KEY_ID": "admin-key",
        "AWS_SECRET_ACCESS_KEY": "admin-SECRET-value",
        "AWS_S3_BUCKET": "class-models",
    }.items():
        monkeypatch.setenv(key, value)
    return Settings.load()


def test_provision_creates_each_learner_once_and_their_tokens_work(admin, learners):
    from kubeapi import KubeApi

    from docbot_lib import lab

    server = learners[0]
    users = ["dee", "eve"]
    with KubeApi() as kube:
        first = lab.provision(admin, users, api_client=kube.api_client())
        text = str(first)
        assert first.count("created") == len(first.rows) == 2 * 11, text
        for user in users:
            assert (
                kube.get("api/v1", None, "namespaces", user)["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
            )
            binding = kube.get("apis/rbac.authorization.k8s.io/v1", user, "rolebindings", lab.ROLEBINDING)
            assert binding["roleRef"]["name"] == "edit" and binding["subjects"][0]["name"] == user
            assert kube.get("api/v1", user, "secrets", "aws-connection-models")
        secret = kube.get("api/v1", "dee", "secrets", lab.LEARNER_SECRET)
        stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert stored["DOCBOT_USER"] == "dee" and vectordb.ROOT_TOKEN_KEY not in stored
        assert stored[vectordb.APP_TOKEN_KEY].startswith("docbot_dee_app:")
        for secret_value in [stored[vectordb.APP_TOKEN_KEY].split(":", 1)[1], "admin-SECRET-value", learners[1]]:
            assert secret_value not in text
        report = vectordb.verify_least_privilege(server.uri, "docbot", stored, names=LabNames("dee"))
        assert report.ok, str(report)

        again = lab.provision(admin, users, api_client=kube.api_client())
        assert again.count("already there") == len(again.rows) == len(first.rows), str(again)
        assert "nothing changed: everything was already there" in str(again)
        writes = [r for r in kube.requests[len(kube.requests) // 2 :] if r.method in ("PUT", "DELETE")]
        assert not writes, "a second provision replaced or deleted something"
        secret_again = kube.get("api/v1", "dee", "secrets", lab.LEARNER_SECRET)
        assert secret_again["data"] == secret["data"], "the learner's passwords were kept"

        status = lab.status(admin, users, api_client=kube.api_client())
        assert "not deployed (notebook 03)" in str(status) and "none yet (notebook 05)" in str(status)

        gone = lab.teardown(admin, ["eve"], api_client=kube.api_client())
        assert "removed" in str(gone) and kube.get("api/v1", None, "namespaces", "eve") is None
        assert kube.get("api/v1", None, "namespaces", "dee")
        assert "eve" not in str(lab.status(admin, ["dee"], api_client=kube.api_client()))
    vectordb.drop_learner(server.uri, learners[1], LabNames("dee"))


def test_provision_reports_the_right_the_administrator_lacks(admin):
    from kubeapi import KubeApi

    from docbot_lib import lab

    with KubeApi(forbid={("create", "namespaces")}, user="helper") as kube:
        with pytest.raises(DocbotError) as err:
            lab.provision(admin, ["fay"], milvus=False, api_client=kube.api_client())
    assert "helper may not create namespaces in namespace fay" in err.value.problem
    assert "oc adm policy" in err.value.fix


def test_the_lab_command_line_shows_each_learners_progress(admin, capsys):
    from docbot_lib.cli import main

    assert main(["lab", "status", "--users", "ann,bob", "--no-kube"]) == 0
    out = capsys.readouterr().out
    for user in ("ann", "bob"):
        assert any(line.startswith(user) and "chunks in docbot" in line for line in out.splitlines()), out
    assert main(["lab", "status", "--users", "Ann", "--no-kube"]) == 2
    assert "cannot name a learner's objects" in capsys.readouterr().err


def test_a_provisioned_learner_runs_notebook_04_without_roots_password(learners, tmp_path, monkeypatch):
    """In a class the administrator keeps root's password: the learner's 04 sees their own users and proves them."""
    from docbot_lib.workshop import execute

    server, root, tokens, _base = learners
    env_file = tmp_path / ".env"  # what the learner copied from their docbot-learner Secret: no root token
    env_file.write_text("".join(f"{k}={v}\n" for k, v in tokens["bob"].items() if k != vectordb.ROOT_TOKEN_KEY))
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    monkeypatch.setenv("DOCBOT_USER", "bob")
    monkeypatch.setenv("DOCBOT_STACK", "cluster")  # a learner's names apply on a cluster
    run = execute(
        Path(__file__).resolve().parents[1] / "notebooks" / "04-deploy-milvus.ipynb",
        tmp_path / "04.ipynb",
        parameters={"MILVUS_URI": server.uri},
    )
    assert run.ok, run.error
    import nbformat

    shown = "\n".join(
        o.get("text", "")
        for c in nbformat.read(run.output, as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
        if isinstance(o.get("text"), str)
    )
    assert "Secured by your lab's administrator: your users docbot_bob_app and docbot_bob_ingest exist" in shown
    assert "OK    docbot_bob_app" in shown and "FAIL" not in shown, shown
    text = run.output.read_text()
    assert root.split(":", 1)[1] not in text and tokens["bob"][vectordb.APP_TOKEN_KEY].split(":", 1)[1] not in text


# -- one model for the class -------------------------------------------------------------------------------


def _class_model(kube) -> None:
    """The administrator's InferenceService in project `models`, Ready, and the token controller: each service
    account's token Secret gets a token of its own (so that one learner's can be told from another's)."""
    from docbot_lib.k8s import manifests
    from docbot_lib.pipeline import serving

    isvc = serving.inference_service_manifests(Settings.load(stack="cluster", s3_bucket="models"))[1]
    isvc["metadata"]["name"] = "mistral"
    manifests.apply([isvc], "models", kube.api_client())
    kube.set_status(
        "apis/serving.kserve.io/v1beta1",
        "models",
        "inferenceservices",
        "mistral",
        {"url": "https://mistral-models.apps.example", "conditions": [{"type": "Ready", "status": "True"}]},
    )

    def token_controller(k, _request) -> None:
        for (_api, _ns, plural, _name), obj in list(k.objects.items()):
            if (
                plural == "secrets"
                and obj.get("type") == "kubernetes.io/service-account-token"
                and not (obj.get("data") or {}).get("token")
            ):
                account = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                obj.setdefault("data", {})["token"] = base64.b64encode(f"tok-{account}-s3cret".encode()).decode()

    kube.hooks.append(token_controller)


def test_a_shared_model_gives_each_learner_a_token_that_may_only_get_it():
    from kubeapi import KubeApi

    from docbot_lib import lab

    settings = Settings.load(stack="cluster", milvus_uri="http://milvus.class:19530")
    with KubeApi() as kube:
        with pytest.raises(DocbotError, match="models/mistral is not ready"):
            lab.provision(settings, ["gus"], milvus=False, model="models/mistral", api_client=kube.api_client())
        _class_model(kube)
        first = lab.provision(
            settings, ["gus", "hal"], milvus=False, model="models/mistral", api_client=kube.api_client()
        )
        text = str(first)
        for user in ("gus", "hal"):
            role = kube.get("apis/rbac.authorization.k8s.io/v1", "models", "roles", f"mistral-{user}-view-role")
            assert role["rules"] == [
                {
                    "apiGroups": ["serving.kserve.io"],
                    "resources": ["inferenceservices"],
                    "resourceNames": ["mistral"],
                    "verbs": ["get"],
                }
            ]
            binding = kube.get("apis/rbac.authorization.k8s.io/v1", "models", "rolebindings", f"mistral-{user}-view")
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"mistral-{user}-sa"}]
            secret = kube.get("api/v1", user, "secrets", lab.LEARNER_SECRET)
            stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            assert stored["DOCBOT_LLM_BASE_URL"] == "https://mistral-models.apps.example/v1"
            assert stored["DOCBOT_LLM_MODEL_NAME"] == "mistral"
            assert stored["DOCBOT_LLM_API_KEY"] == f"tok-mistral-{user}-sa-s3cret"  # their own, not another's
            # their chatbot's pod reaches the model's token proxy in the model's project, and only from theirs
            assert stored["DOCBOT_LLM_CLUSTER_URL"] == "https://mistral-predictor.models.svc.cluster.local:8443/v1"
            policy = kube.get("apis/networking.k8s.io/v1", "models", "networkpolicies", f"mistral-{user}-ingress")
            assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "mistral"}}
            assert policy["spec"]["ingress"] == [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": user}}}],
                    "ports": [{"protocol": "TCP", "port": 8443}],
                }
            ]
            chatbot = chatbot_deploy.chatbot_manifests(
                Settings.load(
                    stack="cluster",
                    namespace=user,
                    **{
                        k.removeprefix("DOCBOT_").lower(): v
                        for k, v in stored.items()
                        if k.startswith("DOCBOT_LLM_") and k != "DOCBOT_LLM_API_KEY"
                    },
                )
            )
            config = next(o for o in chatbot if o["kind"] == "ConfigMap")
            assert config["data"]["DOCBOT_LLM_BASE_URL"] == stored["DOCBOT_LLM_CLUSTER_URL"]
            # the chatbot's Secret holds the reader's token and nothing else
            reader = kube.get("api/v1", user, "secrets", vectordb.READER_SECRET)
            assert set(reader["data"]) == {vectordb.APP_TOKEN_KEY}
        assert "s3cret" not in text
        assert kube.get("apis/serving.kserve.io/v1beta1", "models", "inferenceservices", "mistral")  # untouched

        again = lab.provision(
            settings, ["gus", "hal"], milvus=False, model="models/mistral", api_client=kube.api_client()
        )
        assert again.count("already there") == len(again.rows) == len(first.rows), str(again)

        gone = lab.teardown(settings, ["hal"], milvus=False, model="models/mistral", api_client=kube.api_client())
        assert gone.count("removed") == 6, str(gone)  # the project, the service account, its 3 objects, its policy
        assert kube.get("api/v1", "models", "serviceaccounts", "mistral-hal-sa") is None
        assert kube.get("apis/networking.k8s.io/v1", "models", "networkpolicies", "mistral-hal-ingress") is None
        assert kube.get("apis/networking.k8s.io/v1", "models", "networkpolicies", "mistral-gus-ingress")
        assert kube.get("api/v1", "models", "serviceaccounts", "mistral-gus-sa")
        assert kube.get("apis/serving.kserve.io/v1beta1", "models", "inferenceservices", "mistral")


def test_status_shows_each_learners_workbench():
    from kubeapi import KubeApi

    from docbot_lib import lab

    settings = Settings.load(stack="cluster")
    with KubeApi() as kube:
        notebooks = "apis/kubeflow.org/v1"
        kube.objects[(notebooks, "ivy", "notebooks", "ivy-wb")] = {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Notebook",
            "metadata": {"name": "ivy-wb", "namespace": "ivy", "resourceVersion": "1"},
            "status": {"readyReplicas": 1},
        }
        kube.objects[(notebooks, "jon", "notebooks", "jon-wb")] = {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Notebook",
            "metadata": {
                "name": "jon-wb",
                "namespace": "jon",
                "resourceVersion": "1",
                "annotations": {"kubeflow-resource-stopped": "2026-12-02T08:00:00Z"},
            },
        }
        report = lab.status(settings, ["ivy", "jon", "kim"], milvus=False, api_client=kube.api_client())
    rows = {(r.user, r.what): r.state for r in report.rows}
    assert rows[("ivy", "workbench (Notebook)")] == "running: ivy-wb"
    assert rows[("jon", "workbench (Notebook)")] == "stopped: jon-wb"
    assert rows[("kim", "workbench (Notebook)")] == "none yet (create one in the dashboard)"


# -- an S3 user per learner ----------------------------------------------------------------------------------


@pytest.fixture
def class_s3(tmp_path):
    """A moto S3 server with IAM auth on (as the local stack runs it), its administrator allowed IAM and S3, and
    the class's bucket: the storage of a class, whose IAM API makes one user per learner."""
    import json
    import subprocess
    import sys

    import boto3
    import httpx
    from conftest import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.2)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="class-admin")
        key = iam.create_access_key(UserName="class-admin")["AccessKey"]
        iam.put_user_policy(
            UserName="class-admin",
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}],
                }
            ),
        )
        settings = Settings.load(
            stack="cluster",
            s3_endpoint=url,
            s3_access_key=key["AccessKeyId"],
            s3_secret_key=key["SecretAccessKey"],
            s3_bucket="class-models",
        )
        _s3_as(settings).create_bucket(Bucket="class-models")
        yield settings
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def _s3_as(settings: Settings, key: tuple[str, str] | None = None):
    from pydantic import SecretStr

    from docbot_lib.clients.s3 import s3_client

    if key:
        settings = settings.model_copy(update={"s3_access_key": key[0], "s3_secret_key": SecretStr(key[1])})
    return s3_client(settings, max_attempts=1)


def _data_connection_key(kube, user: str) -> tuple[str, str]:
    data = kube.get("api/v1", user, "secrets", "aws-connection-models")["data"]
    return tuple(base64.b64decode(data[k]).decode() for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


def test_each_learner_gets_an_s3_user_limited_to_their_prefix(class_s3):
    from botocore.exceptions import ClientError
    from kubeapi import KubeApi

    from docbot_lib import lab

    admin_key = (class_s3.s3_access_key, class_s3.secret("s3_secret_key"))
    with KubeApi() as kube:
        first = lab.provision(class_s3, ["lee", "max"], milvus=False, s3_users=True, api_client=kube.api_client())
        text = str(first)
        assert [r.state for r in first.rows if r.what.startswith("S3 user")] == ["created", "created"], text
        keys = {user: _data_connection_key(kube, user) for user in ("lee", "max")}
        assert admin_key not in keys.values() and keys["lee"] != keys["max"]
        assert not any(secret in text for _access, secret in [*keys.values(), admin_key])
        lee, mx = _s3_as(class_s3, keys["lee"]), _s3_as(class_s3, keys["max"])
        lee.put_object(Bucket="class-models", Key="lee/models/m/config.json", Body=b"{}")
        mx.put_object(Bucket="class-models", Key="max/models/m/config.json", Body=b"{}")
        assert lee.get_object(Bucket="class-models", Key="lee/models/m/config.json")["Body"].read() == b"{}"
        for forbidden in (
            lambda: lee.get_object(Bucket="class-models", Key="max/models/m/config.json"),
            lambda: lee.put_object(Bucket="class-models", Key="max/models/m/config.json", Body=b"x"),
            lambda: lee.delete_object(Bucket="class-models", Key="max/models/m/config.json"),
            lambda: lee.put_object(Bucket="class-models", Key="shared.txt", Body=b"x"),
            lambda: lee.delete_bucket(Bucket="class-models"),
        ):
            with pytest.raises(ClientError) as err:
                forbidden()
            assert err.value.response["Error"]["Code"] == "AccessDenied"

        again = lab.provision(class_s3, ["lee", "max"], milvus=False, s3_users=True, api_client=kube.api_client())
        assert again.count("already there") == len(again.rows), str(again)
        assert _data_connection_key(kube, "lee") == keys["lee"], "the learner's key was kept"

        # a key lost on the storage side: the next provision gives a new one and replaces the data connection
        iam = lab.s3users._iam(class_s3)
        iam.delete_access_key(UserName="docbot-lee", AccessKeyId=keys["lee"][0])
        lab.provision(class_s3, ["lee"], milvus=False, s3_users=True, api_client=kube.api_client())
        renewed = _data_connection_key(kube, "lee")
        assert renewed != keys["lee"]
        _s3_as(class_s3, renewed).get_object(Bucket="class-models", Key="lee/models/m/config.json")

        gone = lab.teardown(class_s3, ["max"], milvus=False, s3_users=True, api_client=kube.api_client())
        assert ("max", "S3 user docbot-max", "removed") in [(r.user, r.what, r.state) for r in gone.rows]
        with pytest.raises(ClientError):
            mx.get_object(Bucket="class-models", Key="max/models/m/config.json")
        _s3_as(class_s3, renewed).get_object(Bucket="class-models", Key="lee/models/m/config.json")  # lee intact
        assert lab.teardown(class_s3, ["max"], milvus=False, s3_users=True, kube=False).rows[-1].state == "absent"

        # a learner's key is no administrator's: it may not make S3 users
        from pydantic import SecretStr

        as_lee = class_s3.model_copy(update={"s3_access_key": renewed[0], "s3_secret_key": SecretStr(renewed[1])})
        with pytest.raises(DocbotError, match="refused to create the S3 user docbot-ned"):
            lab.provision(as_lee, ["ned"], milvus=False, s3_users=True, kube=False)
