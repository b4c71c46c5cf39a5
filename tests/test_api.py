"""The chatbot API and its web UI, served by uvicorn against the real local stack (llama.cpp, Milvus Lite)
with the sample documents ingested: driven through the `openai` client, LangChain's ChatOpenAI, plain HTTP
and a real headless Chromium. The 135M model answers poorly: assertions are on structure, never on facts.
Each answer costs seconds, so the tests share one server and ask few questions."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time

import httpx
import pytest
from conftest import free_port

from docbot_lib.core.errors import DocbotError
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.api import create_app

KEY = "test-api-key-0123456789"
COLLECTION = "test_api"
QUESTION = "How does KServe serve a model on OpenShift AI?"
AUTH = {"Authorization": f"Bearer {KEY}"}

pytestmark = pytest.mark.stack


@contextlib.contextmanager
def running(app):
    """Serve the app with uvicorn in a thread on a free port; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_settings(_session_stack, tmp_path_factory) -> Settings:
    """The session stack's settings with an API key, one answer at a time, short answers; the sample
    documents ingested into a collection of this module."""
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    _stack, env = _session_stack
    with pytest.MonkeyPatch.context() as mp:  # module scope: isolate from the developer's env by hand
        for name in list(os.environ):
            if name.startswith(("DOCBOT_", "AWS_")):
                mp.delenv(name)
        mp.setenv("DOCBOT_ENV_FILE", str(tmp_path_factory.mktemp("env") / "no.env"))
        settings = Settings.load(
            **{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()},
            api_key=KEY,
            api_max_concurrency=1,
            max_tokens=64,
            milvus_collection=COLLECTION,
        )
        docs = prepare_sample_docs(tmp_path_factory.mktemp("docs"))
        ingest(settings, [str(docs)], collection=COLLECTION, progress=False)
    return settings


@pytest.fixture(scope="module")
def base_url(api_settings):
    with running(create_app(api_settings)) as url:
        yield url


def metric(base_url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", headers=AUTH).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# -- no LLM call ------------------------------------------------------------------------------------------


def test_every_v1_route_and_metrics_need_the_key_and_health_is_open(base_url):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v1/sources?source=x")):
            reply = httpx.request(
                method, f"{base_url}{path}", headers=headers, json={"messages": [{"role": "user", "content": "hi"}]}
            )
            assert reply.status_code == 401, (headers, path)
            assert "API key" in reply.json()["error"]["message"]
    models = httpx.get(f"{base_url}/v1/models", headers=AUTH)
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == [COLLECTION]
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base_url}/metrics").status_code == 401
    assert "docbot_requests_total" in httpx.get(f"{base_url}/metrics", headers=AUTH).text
    assert metric(base_url, "docbot_requests_total", status="401") >= 3
    ready = httpx.get(f"{base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"], ready.text
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and "<title>Doc Bot</title>" in page.text


def test_no_api_key_configured_is_refused_at_start(api_settings):
    with pytest.raises(DocbotError, match="DOCBOT_API_KEY"):
        create_app(api_settings.model_copy(update={"api_key": None}))


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "user"}], "stream": "yes please"},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"model": "docbot"},
    ],
)
def test_malformed_requests_get_422(base_url, body):
    reply = httpx.post(f"{base_url}/v1/chat/completions", headers=AUTH, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["message"]


def test_malformed_json_gets_422(base_url):
    reply = httpx.post(
        f"{base_url}/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"}, content=b"{not json"
    )
    assert reply.status_code == 422


