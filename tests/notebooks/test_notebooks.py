"""Every notebook of the lab, executed for real with papermill (and nbval) against the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from docbot_lib.clients import milvus
from docbot_lib.workshop import execute, lab_notebooks, run_parameters

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = lab_notebooks(REPO / "notebooks")


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if isinstance(out.get("text"), str) else "")
            parts.append(json.dumps(out.get("data", {})))
            if out.get("output_type") == "error":
                parts.append("ERROR " + out.get("ename", "") + ": " + out.get("evalue", ""))
    return "\n".join(parts)


def test_the_lab_has_its_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00-environment-check.ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(notebook):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1, "one cell tagged 'parameters'"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_under_papermill(notebook, local_stack, settings, tmp_path):
    """Each notebook as `make workshop` runs it (in order: later ones use what earlier ones made)."""
    run = execute(notebook, tmp_path / notebook.name, run_parameters(notebook, tmp_path))
    assert run.ok, f"{notebook.name}: {run.error}"
    if "OUTPUT_DIR" in run_parameters(notebook, tmp_path):
        assert list((tmp_path / "figures").glob("*.png")), "the figures are saved in the run folder"
    executed = run.output.read_text()
    for secret in ("s3_secret_key", "llm_api_key"):
        assert settings.secret(secret) not in executed, f"{secret} leaked into the executed notebook"
    if notebook.name.startswith("04"):
        check_day2_run(run.output, executed, settings)
    if notebook.name.startswith("08"):
        check_chatbot_run(run.output, executed)


def check_day2_run(output: Path, executed: str, settings) -> None:
    """04 on one machine: day 2 ran for real on the local Milvus 2.3 server (not skipped), its passwords are
    beside that server's data and nowhere in the notebook, and the documents' settings were left alone."""
    from docbot_lib.core.envfile import env_files, read_env
    from docbot_lib.pipeline import vectordb

    text = outputs_text(output)
    assert "Skipped" not in text, "day 2 ran: it did not skip"
    assert f"day 2 (here): {settings.milvus_server_uri}" in text and settings.milvus_server_uri != settings.milvus_uri
    assert "users/roles  yes" in text and "users/roles  no" in text  # the day-2 server, then Milvus Lite
    assert f"is secured: {milvus.DEFAULT_ROOT_TOKEN} no longer logs in" in text
    assert "FAIL" not in text
    env_file = settings.day2_env_file
    assert env_file.parent == settings.local_dir and (env_file.stat().st_mode & 0o777) == 0o600
    tokens = read_env(env_file)
    assert set(tokens) == {vectordb.ROOT_TOKEN_KEY, vectordb.INGEST_TOKEN_KEY, vectordb.APP_TOKEN_KEY}
    for token in tokens.values():
        assert token.split(":", 1)[1] not in executed, "a Milvus password leaked into the executed notebook"
    assert vectordb.INGEST_TOKEN_KEY not in read_env(env_files()[0]), "the documents' Milvus Lite gets no token"
    # the server really refuses the public default now
    assert vectordb.verify._login_outcome(settings.milvus_server_uri, milvus.DEFAULT_ROOT_TOKEN) == "refused"


def check_chatbot_run(output: Path, executed: str) -> None:
    """08 on one machine: `docbot serve` answered through its API with sources, and was stopped afterwards."""
    import re
    import socket

    import psutil

    from docbot_lib.core.envfile import env_files, read_env

    text = outputs_text(output)
    started = re.search(r"docbot serve \(pid (\d+)\) answers at http://127\.0\.0\.1:(\d+)", text)
    assert started, "08 started docbot serve"
    pid, port = int(started[1]), int(started[2])
    assert re.search(r"\d+ source\(s\) from http://127\.0\.0\.1:\d+/v1", text), "the API sent its sources"
    assert f"Doc Bot answered through its API at http://127.0.0.1:{port}/v1" in text
    assert f"Doc Bot's web page: http://127.0.0.1:{port}/" in text
    assert f"docbot serve (pid {pid}) stopped; port {port} released" in text
    assert not psutil.pid_exists(pid), "the server process is gone"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    key = read_env(env_files()[0]).get("DOCBOT_API_KEY")
    assert key and key not in executed, "08 generated the API key into the env file and never showed it"


def test_environment_check_reports_a_stopped_service(local_stack, tmp_path):
    """The LLM endpoint down (nothing listens there): a FAILED row with reason and fix, not a traceback."""
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    run = execute(
        REPO / "notebooks" / "00-environment-check.ipynb",
        tmp_path / "00.ipynb",
        parameters={"LLM_BASE_URL": dead, "STRICT": False},
    )
    assert run.ok, run.error
    text = outputs_text(run.output)
    assert "Traceback" not in text and "ERROR" not in text
    llm_row = next(line for line in text.splitlines() if line.startswith("LLM "))
    assert "FAILED" in llm_row and dead in llm_row
    assert "fix: start the local stack: `docbot local up`" in text
    assert "Not ready: ['LLM']" in text

    strict = execute(
        REPO / "notebooks" / "00-environment-check.ipynb",
        tmp_path / "00-strict.ipynb",
        parameters={"LLM_BASE_URL": dead},
    )
    assert not strict.ok and "AssertionError" in strict.error and "LLM" in strict.error


def test_nbval_lax_runs_a_notebook_as_committed(local_stack):
    """`pytest --nbval-lax` over a notebook as committed, against the stack: the way to run the notebooks as tests
    works. Only the environment check: papermill already executes every notebook once above (as committed but for
    OUTPUT_DIR), and a second execution of the lab would add minutes and nothing nbval checks that papermill does
    not (nbval-lax compares no outputs)."""
    notebook = NOTEBOOKS[0]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", str(notebook)],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
