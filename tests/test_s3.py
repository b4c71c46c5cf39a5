"""docbot_lib.pipeline.s3 against the real moto S3 server of the local stack (IAM auth on), and the data connection
against a Kubernetes API stand-in (tests/kubeapi.py) that the real `kubernetes` client talks to."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import uuid
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from kubeapi import KubeApi

from docbot_lib.clients.s3 import s3_client
from docbot_lib.core.errors import AuthRefused, DocbotError, NotReachable, PermissionDenied, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.local.stack import LocalStack
from docbot_lib.pipeline import s3

MiB = 1 << 20
PART = 5 * MiB  # S3's minimum part size: multipart with small files, fast tests


def make_model(folder: Path, big: int = 12 * MiB) -> Path:
    """A model folder as 01 leaves it: weights, json, and hidden Hugging Face bookkeeping."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(big))
    (folder / "config.json").write_text('{"model_type": "mistral", "hidden_size": 4096}')
    (folder / "tokenizer.json").write_text('{"version": "1.0", "vocab": {"a": 1, "b": 2}}')
    (folder / "original").mkdir()
    (folder / "original" / "params.json").write_text('{"dim": 4096}')
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "config.json.metadata").write_text("sha\netag\n")
    return folder


VISIBLE = ["config.json", "model.safetensors", "original/params.json", "tokenizer.json"]


@pytest.fixture
def bucket_settings(settings) -> Settings:
    """The stack's settings with a bucket of this test's own (created by the upload)."""
    return Settings.load(s3_bucket=f"docbot-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def model(tmp_path) -> Path:
    return make_model(tmp_path / "model")


def objects(settings: Settings, prefix: str) -> dict[str, bytes]:
    client = s3_client(settings)
    return {
        key: client.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
        for key in s3.list_objects(client, settings.s3_bucket, prefix)
    }


def incomplete_uploads(settings: Settings, prefix: str) -> list[str]:
    page = s3_client(settings).list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=prefix)
    return [u["Key"] for u in page.get("Uploads", [])]


def local_bytes(model: Path) -> dict[str, bytes]:
    return {rel: (model / rel).read_bytes() for rel in VISIBLE}


# -- where things go ---------------------------------------------------------------------------------
def test_model_prefix_keeps_the_hugging_face_id():
    assert s3.model_prefix("mistralai/Mistral-7B-Instruct-v0.2") == "models/mistralai/Mistral-7B-Instruct-v0.2/"
    assert s3.model_prefix("/HuggingFaceTB/SmolLM2-135M-Instruct/") == "models/HuggingFaceTB/SmolLM2-135M-Instruct/"
    for bad in ("", "../etc", "a/../b", "a b/c", "org//name"):
        with pytest.raises(DocbotError, match="not a model id"):
            s3.model_prefix(bad)
    settings = Settings.load(s3_bucket="models")
    assert (
        s3.storage_uri(settings, "models/mistralai/Mistral-7B-Instruct-v0.2/")
        == "s3://models/models/mistralai/Mistral-7B-Instruct-v0.2"
    )


def test_a_missing_or_empty_model_folder_says_to_run_the_download_first(tmp_path):
    settings = Settings.load()
    with pytest.raises(DocbotError, match="does not exist. Fix: run 01-download-model.ipynb first"):
        s3.upload_model(settings, tmp_path / "nowhere")
    (tmp_path / "empty" / ".cache").mkdir(parents=True)  # only hidden things: nothing to upload
    with pytest.raises(DocbotError, match="is empty. Fix: run 01-download-model.ipynb first"):
        s3.upload_model(settings, tmp_path / "empty")
    with pytest.raises(DocbotError, match="minimum of 5 MiB"):
        s3.upload_model(settings, make_model(tmp_path / "m"), part_size=MiB)