def test_the_key_is_checked_before_the_body_is_read(base_url):
    # headers announcing 30 MB and not one byte of body: an app that read the body first would wait for it
    with socket.create_connection(("127.0.0.1", int(base_url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 31457280\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 401 "), "the body was awaited before the key was checked"
    # and a real 30 MB body, invalid JSON at its end: parsed first, it would be a 422
    body = b'{"messages": [{"role": "user", "content": "' + b"x" * (30 * 1024 * 1024)
    start = time.monotonic()
    reply = httpx.post(
        f"{base_url}/v1/chat/completions", content=body, timeout=60, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 401 and "API key" in reply.json()["error"]["message"]
    assert time.monotonic() - start < 30


def test_a_body_over_the_limit_gets_413_from_its_length_or_as_it_streams_in(base_url):
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "padding": "x" * 70 * 1024}).encode()
    body += b" " * (71 * 1024 - len(body))  # 71 KiB exactly
    reply = httpx.post(
        f"{base_url}/v1/chat/completions", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert reply.status_code == 413, reply.text
    assert "the request body is 71 KiB" in reply.json()["error"]["message"]
    assert "DOCBOT_API_MAX_BODY_KB=64" in reply.json()["error"]["message"]

    def chunked():  # no Content-Length: the limit must cut the body off while it streams in
        yield b'{"messages": [{"role": "user", "content": "hi"}], "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    reply = httpx.post(
        f"{base_url}/v1/chat/completions", content=chunked(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert reply.status_code == 413, reply.text
    assert "DOCBOT_API_MAX_BODY_KB=64" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    "messages, setting",
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 25
            + [{"role": "user", "content": "and?"}],
            "DOCBOT_API_MAX_MESSAGES=50",
        ),
        ([{"role": "user", "content": "word " * 1601}], "DOCBOT_API_MAX_MESSAGE_CHARS=8000"),
    ],
)
def test_too_many_messages_or_one_too_long_gets_422_naming_the_setting(base_url, messages, setting):
    reply = httpx.post(f"{base_url}/v1/chat/completions", headers=AUTH, timeout=300, json={"messages": messages})
    assert reply.status_code == 422, reply.text
    assert setting in reply.json()["error"]["message"]


def test_docs_openapi_and_metrics_need_the_key_unless_public(api_settings):
    paths = ("/docs", "/redoc", "/openapi.json", "/metrics")
    with running(create_app(api_settings)) as url:
        for path in paths:
            assert httpx.get(f"{url}{path}").status_code == 401, path
            assert httpx.get(f"{url}{path}", headers=AUTH).status_code == 200, path
        assert httpx.get(f"{url}/").status_code == 200  # the web UI asks for the key in the page
    with running(create_app(api_settings.model_copy(update={"api_public_docs": True}))) as url:
        for path in paths:
            assert httpx.get(f"{url}{path}").status_code == 200, path
        assert httpx.get(f"{url}/v1/models").status_code == 401


def test_readyz_shows_details_only_with_the_key_is_cached_and_keeps_milvus_open(api_settings, monkeypatch):
    import pymilvus

    from docbot_lib.clients import llm
    from docbot_lib.pipeline.store import open_store

    closed, probes = [], []
    real_close, real_probe = pymilvus.MilvusClient.close, llm.llm_serves_model
    monkeypatch.setattr(pymilvus.MilvusClient, "close", lambda self: closed.append(self) or real_close(self))
    monkeypatch.setattr(llm, "llm_serves_model", lambda *a, **k: probes.append(1) or real_probe(*a, **k))
    with running(create_app(api_settings)) as url:
        anonymous = httpx.get(f"{url}/readyz")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"ready": True, "checks": {"llm": {"ok": True}, "milvus": {"ok": True}}}
        detailed = httpx.get(f"{url}/readyz", headers=AUTH).json()
        assert detailed["ready"] and all(c["detail"] for c in detailed["checks"].values())
        assert len(probes) == 1  # the second answer came from the cache
    assert closed == []  # closing a client would drop pymilvus's shared connection for every request
    assert open_store(api_settings, COLLECTION).client.has_collection(COLLECTION)


def test_stored_source_text_is_served_and_an_unknown_one_is_404(base_url):
    doc = httpx.get(f"{base_url}/v1/sources", params={"source": "rag-basics.txt"}, headers=AUTH)
    assert doc.status_code == 200, doc.text
    assert doc.json()["chunks"] and all(c["text"] for c in doc.json()["chunks"])
    assert httpx.get(f"{base_url}/v1/sources", params={"source": "nope.md"}, headers=AUTH).status_code == 404


