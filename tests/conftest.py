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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