# -- upload ------------------------------------------------------------------------------------------
def test_upload_creates_the_bucket_and_puts_an_exact_copy(bucket_settings, tmp_path):
    model = make_model(tmp_path / "model", big=40 * MiB)
    prefix = "models/test/upload/"
    report = s3.upload_model(bucket_settings, model, prefix, part_size=32 * MiB, progress=False)

    assert report.bucket_created
    assert sorted(report.uploaded) == [prefix + rel for rel in VISIBLE]  # hidden files stay home
    assert report.skipped == [] and report.bytes_uploaded == sum(len(b) for b in local_bytes(model).values())
    assert objects(bucket_settings, prefix) == {prefix + rel: data for rel, data in local_bytes(model).items()}

    big = s3_client(bucket_settings).head_object(
        Bucket=bucket_settings.s3_bucket, Key=prefix + "model.safetensors", ChecksumMode="ENABLED"
    )
    assert big["ETag"].endswith('-2"')  # 40 MiB in 32 MiB parts: a multipart object
    assert big["Metadata"] == {
        "sha256": hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest(),
        "part-size": str(32 * MiB),
    }
    data = (model / "model.safetensors").read_bytes()
    part_crcs = b"".join(zlib.crc32(data[i : i + 32 * MiB]).to_bytes(4, "big") for i in range(0, len(data), 32 * MiB))
    # the server's own checksum of what it received: the CRC32 of the two parts' CRC32s
    assert big["ChecksumCRC32"].split("-")[0] == base64.b64encode(zlib.crc32(part_crcs).to_bytes(4, "big")).decode()
    verified = s3.verify_model(bucket_settings, model, prefix, reread=True)
    assert verified.ok and sorted(verified.verified) == [prefix + rel for rel in VISIBLE], str(verified)


def test_an_unchanged_folder_uploads_nothing_and_a_changed_file_alone_goes_again(bucket_settings, model):
    prefix = "models/test/resync/"
    s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)

    sent = []
    again = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False, on_progress=sent.append)
    assert again.uploaded == [] and sum(sent) == 0 and again.bytes_uploaded == 0
    assert sorted(again.skipped) == [prefix + rel for rel in VISIBLE]
    assert again.bytes_skipped == sum(len(b) for b in local_bytes(model).values())

    # same size, other bytes: only a checksum tells them apart
    config = model / "config.json"
    config.write_text(config.read_text().replace("4096", "8192"))
    changed = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    assert changed.uploaded == [prefix + "config.json"]
    assert len(changed.skipped) == len(VISIBLE) - 1 and changed.bytes_uploaded == config.stat().st_size
    assert objects(bucket_settings, prefix)[prefix + "config.json"] == config.read_bytes()
    assert s3.verify_model(bucket_settings, model, prefix).ok


def test_an_object_whose_bytes_differ_is_caught_by_the_servers_checksum(bucket_settings, model):
    """Same size and the same sha256 metadata, other bytes: the server's CRC32 gives it away."""
    prefix = "models/test/tampered/"
    s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    client = s3_client(bucket_settings)
    key = prefix + "tokenizer.json"
    honest = client.head_object(Bucket=bucket_settings.s3_bucket, Key=key)
    body = (model / "tokenizer.json").read_bytes().replace(b'"a": 1', b'"a": 9')
    client.put_object(
        Bucket=bucket_settings.s3_bucket, Key=key, Body=body, Metadata=honest["Metadata"], ChecksumAlgorithm="CRC32"
    )

    report = s3.verify_model(bucket_settings, model, prefix)
    assert not report.ok and report.mismatched == {
        key: "the server's CRC32 of the bytes it holds differs from the local file's"
    }
    fixed = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    assert fixed.uploaded == [key]
    assert objects(bucket_settings, prefix)[key] == (model / "tokenizer.json").read_bytes()


class Interrupted(Exception):
    pass