def test_llm_down_gives_503_and_the_server_stays_up(api_settings):
    dead = api_settings.model_copy(update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    with running(create_app(dead)) as url:
        import openai

        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(
                    model=COLLECTION, stream=stream, messages=[{"role": "user", "content": QUESTION}]
                )
            assert caught.value.status_code == 503
            message = caught.value.body["message"]
            assert "LLM does not answer" in message and "Fix:" in message and "Traceback" not in message
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json() == {
            "ready": False,
            "checks": {"llm": {"ok": False}, "milvus": {"ok": True}},
        }  # no URL, no exception text
        detail = httpx.get(f"{url}/readyz", headers=AUTH).json()["checks"]["llm"]["detail"]
        assert "does not answer" in detail and "Fix:" in detail
        assert metric(url, "docbot_errors_total", cause="llm") == 2
        assert metric(url, "docbot_answers_in_flight") == 0  # the slots were given back


def test_llm_stopped_gives_503_and_the_bot_recovers_when_it_is_back(api_settings, tmp_path):
    """A real LLM server of its own: answering, stopped (503, the API stays up), started again (answers)."""
    import openai
    from conftest import stack_env

    from docbot_lib.local.stack import LocalStack

    env = stack_env(tmp_path / "home")
    own = LocalStack(Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()}))
    own.up(only=["llm"])
    try:
        llm = own.settings.reload()
        settings = api_settings.model_copy(update={"llm_base_url": llm.llm_base_url, "llm_api_key": llm.llm_api_key})
        with running(create_app(settings)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
            ask = lambda: client.chat.completions.create(  # noqa: E731
                model=COLLECTION, max_tokens=16, messages=[{"role": "user", "content": QUESTION}]
            )
            assert ask().choices[0].message.content
            own.down()
            with pytest.raises(openai.APIStatusError) as caught:
                ask()
            assert caught.value.status_code == 503 and httpx.get(f"{url}/healthz").status_code == 200
            own.up(only=["llm"])
            assert ask().choices[0].message.content  # back: the same app answers again
    finally:
        own.down()


def test_milvus_collection_missing_gives_503(api_settings):
    app = create_app(api_settings, collection="never_ingested")
    with running(app) as url:
        reply = httpx.post(
            f"{url}/v1/chat/completions", headers=AUTH, json={"messages": [{"role": "user", "content": QUESTION}]}
        )
        assert reply.status_code == 503
        assert "never_ingested" in reply.json()["error"]["message"] and "ingest" in reply.json()["error"]["message"]
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"llm": {"ok": True}, "milvus": {"ok": False}}


# -- a few real answers ----------------------------------------------------------------------------------


def test_openai_client_answers_with_sources_and_metrics_move(base_url):
    import openai

    before = {
        name: metric(base_url, name, **labels)
        for name, labels in (
            ("docbot_requests_total", {"status": "200"}),
            ("docbot_generated_tokens_total", {}),
            ("docbot_retrieval_seconds_count", {}),
            ("docbot_time_to_first_token_seconds_count", {}),
        )
    }
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    completion = client.chat.completions.create(
        model=COLLECTION,
        messages=[
            {"role": "system", "content": "ignored: the bot has its own instructions"},
            {"role": "user", "content": QUESTION},
        ],
    )
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.strip()
    sources = completion.model_extra["sources"]
    assert sources and {"number", "title", "source", "cited"} <= set(sources[0])
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    grounding = completion.model_extra["grounding"]
    assert {"grounded", "cited", "support", "note", "best"} <= set(grounding)
    assert (grounding["note"] == "") == grounding["grounded"] and grounding["best"]["number"] == 1
    assert completion.usage.completion_tokens > 0
    after = {
        name: metric(base_url, name, **labels)
        for name, labels in (
            ("docbot_requests_total", {"status": "200"}),
            ("docbot_generated_tokens_total", {}),
            ("docbot_retrieval_seconds_count", {}),
            ("docbot_time_to_first_token_seconds_count", {}),
        )
    }
    assert after["docbot_requests_total"] == before["docbot_requests_total"] + 1
    assert (
        after["docbot_generated_tokens_total"]
        == before["docbot_generated_tokens_total"] + completion.usage.completion_tokens
    )
    assert after["docbot_retrieval_seconds_count"] == before["docbot_retrieval_seconds_count"] + 1
    assert after["docbot_time_to_first_token_seconds_count"] == before["docbot_time_to_first_token_seconds_count"] + 1


