"""The chatbot API and its web UI, served by uvicorn against the real local stack (llama.cpp, Milvus Lite)
with the sample documents ingested: driven through the `openai` client, LangChain's ChatOpenAI, plain HTTP
and a real headless Chromium. The 135M model answers poorly: assertions are on structure, never on facts.
Each answer costs seconds, so the tests share one server and ask few questions."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time

import httpx
import pytest

from docbot_lib.api import create_app
from docbot_lib.errors import DocbotError
from docbot_lib.settings import Settings
from conftest import free_port

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
    from docbot_lib.ingest import ingest
    from docbot_lib.samples import prepare_sample_docs

    _stack, env = _session_stack
    with pytest.MonkeyPatch.context() as mp:  # module scope: isolate from the developer's env by hand
        for name in list(os.environ):
            if name.startswith(("DOCBOT_", "AWS_")):
                mp.delenv(name)
        mp.setenv("DOCBOT_ENV_FILE", str(tmp_path_factory.mktemp("env") / "no.env"))
        settings = Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()},
                                 api_key=KEY, api_max_concurrency=1, max_tokens=64, milvus_collection=COLLECTION)
        docs = prepare_sample_docs(tmp_path_factory.mktemp("docs"))
        ingest(settings, [str(docs)], collection=COLLECTION, progress=False)
    return settings


@pytest.fixture(scope="module")
def base_url(api_settings):
    with running(create_app(api_settings)) as url:
        yield url


def metric(base_url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# -- no LLM call ------------------------------------------------------------------------------------------

def test_every_v1_route_needs_the_key_and_health_and_metrics_are_open(base_url):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("GET", "/v1/sources?source=x")):
            reply = httpx.request(method, f"{base_url}{path}", headers=headers,
                                  json={"messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 401, (headers, path)
            assert "API key" in reply.json()["error"]["message"]
    models = httpx.get(f"{base_url}/v1/models", headers=AUTH)
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == [COLLECTION]
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    assert "docbot_requests_total" in httpx.get(f"{base_url}/metrics").text
    assert metric(base_url, "docbot_requests_total", status="401") >= 3
    ready = httpx.get(f"{base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"], ready.text
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and "<title>Doc Bot</title>" in page.text


def test_no_api_key_configured_is_refused_at_start(api_settings):
    with pytest.raises(DocbotError, match="DOCBOT_API_KEY"):
        create_app(api_settings.model_copy(update={"api_key": None}))


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": [{"role": "user"}], "stream": "yes please"},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"model": "docbot"},
])
def test_malformed_requests_get_422(base_url, body):
    reply = httpx.post(f"{base_url}/v1/chat/completions", headers=AUTH, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["message"]


def test_malformed_json_gets_422(base_url):
    reply = httpx.post(f"{base_url}/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"},
                       content=b"{not json")
    assert reply.status_code == 422


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
                client.chat.completions.create(model=COLLECTION, stream=stream,
                                               messages=[{"role": "user", "content": QUESTION}])
            assert caught.value.status_code == 503
            message = caught.value.body["message"]
            assert "LLM does not answer" in message and "Fix:" in message and "Traceback" not in message
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and not ready.json()["checks"]["llm"]["ok"]
        assert ready.json()["checks"]["milvus"]["ok"]
        assert metric(url, "docbot_errors_total", cause="llm") == 2
        assert metric(url, "docbot_answers_in_flight") == 0  # the slots were given back


def test_llm_stopped_gives_503_and_the_bot_recovers_when_it_is_back(api_settings, tmp_path):
    """A real LLM server of its own: answering, stopped (503, the API stays up), started again (answers)."""
    import openai

    from conftest import stack_env
    from docbot_lib.local import LocalStack

    env = stack_env(tmp_path / "home")
    own = LocalStack(Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()}))
    own.up(only=["llm"])
    try:
        llm = own.settings.reload()
        settings = api_settings.model_copy(update={"llm_base_url": llm.llm_base_url, "llm_api_key": llm.llm_api_key})
        with running(create_app(settings)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
            ask = lambda: client.chat.completions.create(  # noqa: E731
                model=COLLECTION, max_tokens=16, messages=[{"role": "user", "content": QUESTION}])
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
        reply = httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                           json={"messages": [{"role": "user", "content": QUESTION}]})
        assert reply.status_code == 503
        assert "never_ingested" in reply.json()["error"]["message"] and "ingest" in reply.json()["error"]["message"]


# -- a few real answers ----------------------------------------------------------------------------------

def test_openai_client_answers_with_sources_and_metrics_move(base_url):
    import openai

    before = {name: metric(base_url, name, **labels) for name, labels in (
        ("docbot_requests_total", {"status": "200"}), ("docbot_generated_tokens_total", {}),
        ("docbot_retrieval_seconds_count", {}), ("docbot_time_to_first_token_seconds_count", {}))}
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    completion = client.chat.completions.create(model=COLLECTION, messages=[
        {"role": "system", "content": "ignored: the bot has its own instructions"},
        {"role": "user", "content": QUESTION}])
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.strip()
    sources = completion.model_extra["sources"]
    assert sources and {"number", "title", "source", "cited"} <= set(sources[0])
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    assert completion.usage.completion_tokens > 0
    after = {name: metric(base_url, name, **labels) for name, labels in (
        ("docbot_requests_total", {"status": "200"}), ("docbot_generated_tokens_total", {}),
        ("docbot_retrieval_seconds_count", {}), ("docbot_time_to_first_token_seconds_count", {}))}
    assert after["docbot_requests_total"] == before["docbot_requests_total"] + 1
    assert after["docbot_generated_tokens_total"] == before["docbot_generated_tokens_total"] \
        + completion.usage.completion_tokens
    assert after["docbot_retrieval_seconds_count"] == before["docbot_retrieval_seconds_count"] + 1
    assert after["docbot_time_to_first_token_seconds_count"] == before["docbot_time_to_first_token_seconds_count"] + 1


def test_openai_client_streams_then_sends_sources_before_done(base_url):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    chunks = list(client.chat.completions.create(model=COLLECTION, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": QUESTION}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert not last.choices and last.model_extra["sources"] and last.usage.completion_tokens > 0

    # on the wire: the sources event is the one just before [DONE]
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", headers=AUTH, timeout=300, json={
            "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as reply:
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
    pieces = list(llm.stream([HumanMessage("What is a ServingRuntime?"), AIMessage(reply.content),
                              HumanMessage("And which port does it use?")]))
    assert len(pieces) > 1 and "".join(p.content for p in pieces).strip()


def test_beyond_the_concurrency_bound_gets_429_while_an_answer_streams(base_url):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=300)
    first = client.chat.completions.create(model=COLLECTION, stream=True,
                                           messages=[{"role": "user", "content": QUESTION}])
    with first:
        streamed = iter(first)
        next(streamed)  # the first answer holds the only slot (api_max_concurrency=1) until it ends
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=COLLECTION, messages=[{"role": "user", "content": "hi"}])
        assert "answering 1 question" in caught.value.body["message"]
        rest = list(streamed)
    assert rest and not rest[-1].choices and rest[-1].model_extra["sources"]
    assert metric(base_url, "docbot_requests_total", status="429") >= 1
    assert metric(base_url, "docbot_answers_in_flight") == 0


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
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900", f"--user-data-dir={tmp_path / 'profile'}"):
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
        wait.until(lambda d: d.execute_script(
            "const a = document.querySelector('.answer'); return a && a.textContent.length > 0"))
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