def test_an_interrupted_upload_leaves_nothing_partial_and_the_next_run_finishes(bucket_settings, tmp_path):
    model = make_model(tmp_path / "model", big=30 * MiB)  # 6 parts of 5 MiB
    prefix = "models/test/interrupted/"
    sent = []

    def crash_after_12_mib(n: int) -> None:
        sent.append(n)
        if sum(sent) > 12 * MiB:
            raise Interrupted("the client died mid-upload")

    with pytest.raises(Interrupted):
        s3.upload_model(
            bucket_settings,
            model,
            prefix,
            part_size=PART,
            concurrency=2,
            progress=False,
            on_progress=crash_after_12_mib,
        )
    assert incomplete_uploads(bucket_settings, prefix) == []  # s3transfer aborted the multipart upload
    left = objects(bucket_settings, prefix)
    assert prefix + "model.safetensors" not in left  # no partial object
    local = local_bytes(model)
    assert all(data == local[key.removeprefix(prefix)] for key, data in left.items())  # only whole files

    resumed = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    assert prefix + "model.safetensors" in resumed.uploaded
    assert sorted(resumed.uploaded + resumed.skipped) == [prefix + rel for rel in VISIBLE]
    assert sorted(resumed.skipped) == sorted(left)  # what was finished is not sent again
    assert incomplete_uploads(bucket_settings, prefix) == []
    assert s3.verify_model(bucket_settings, model, prefix, reread=True).ok


def test_the_next_run_aborts_uploads_a_killed_run_left_behind(bucket_settings, model):
    """A killed process cannot abort its multipart upload: the next run does."""
    prefix = "models/test/killed/"
    s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    client = s3_client(bucket_settings)
    key = prefix + "model.safetensors"
    upload = client.create_multipart_upload(Bucket=bucket_settings.s3_bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket_settings.s3_bucket, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(PART))
    assert incomplete_uploads(bucket_settings, prefix) == [key]

    report = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    assert report.aborted_uploads == 1 and report.uploaded == [] and "1 incomplete upload(s)" in str(report)
    assert incomplete_uploads(bucket_settings, prefix) == []
    assert s3.verify_model(bucket_settings, model, prefix).ok


def test_objects_with_no_local_file_are_reported_and_deleted_on_request(bucket_settings, model):
    prefix = "models/test/extra/"
    s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    (model / "original" / "params.json").unlink()
    stale = prefix + "original/params.json"

    kept = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False)
    assert kept.extra == [stale] and kept.deleted == []
    report = s3.verify_model(bucket_settings, model, prefix)
    assert not report.ok and report.extra == [stale] and "NOT LOCAL" in str(report)

    cleaned = s3.upload_model(bucket_settings, model, prefix, part_size=PART, progress=False, delete_extra=True)
    assert cleaned.deleted == [stale] and stale not in objects(bucket_settings, prefix)
    assert s3.verify_model(bucket_settings, model, prefix).ok


def test_wrong_credentials_are_one_clear_error_without_the_secret(settings, model):
    wrong = Settings.load(s3_secret_key="not-the-secret-" + uuid.uuid4().hex)
    with pytest.raises(AuthRefused) as refused:
        s3.upload_model(wrong, model, "models/test/denied/", part_size=PART, progress=False)
    assert refused.value.service == "s3" and refused.value.exit_code == 3
    message = str(refused.value)
    assert "refused the credentials" in message and "DOCBOT_S3_SECRET_KEY" in message
    assert wrong.secret("s3_secret_key") not in message and settings.secret("s3_secret_key") not in message


def test_s3_stopping_mid_upload_is_one_clear_error(tmp_path, model):
    """A private S3 server (the real moto process), killed while the upload runs."""
    base = Settings.load(home=tmp_path / "home", local_s3_port=free_port())
    stack = LocalStack(base)
    stack.up(only=["s3"])
    try:
        settings = base.reload()
        pid = stack.state()["services"]["s3"]["pid"]
        sent = []

        def kill_s3(n: int) -> None:
            sent.append(n)
            if len(sent) == 1:
                os.killpg(pid, signal.SIGKILL)

        with pytest.raises(NotReachable) as gone:
            s3.upload_model(settings, model, "models/test/gone/", part_size=PART, progress=False, on_progress=kill_s3)
        assert gone.value.service == "s3"
        message = str(gone.value)
        assert f"S3 at {settings.s3_endpoint} does not answer" in message
        assert "docbot local up" in message and "run again" in message
        assert settings.secret("s3_secret_key") not in message
    finally:
        stack.down()