def test_openai_client_streams_then_sends_sources_before_done(base_url):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    chunks = list(
        client.chat.completions.create(
            model=COLLECTION,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": QUESTION}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert not last.choices and last.model_extra["sources"] and last.usage.completion_tokens > 0
    assert "grounded" in last.model_extra["grounding"]

    # on the wire: the sources event is the one just before [DONE]
    with httpx.stream(
        "POST",
        f"{base_url}/v1/chat/completions",
        headers=AUTH,
        timeout=300,
        json={"stream": True, "messages": [{"role": "user", "content": QUESTION}]},
    ) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        data = [line[5:].strip() for line in reply.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]" and "sources" in json.loads(data[-2])


def test_langchain_chat_openai_invokes_and_streams_with_history(base_url):
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{base_url}/v1", api_key=KEY, model=COLLECTION, max_retries=0, timeout=300)
    reply = llm.invoke([HumanMessage("What is a ServingRuntime?")])
    assert isinstance(reply, AIMessage) and reply.content.strip()
    # a follow-up: the history goes in the messages (the bot rewrites the question, then answers)
    pieces = list(
        llm.stream(
            [
                HumanMessage("What is a ServingRuntime?"),
                AIMessage(reply.content),
                HumanMessage("And which port does it use?"),
            ]
        )
    )
    assert len(pieces) > 1 and "".join(p.content for p in pieces).strip()


def test_a_conversation_too_long_for_the_context_is_trimmed_oldest_first(base_url, api_settings):
    turn = "The quick brown fox jumps over the lazy dog. " * 66  # ~3000 characters, ~700 tokens
    history = [("user" if i % 2 == 0 else "assistant", f"{i}: {turn}") for i in range(16)]
    # ~48 KB of conversation (under the body limit), far more than the local model's 4096 tokens
    messages = [{"role": role, "content": text} for role, text in history] + [{"role": "user", "content": QUESTION}]
    reply = httpx.post(f"{base_url}/v1/chat/completions", headers=AUTH, timeout=300, json={"messages": messages})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].strip() and reply.json()["sources"]

    from docbot_lib.pipeline.api.protocol import ApiError, fit_history

    kept = fit_history(QUESTION, history, api_settings, window=4096)
    assert 0 < len(kept) < len(history) and kept == history[-len(kept) :] and kept[0][0] == "user"
    assert fit_history(QUESTION, history, api_settings, window=10**6) == history
    with pytest.raises(ApiError, match="does not fit the model's context"):
        fit_history(turn * 2, [], api_settings, window=2048)


def test_beyond_the_concurrency_bound_a_request_waits_for_a_slot(base_url):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    first = client.chat.completions.create(
        model=COLLECTION, stream=True, messages=[{"role": "user", "content": QUESTION}]
    )
    waited: dict[str, httpx.Response] = {}
    with first:
        streamed = iter(first)
        next(streamed)  # the first answer holds the only slot (api_max_concurrency=1) until it ends
        second = threading.Thread(
            target=lambda: waited.setdefault(
                "reply",
                httpx.post(
                    f"{base_url}/v1/chat/completions",
                    headers=AUTH,
                    timeout=300,
                    json={"messages": [{"role": "user", "content": "hi"}]},
                ),
            )
        )
        second.start()
        rest = list(streamed)
    second.join(timeout=300)
    assert rest and not rest[-1].choices and rest[-1].model_extra["sources"]
    assert waited["reply"].status_code == 200, waited["reply"].text  # it queued, then was answered
    assert metric(base_url, "docbot_answers_in_flight") == 0


class SlowChain:
    """The real RAG chain with each piece held back `delay` seconds (an LLM slow enough to queue behind or
    hang up on); `ended` records how each stream ended: "finished", or "closed" before its end."""

    def __init__(self, chain, delay: float):
        self.chain, self.delay, self.ended = chain, delay, []

    def stream(self, question, history=()):
        pieces = self.chain.stream(question, history)
        try:
            for piece in pieces:
                time.sleep(self.delay)
                yield piece
        except GeneratorExit:
            pieces.close()  # the real chain's close, here: an error in it would leave `ended` short
            self.ended.append("closed")
            raise
        self.ended.append("finished")


def slow_app(api_settings, delay: float = 1.0, **update):
    from docbot_lib.pipeline.rag import RagChain

    settings = api_settings.model_copy(update=update)
    chain = SlowChain(RagChain(settings, collection=COLLECTION), delay)
    return create_app(settings, chain=chain), chain


def ask(url: str, stream: bool = False, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers=AUTH,
        json={"stream": stream, "messages": [{"role": "user", "content": QUESTION}]},
        **kwargs,
    )


def test_the_queue_is_bounded_and_a_wait_without_a_slot_ends_in_503_with_retry_after(api_settings):
    app, _chain = slow_app(api_settings, api_queue_timeout=3, api_max_queue=1)
    with running(app) as url:
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            headers=AUTH,
            timeout=120,
            json={"stream": True, "messages": [{"role": "user", "content": QUESTION}]},
        ) as holder:
            assert holder.status_code == 200  # the only slot is taken until this slow answer ends
            queued: dict[str, object] = {}

            def wait_in_queue():
                began = time.monotonic()
                queued["reply"], queued["seconds"] = ask(url, timeout=60), time.monotonic() - began

            waiting = threading.Thread(target=wait_in_queue)
            waiting.start()
            time.sleep(1.0)
            began = time.monotonic()
            full = ask(url, timeout=60)  # the queue's one place is taken: refused at once
            assert time.monotonic() - began < 2.0
            assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
            assert "DOCBOT_API_MAX_QUEUE=1" in full.json()["error"]["message"]
            waiting.join(timeout=60)
            timed_out = queued["reply"]
            assert timed_out.status_code == 503 and int(timed_out.headers["Retry-After"]) >= 1
            assert "DOCBOT_API_QUEUE_TIMEOUT=3" in timed_out.json()["error"]["message"]
            assert 2.5 < queued["seconds"] < 20
        assert metric(url, "docbot_requests_total", status="503") == 2
        deadline = time.monotonic() + 30
        while metric(url, "docbot_answers_in_flight") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(url, "docbot_answers_in_flight") == 0


