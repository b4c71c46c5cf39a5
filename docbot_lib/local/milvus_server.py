"""A real Milvus server on one machine: Milvus 2.3.5 standalone from the `milvus` wheel, authorization on.

Layer: local (the local stack starts and stops it; the tests' fixture uses it too): imports only core, the
standard library and, lazily, the `milvus` wheel. Its readiness request is `checks.milvus_server_answers`.

Why a second Milvus locally: Milvus Lite (what notebooks 05-07 search) has BM25 but no users, roles or
passwords; this server has users, roles and grants but predates BM25 (Milvus 2.5). So the day-2 steps of
notebook 04 run here, for real, and the documents stay in Milvus Lite.

Every port is chosen free at start: the gRPC/proxy port (given), each coordinator's and node's port, the
metrics/health port (METRICS_PORT) and the embedded etcd's client and peer ports (an etcd config file: etcd
otherwise takes 2379/2380). The wheel's own `milvus-server` launcher cannot move the metrics port or etcd's,
so the config it renders is reused and the binary started directly. Stopped with SIGTERM
(common.gracefulStopTimeout=10 makes that finish, else it hangs).

Limits of this binary, said where they matter (notebook 04, README): it listens on every interface of the
machine (it has no setting to bind 127.0.0.1), and its REST API is turned off here (gRPC only).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

PORT_KEYS = (
    "etcd_port",
    "root_coord_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
# Milvus' own limits are 10 roles and 100 users: a class of learners needs more (manifests/milvus sets the same)
MAX_ROLES = MAX_USERS = 210


@dataclass
class Launch:
    """How to start one Milvus server: its command, environment, working folder and addresses."""

    command: list[str]
    env: dict[str, str]
    cwd: Path
    uri: str
    health_url: str


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct free ports (held open together so that none is handed out twice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def unpacked_binaries(fallback: Path) -> Path:
    """The folder of the server's binary and libraries, unpacked from the wheel's .lzma files once per
    environment (into <venv>/share/milvus-server: ~250 MB, 5 s), or under `fallback` when that is not writable.
    The wheel's own unpacker skips files whose checksum it has recorded, and records it only after writing."""
    import milvus

    for home in (Path(sys.prefix) / "share" / "milvus-server", Path(fallback)):
        try:
            home.mkdir(parents=True, exist_ok=True)
            milvus._initialize_data_files(str(home))
            return home / "bin"
        except PermissionError:
            continue
    raise PermissionError(f"cannot unpack the Milvus server binary into {fallback}")


def prepare(base: Path, proxy_port: int) -> Launch:
    """Render the config under `base` (data, binaries, configs) and return how to start the server on
    `proxy_port`. Safe to call again on the same folder: the data stays, the config is rendered anew."""
    import milvus  # the `milvus` wheel: its config template and the compressed binary

    base = Path(base)
    ports = free_ports(len(PORT_KEYS) + 3)
    named = dict(zip(PORT_KEYS, ports, strict=False))  # the last three are named below
    metrics_port, etcd_client, etcd_peer = ports[len(PORT_KEYS) :]
    config = milvus.MilvusServerConfig(data_dir=str(base / "milvus"), **named)
    config.set("authorization_enabled", True)
    config.set("common.gracefulStopTimeout", 10)  # without it SIGTERM hangs
    config.set("proxy.http.enabled", "false")  # gRPC only: no REST API next to it
    config.resolve()
    # the proxy's port is set after resolve(): resolve() test-binds every port it is given without SO_REUSEADDR,
    # which fails for minutes after a restart (the last connections linger in TIME_WAIT); Milvus itself binds fine
    config.configurable_items["proxy_port"][1] = proxy_port
    config.write_config()
    data = Path(config.base_data_dir)
    binaries = unpacked_binaries(data)
    etcd_config = data / "configs" / "embed-etcd.yaml"
    etcd_config.write_text(
        "name: docbot\n"
        f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-cluster: docbot=http://127.0.0.1:{etcd_peer}\n"
    )
    env = {
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(metrics_port),
        "ETCD_CONFIG_PATH": str(etcd_config),  # Milvus maps ETCD_CONFIG_PATH to etcd.config.path
        # the wheel's config template has no keys for these limits: environment variables set them
        "PROXY_MAXROLENUM": str(MAX_ROLES),
        "PROXY_MAXUSERNUM": str(MAX_USERS),
        "MILVUS_RUN_DIR": str(data / "run"),
        "LD_LIBRARY_PATH": ":".join(filter(None, [str(binaries), os.environ.get("LD_LIBRARY_PATH")])),
    }
    return Launch(
        command=[str(binaries / "milvus"), "run", "standalone"],
        env=env,
        cwd=data,
        uri=f"http://127.0.0.1:{proxy_port}",
        health_url=f"http://127.0.0.1:{metrics_port}/healthz",
    )