# -- the data connection ------------------------------------------------------------------------------
def test_the_data_connection_secret_is_what_the_dashboard_makes_and_masked_for_display():
    settings = Settings.load(
        stack="cluster",
        s3_endpoint="https://minio.example:9000",
        s3_access_key="minio-user",
        s3_secret_key="minio-SECRET-value",
        s3_bucket="models",
        s3_region="eu-west-1",
    )
    shown = s3.data_connection_secret(settings, "docbot-models", "docbot")
    assert shown["metadata"] == {
        "name": "aws-connection-docbot-models",
        "namespace": "docbot",
        "labels": {"opendatahub.io/dashboard": "true", "opendatahub.io/managed": "true"},
        "annotations": {"opendatahub.io/connection-type": "s3", "openshift.io/display-name": "docbot-models"},
    }
    assert shown["stringData"] == {
        "AWS_ACCESS_KEY_ID": "******",
        "AWS_SECRET_ACCESS_KEY": "******",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_S3_ENDPOINT": "https://minio.example:9000",
        "AWS_S3_BUCKET": "models",
    }
    text = s3.to_yaml(shown)
    assert yaml.safe_load(text) == shown and "minio-SECRET-value" not in text + repr(shown)
    assert "opendatahub.io/dashboard: 'true'" in text  # a string, as Kubernetes wants labels

    real = s3.data_connection_secret(settings, "docbot-models", reveal=True)["stringData"]
    assert (real["AWS_ACCESS_KEY_ID"], real["AWS_SECRET_ACCESS_KEY"]) == ("minio-user", "minio-SECRET-value")
    aws = Settings.load(stack="cluster", s3_access_key="AKIA", s3_secret_key="x", s3_region="eu-west-1")
    assert s3.data_connection_secret(aws, "m")["stringData"]["AWS_S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"

    for bad in ("Docbot", "-x", "a_b", "x" * 49):
        with pytest.raises(DocbotError, match="cannot name a data connection"):
            s3.data_connection_secret(settings, bad)
    with pytest.raises(DocbotError, match="no S3 access key"):
        s3.data_connection_secret(Settings.load(stack="cluster"), "docbot-models")


def test_s3s_yaml_never_shows_the_keys_of_a_data_connection(cluster_settings):
    """s3.to_yaml is manifests.to_yaml: the keys are masked even in the Secret that is applied (reveal=True,
    and its base64 `data` form as the cluster returns it); what is no secret stays readable."""
    real = s3.data_connection_secret(cluster_settings, "docbot-models", "docbot", reveal=True)
    encoded = {**real, "data": {k: base64.b64encode(v.encode()).decode() for k, v in real["stringData"].items()}}
    del encoded["stringData"]
    for secret in (real, encoded):
        text = s3.to_yaml(secret)
        assert "minio-SECRET-value" not in text and "minio-user" not in text
        assert base64.b64encode(b"minio-SECRET-value").decode() not in text
        values = next(v for k, v in yaml.safe_load(text).items() if k in ("data", "stringData"))
        assert values["AWS_SECRET_ACCESS_KEY"] == values["AWS_ACCESS_KEY_ID"] == "******"
    shown = yaml.safe_load(s3.to_yaml(real))["stringData"]
    assert (shown["AWS_S3_ENDPOINT"], shown["AWS_S3_BUCKET"]) == ("http://minio.minio.svc:9000", "models")
    assert real["stringData"]["AWS_SECRET_ACCESS_KEY"] == "minio-SECRET-value"  # the dict itself is left as it was


@pytest.fixture
def cluster_settings() -> Settings:
    return Settings.load(
        stack="cluster",
        s3_endpoint="http://minio.minio.svc:9000",
        s3_access_key="minio-user",
        s3_secret_key="minio-SECRET-value",
        s3_bucket="models",
    )


def test_apply_creates_the_secret_then_replaces_it(cluster_settings):
    with KubeApi(token="workbench-token", namespaces={"docbot"}) as kube:
        client = kube.api_client()
        assert s3.apply_data_connection(cluster_settings, "docbot", "docbot-models", api_client=client) == "created"
        stored = kube.get("api/v1", "docbot", "secrets", "aws-connection-docbot-models")
        assert stored["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
        decoded = {k: base64.b64decode(v).decode() for k, v in stored["data"].items()}
        assert decoded["AWS_SECRET_ACCESS_KEY"] == "minio-SECRET-value"  # the real value reaches the cluster
        assert decoded["AWS_S3_ENDPOINT"] == "http://minio.minio.svc:9000"

        rotated = cluster_settings.model_copy(update={"s3_bucket": "models-v2"})
        assert s3.apply_data_connection(rotated, "docbot", "docbot-models", api_client=client) == "replaced"
        assert [(r.method, r.path) for r in kube.requests] == [
            ("POST", "/api/v1/namespaces/docbot/secrets"),
            ("POST", "/api/v1/namespaces/docbot/secrets"),  # 409 AlreadyExists
            ("PUT", "/api/v1/namespaces/docbot/secrets/aws-connection-docbot-models"),
        ]
        assert kube.bodies("PUT")[0]["stringData"]["AWS_S3_BUCKET"] == "models-v2"
        stored = kube.get("api/v1", "docbot", "secrets", "aws-connection-docbot-models")
        assert base64.b64decode(stored["data"]["AWS_S3_BUCKET"]).decode() == "models-v2"
        assert stored["metadata"]["resourceVersion"] != "1"


def test_apply_uses_the_kubeconfig_when_no_client_is_given(cluster_settings, tmp_path, monkeypatch):
    import kubernetes.config.kube_config as kube_config

    with KubeApi(token="user-token") as kube:
        config = tmp_path / "kubeconfig"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "lab",
                    "clusters": [{"name": "lab", "cluster": {"server": kube.url}}],
                    "users": [{"name": "me", "user": {"token": "user-token"}}],
                    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "me"}}],
                }
            )
        )
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
        assert s3.apply_data_connection(cluster_settings, "docbot", "docbot-models") == "created"
        assert kube.get("api/v1", "docbot", "secrets", "aws-connection-docbot-models")

        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
        with pytest.raises(DocbotError, match="no Kubernetes cluster is configured.*oc login"):
            s3.apply_data_connection(cluster_settings, "docbot", "docbot-models")