def test_a_client_that_hangs_up_stops_its_answer_and_frees_its_slot(api_settings):
    app, chain = slow_app(api_settings, api_queue_timeout=0)  # no waiting: a busy slot is a 503 at once
    with running(app) as url:
        with pytest.raises(httpx.ReadTimeout):  # not streamed: the client gives up while the answer is generated
            ask(url, timeout=httpx.Timeout(60, read=2))
        deadline = time.monotonic() + 10
        while not chain.ended and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chain.ended == ["closed"], "the answer went on after its client had gone"
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            headers=AUTH,
            timeout=120,
            json={"stream": True, "messages": [{"role": "user", "content": QUESTION}]},
        ) as reply:
            assert reply.status_code == 200  # the slot is free again
        deadline = time.monotonic() + 30
        while metric(url, "docbot_answers_in_flight") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(url, "docbot_answers_in_flight") == 0 and chain.ended == ["closed", "closed"]


def test_serve_binds_localhost_and_trusts_forwarded_headers_only_from_its_proxies(_session_stack, tmp_path):
    import subprocess
    import sys

    import psutil

    _stack, env = _session_stack
    port = free_port()
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DOCBOT_", "AWS_"))},
        **env,
        "DOCBOT_ENV_FILE": str(tmp_path / "no.env"),
        "DOCBOT_API_KEY": KEY,
        "DOCBOT_MILVUS_COLLECTION": COLLECTION,
        "DOCBOT_API_TRUSTED_PROXIES": "10.9.9.9",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "docbot_lib.cli", "serve", "--port", str(port)],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read().decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "docbot serve did not answer /healthz"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        listening = {
            c.laddr.ip
            for c in psutil.Process(server.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening == {"127.0.0.1"}
        # a redirect is built from the request's scheme: X-Forwarded-Proto from an untrusted address is ignored
        redirect = httpx.get(
            f"http://127.0.0.1:{port}/v1/models/",
            follow_redirects=False,
            headers={**AUTH, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
        )
        assert redirect.status_code in (307, 308) and redirect.headers["location"].startswith("http://127.0.0.1")
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- the web UI in a real browser --------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_web_ui_streams_an_answer_with_source_links(base_url, tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        wait = WebDriverWait(driver, 240)
        driver.get(base_url + "/")
        key = wait.until(EC.visibility_of_element_located((By.ID, "api-key")))  # asked for the key first
        key.send_keys(KEY)
        driver.find_element(By.ID, "save-key").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), COLLECTION))
        assert driver.execute_script("return sessionStorage.getItem('docbot.apiKey')") == KEY

        driver.find_element(By.ID, "question").send_keys(QUESTION)
        driver.find_element(By.ID, "send").click()
        # streaming: text shows while the answer is still pending, then the sources appear
        wait.until(
            lambda d: d.execute_script(
                "const a = document.querySelector('.answer'); return a && a.textContent.length > 0"
            )
        )
        links = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn.assistant .sources a"))
        assert driver.find_element(By.CSS_SELECTOR, ".turn.assistant .answer").text.strip()
        assert not driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .error")
        driver.save_screenshot("/tmp/docbot-ui.png")

        links[0].click()  # a file source: the text the bot retrieves from
        wait.until(lambda d: "chunks" in d.find_element(By.ID, "source-where").text)
        assert driver.find_element(By.ID, "source-text").text.strip()
        driver.save_screenshot("/tmp/docbot-ui-source.png")
        driver.find_element(By.CSS_SELECTOR, "#source-dialog button").click()

        driver.find_element(By.ID, "clear").click()
        assert not driver.find_elements(By.CSS_SELECTOR, ".turn")
    finally:
        driver.quit()
