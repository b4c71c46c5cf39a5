"""A real Milvus server (2.3.5 standalone, auth on) for the tests: the binary the `milvus` PyPI wheel ships.

Started once per session in its own data folder, process group and log, every port chosen free here:
the gRPC/proxy port, each coordinator's and node's port, the metrics/health port (METRICS_PORT) and the
embedded etcd's client and peer ports (an etcd config file: etcd otherwise takes 2379/2380). The wheel's own
`milvus-server` launcher cannot move the metrics port or etcd's, so the config it renders is reused and the
binary started here. Stopped with SIGTERM (common.gracefulStopTimeout=10 makes that finish), then SIGKILL.

Import the fixture into a test module: `from milvus_server import milvus_server  # noqa: F401`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PORT_KEYS = ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port", "query_coord_port",
             "query_node_port", "index_coord_port", "index_node_port", "data_coord_port", "data_node_port")
START_TIMEOUT = 180.0


def _free_ports(count: int) -> list[int]:
    """Distinct free ports (held open together so that none is handed out twice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


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
    import milvus  # the `milvus` wheel: its config template and the compressed binary

    ports = _free_ports(len(PORT_KEYS) + 3)
    named = dict(zip(PORT_KEYS, ports))
    metrics_port, etcd_client, etcd_peer = ports[len(PORT_KEYS):]
    config = milvus.MilvusServerConfig(data_dir=str(base / "milvus"), **named)
    config.set("authorization_enabled", True)
    config.set("common.gracefulStopTimeout", 10)  # without it SIGTERM hangs
    config.resolve()
    milvus._initialize_data_files(config.base_data_dir)  # unpacks bin/milvus and its libraries
    data = Path(config.base_data_dir)
    etcd_config = data / "configs" / "embed-etcd.yaml"
    etcd_config.write_text(
        "name: docbot-test\n"
        f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-cluster: docbot-test=http://127.0.0.1:{etcd_peer}\n")
    env = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(metrics_port),
        "ETCD_CONFIG_PATH": str(etcd_config),  # Milvus maps ETCD_CONFIG_PATH to etcd.config.path
        # as manifests/milvus sets them for a class (the defaults, 10 roles and 100 users, stop at five learners;
        # the wheel's config template has no such keys to set)
        "PROXY_MAXROLENUM": "210", "PROXY_MAXUSERNUM": "210",
        "MILVUS_RUN_DIR": str(data / "run"),
        "LD_LIBRARY_PATH": ":".join(filter(None, [str(data / "bin"), os.environ.get("LD_LIBRARY_PATH")])),
    }
    log = base / "milvus.log"
    with log.open("wb") as fh:
        process = subprocess.Popen([str(data / "bin" / "milvus"), "run", "standalone"], cwd=data, env=env,
                                   stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = MilvusServer(uri=f"http://127.0.0.1:{named['proxy_port']}",
                          health_url=f"http://127.0.0.1:{metrics_port}/healthz",
                          data_dir=data, log=log, env_file=base / "milvus.env", process=process)
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
    if not server.alive():
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> MilvusServer:
    """A Milvus 2.3.5 server with authorization on, for the whole session (root's password starts as the
    default and is changed by the first `secure`; `env_file` keeps what it generated)."""
    server = start_milvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield server
    finally:
        stop_milvus(server)
