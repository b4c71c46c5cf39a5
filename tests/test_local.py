"""The local stack, for real: up -> every service answers a real request -> down leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import time

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import stack_env

from docbot_lib.checks import check_all
from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.local.services import LOCAL_MODEL_NAME
from docbot_lib.local.stack import LocalStack


def s3_client(settings: Settings, secret: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=secret or settings.secret("s3_secret_key"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_s3_put_get_with_the_stacks_key_only(settings):
    s3 = s3_client(settings)
    s3.create_bucket(Bucket="stack-test")
    s3.put_object(Bucket="stack-test", Key="hello.txt", Body=b"hello from Doc Bot")
    assert s3.get_object(Bucket="stack-test", Key="hello.txt")["Body"].read() == b"hello from Doc Bot"
    with pytest.raises(ClientError) as refused:
        s3_client(settings, secret="not-the-secret").list_buckets()
    assert refused.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied")


def test_llm_chat_completion_through_openai_client(settings):
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=settings.llm_base_url, api_key=settings.secret("llm_api_key"))
    assert [m.id for m in client.models.list().data] == [LOCAL_MODEL_NAME]
    reply = client.chat.completions.create(
        model=settings.llm_model_name,
        max_tokens=16,
        temperature=0,
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens > 0
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=settings.llm_base_url, api_key="wrong-key").models.list()


def test_the_llm_key_is_not_on_the_servers_command_line(local_stack, settings):
    import httpx

    key = settings.secret("llm_api_key")
    llm = next(s for s in local_stack.status() if s.name == "llm")
    server = psutil.Process(llm.pid)
    for proc in (server, *server.children(recursive=True)):  # what `ps` shows every user of the machine
        assert key and not any(key in arg for arg in proc.cmdline()), "the LLM's API key is on its command line"
    assert httpx.get(f"{settings.llm_base_url}/models", timeout=30).status_code == 401  # the key still applies
    assert (
        httpx.get(f"{settings.llm_base_url}/models", timeout=30, headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )


def test_milvus_insert_and_search(settings):
    from pymilvus import MilvusClient

    client = MilvusClient(uri=settings.milvus_uri)
    try:
        if client.has_collection("stack_test"):
            client.drop_collection("stack_test")
        client.create_collection("stack_test", dimension=4, metric_type="COSINE")
        client.insert("stack_test", [{"id": i, "vector": [float(i == j) for j in range(4)]} for i in range(4)])
        client.flush("stack_test")
        hits = client.search("stack_test", data=[[0.0, 0.0, 1.0, 0.1]], limit=2)[0]
        assert hits[0]["id"] == 2
    finally:
        client.drop_collection("stack_test")
        client.close()


def test_embeddings_are_384_d_and_normalised(settings):
    from docbot_lib.clients.embeddings import get_embeddings

    vectors = get_embeddings(settings).embed_documents(["Milvus stores vectors.", "KServe serves models."])
    assert [len(v) for v in vectors] == [384, 384]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-4


def test_every_check_is_ok_on_the_running_stack(settings):
    report = check_all(settings)
    assert report.ok, str(report)


def test_up_is_idempotent(local_stack):
    before = {s.name: s.pid for s in local_stack.status()}
    local_stack.up()
    after = {s.name: s.pid for s in local_stack.status()}
    assert before == after and all(after.values())


def test_a_taken_port_is_a_clear_error(monkeypatch, tmp_path):
    env = stack_env(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["DOCBOT_LOCAL_S3_PORT"])))
        squatter.listen()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        stack = LocalStack(Settings.load())
        with pytest.raises(DocbotError) as taken:
            stack.up()
        assert f"port {env['DOCBOT_LOCAL_S3_PORT']} for the local s3 is taken" in str(taken.value)
        assert "DOCBOT_LOCAL_S3_PORT" in taken.value.fix
        assert stack.pids() == []  # nothing was started


@pytest.mark.stack  # a stack of its own
def test_lifecycle_crash_report_and_down_leaves_no_process(monkeypatch, tmp_path):
    """A stack of its own: up, kill one service (crash), status shows its log, down stops the rest."""
    for key, value in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    stack = LocalStack(Settings.load())
    try:
        stack.up()
        processes = [psutil.Process(pid) for pid in stack.pids()]
        assert len(processes) >= 5  # s3, llm, hub, Milvus Lite, the Milvus server (and their children)

        milvus = next(s for s in stack.status() if s.name == "milvus")
        os.killpg(milvus.pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(milvus.pid)], timeout=10)
        crashed = next(s for s in stack.status() if s.name == "milvus")
        assert crashed.state == "crashed"
        assert "MilvusLite gRPC server listening" in crashed.detail  # the tail of its log

        failed = {r.service: r for r in check_all(Settings.load())}
        assert not failed["Milvus"].ok and "docbot local up" in failed["Milvus"].fix
    finally:
        stack.down()
    time.sleep(0.5)
    assert [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert {s.state for s in stack.status()} == {"stopped"}
