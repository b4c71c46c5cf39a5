"""Fixtures: the real local services (moto S3, llama.cpp server, Milvus Lite, the Milvus server), started and
stopped here; and the test tiers.

Tiers (markers, given at collection, so that they cannot drift from what a test really uses):
  unit       needs nothing running: `make test-unit` (a developer's first answer, well under a minute)
  stack      needs the real local services: uses a fixture that starts them (STACK_FIXTURES) or is marked
             `stack` because it starts some itself
  notebooks  executes notebooks (tests/notebooks): the slowest tier
`make test` (CI) runs every tier.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path

import pytest

from docbot_lib.core.settings import Settings
from docbot_lib.local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]


# fixtures that start real services (the session's local stack, the Milvus server) or need them
STACK_FIXTURES = frozenset({"_session_stack", "local_stack", "settings", "milvus_server"})


def pytest_configure(config):
    """`make test` runs two pytest-xdist workers, whose local stacks start a Milvus server each at the same
    time: the server's binary is unpacked from its wheel (once per environment, into the venv) here, in the
    controller, before any worker starts, so that no worker rewrites the binary another one runs."""
    if hasattr(config, "workerinput"):  # a worker: the controller has done it
        return
    from docbot_lib.local.milvus_server import unpacked_binaries

    try:
        unpacked_binaries(Path(sys.prefix) / "share" / "milvus-server")
    except PermissionError:  # a read-only venv: each stack unpacks into its own folder (no shared file)
        pass


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "notebooks" in item.path.parts and item.get_closest_marker("notebooks") is None:
            item.add_marker(pytest.mark.notebooks)
        elif item.get_closest_marker("stack") is None and STACK_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.stack)
        if item.get_closest_marker("stack") is None and item.get_closest_marker("notebooks") is None:
            item.add_marker(pytest.mark.unit)


# Ports for the test's own servers come from a block of their own per pytest-xdist worker, below the kernel's
# ephemeral range (32768-60999 on Linux), which outgoing connections and bind(port 0) draw from: a port picked
# free here cannot be taken by the other worker's picks, nor by a connection, before its server binds it (with
# two workers, a moto started on a port picked by bind(0) once found it taken).
PORT_BLOCK = 6000
_next_port = None


def free_port() -> int:
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = 20000 + (int(worker) % 2 if worker.isdigit() else 0) * PORT_BLOCK
    if _next_port is None:
        _next_port = random.randrange(PORT_BLOCK)  # a rerun soon after does not reuse ports in TIME_WAIT
    for _ in range(PORT_BLOCK):
        port = start + _next_port % PORT_BLOCK
        _next_port += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {start}..{start + PORT_BLOCK - 1}")


def stack_env(home: Path) -> dict[str, str]:
    """Environment for a local stack of its own: a private HOME and free ports."""
    return {
        "DOCBOT_STACK": "local",
        "DOCBOT_HOME": str(home),
        "DOCBOT_LOCAL_S3_PORT": str(free_port()),
        "DOCBOT_LOCAL_LLM_PORT": str(free_port()),
        "DOCBOT_LOCAL_MILVUS_PORT": str(free_port()),
        "DOCBOT_LOCAL_HUB_PORT": str(free_port()),
        "DOCBOT_LOCAL_MILVUS_SERVER_PORT": str(free_port()),
    }


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch, tmp_path):
    """Tests (and the notebooks they run) see only the settings they set: no developer .env,
    no stray DOCBOT_* or data-connection variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("DOCBOT_", "AWS_")) or name in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(tmp_path / "no.env"))


@pytest.fixture(scope="session")
def _session_stack(tmp_path_factory):
    env = stack_env(tmp_path_factory.mktemp("docbot-home"))
    stack = LocalStack(Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()}))
    try:
        stack.up()
        yield stack, env
    finally:
        stack.down()


@pytest.fixture
def local_stack(_session_stack, monkeypatch) -> LocalStack:
    """The session's local stack; during the test its settings reach `Settings.load()` and the
    notebooks' kernels through the environment."""
    stack, env = _session_stack
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return stack


@pytest.fixture
def settings(local_stack) -> Settings:
    """Settings pointing at the running session stack (endpoints and generated credentials)."""
    return Settings.load()