def test_apply_refusals_are_clear_errors_without_the_secret(cluster_settings):
    secret = cluster_settings.secret("s3_secret_key")
    with KubeApi(token="right", namespaces={"docbot"}, forbid={("create", "secrets")}) as kube:
        with pytest.raises(ServiceUnavailable, match=r"refused the credentials \(401\)"):
            s3.apply_data_connection(cluster_settings, "docbot", "m", api_client=kube.api_client(token="wrong"))
        with pytest.raises(
            PermissionDenied, match=r"may not create secrets in namespace docbot \(HTTP 403\)"
        ) as denied:
            s3.apply_data_connection(cluster_settings, "docbot", "m", api_client=kube.api_client())
        assert secret not in str(denied.value)
    with KubeApi(namespaces={"docbot"}) as kube:
        with pytest.raises(DocbotError, match="oc new-project elsewhere"):
            s3.apply_data_connection(cluster_settings, "elsewhere", "m", api_client=kube.api_client())
        url = kube.url
    from kubernetes import client

    nobody = client.ApiClient(client.Configuration(host=url))  # the stand-in has stopped: nothing listens
    nobody.configuration.retries = 0
    with pytest.raises(ServiceUnavailable, match="does not answer"):
        s3.apply_data_connection(cluster_settings, "docbot", "m", api_client=nobody)


def test_a_learner_of_a_class_has_their_own_prefix_in_the_shared_bucket():
    from docbot_lib.core.settings import Settings

    assert s3.learner_model_prefix(Settings.load(model_id="org/m")) == "models/org/m/"
    assert s3.learner_model_prefix(Settings.load(stack="cluster", model_id="org/m", user="ann")) == "ann/models/org/m/"
