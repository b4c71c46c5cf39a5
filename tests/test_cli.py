"""The `docbot` command: the contract other tools call."""

import subprocess
import sys

from docbot_lib.cli import main


def test_settings_are_printed_masked(monkeypatch, capsys):
    monkeypatch.setenv("DOCBOT_LLM_API_KEY", "llm-SECRET-value")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "llm_api_key" in out and "llm-SECRET-value" not in out


def test_status_of_a_stopped_stack(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    assert main(["local", "status"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines()[:4]] == [
        ["s3", "stopped"],
        ["llm", "stopped"],
        ["hub", "stopped"],
        ["milvus", "stopped"],
    ]


def test_check_says_how_to_start_the_stack(monkeypatch, tmp_path, capsys):
    from conftest import free_port

    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    monkeypatch.setenv("DOCBOT_LOCAL_MILVUS_PORT", str(free_port()))
    assert main(["check", "Milvus"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "docbot local up" in out


def test_unknown_service_is_one_clear_error(capsys):
    assert main(["check", "Postgres"]) == 2
    assert "unknown service(s) ['Postgres']" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "docbot_lib.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "local" in result.stdout
    bin_docbot = __import__("pathlib").Path(sys.executable).parent / "docbot"
    assert bin_docbot.exists(), "pip install -e . provides the docbot command"


def test_gpu_size_of_the_published_model(capsys):
    assert main(["gpu-size", "--gpu", "A10G", "--gpu", "T4"]) == 0
    out = capsys.readouterr().out
    assert "KV cache 128 KiB per token" in out
    a10g = next(line for line in out.splitlines() if line.startswith("A10G"))
    assert a10g.split()[-2] == "32768"  # --max-model-len that fits
    assert "--dtype float16" in out  # the T4 warning


def test_a_service_that_does_not_answer_exits_3_naming_it(monkeypatch, tmp_path, capsys):
    """A typed error (errors.NotReachable) decides the exit status, not its message."""
    from conftest import free_port

    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    monkeypatch.setenv("DOCBOT_LOCAL_MILVUS_SERVER_PORT", str(free_port()))
    assert main(["milvus", "info"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("docbot: Milvus does not answer at http://127.0.0.1:") and "docbot local up" in err
