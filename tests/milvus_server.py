"""A real Milvus server (2.3.5 standalone, auth on) for the tests: the binary the `milvus` PyPI wheel ships,
rendered by docbot_lib.local.milvus_server (as the local stack's own), every port chosen free.

One server per test module that imports the fixture (pytest gives an imported fixture to that module alone,
whatever its scope): each module starts on a fresh server (root's default password, no users or roles of
another module), in its own data folder, process group and log (separate from the local stack's: these tests
change root's password with their own env file). The fixture's server is killed when its module ends (its
data folder is thrown away; a graceful stop took 10-30 s a server); `stop_milvus` (the benchmarks') stops
with SIGTERM, then SIGKILL.

Import the fixture into a test module: `from milvus_server import milvus_server  # noqa: F401`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from docbot_lib.local import milvus_server as launcher  # (the fixture below is named milvus_server)
from docbot_lib.local.milvus_server import free_ports

START_TIMEOUT = 180.0


@dataclass
class MilvusServer:
    uri: str
    health_url: str
    data_dir: Path
    log: Path
    env_file: Path  # where the day-2 tests keep the generated credentials (root's included)
    process: subprocess.Popen

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.is_file() else ""


def start_milvus(base: Path) -> MilvusServer:
    launch = launcher.prepare(base, free_ports(1)[0])
    log = base / "milvus.log"
    with log.open("wb") as fh:
        process = subprocess.Popen(
            launch.command,
            cwd=launch.cwd,
            env={**os.environ, **launch.env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = MilvusServer(
        uri=launch.uri,
        health_url=launch.health_url,
        data_dir=launch.cwd,
        log=log,
        env_file=base / "milvus.env",
        process=process,
    )
    try:
        _wait_ready(server)
    except BaseException:
        stop_milvus(server)
        raise
    return server


def _wait_ready(server: MilvusServer) -> None:
    """/healthz says OK, then a real request with root's default password succeeds."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"Milvus exited while starting:\n{server.log_tail()}")
        try:
            if httpx.get(server.health_url, timeout=2).text.strip() == "OK":
                client = MilvusClient(uri=server.uri, token="root:Milvus", timeout=5)
                client.list_collections()
                client.close()
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"Milvus did not become ready in {START_TIMEOUT:.0f} s ({last}):\n{server.log_tail()}")


def stop_milvus(server: MilvusServer, timeout: float = 30.0) -> None:
    """SIGTERM (a graceful stop), SIGKILL after `timeout` seconds; `timeout=0` kills at once."""
    if not server.alive():
        return
    if timeout > 0:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory) -> MilvusServer:
    """A Milvus 2.3.5 server with authorization on, for the module's tests (root's password starts as the
    default and is changed by the first `secure`; `env_file` keeps what it generated); killed at the module's
    end, not kept idle until the session's."""
    server = start_milvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield server
    finally:
        stop_milvus(server, timeout=0)
