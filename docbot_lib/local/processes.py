"""One local process, by the record the stack keeps of it (pid, start time, port, log): start it in its own
process group with its output in a log, know it is still the same process, wait until it answers, stop it and
its children.

Layer: local: imports core.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from docbot_lib.core.errors import DocbotError, ServiceUnavailable

HOST = "127.0.0.1"


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


def alive(record: dict) -> bool:
    """The recorded process still runs (the same one: a PID reused by another program is not it)."""
    try:
        proc = psutil.Process(record["pid"])
        return abs(proc.create_time() - record["create_time"]) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError):
        return False


def start(name: str, command: list[str], env: dict[str, str], cwd: Path, log: Path, port: int) -> dict:
    """Start `command` in its own process group (stop() ends it and its children), its output appended to `log`;
    returns the record that names it."""
    with log.open("ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name} on port {port}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            command,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,
        )
    return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": port, "log": str(log)}


def wait_ready(
    name: str,
    record: dict,
    ready: Callable[[], bool],
    timeout: float,
    *,
    service: str | None = None,
    exited_fix: str = "read the log above; `docbot local status` shows it again",
) -> None:
    """Until `ready()` is true; a process that exits, or does not answer in time (then stopped), is an error
    with the tail of its log (naming `service`, when given)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not alive(record):
            raise ServiceUnavailable(
                f"the local {name} exited while starting; last lines of {record['log']}:\n"
                f"{log_tail(Path(record['log']))}",
                exited_fix,
                service=service,
            )
        try:
            if ready():
                return
        except DocbotError as exc:
            last_error = str(exc)
        time.sleep(0.5)
    stop(record)
    raise ServiceUnavailable(
        f"the local {name} did not answer within {timeout:.0f} s ({last_error}); "
        f"last lines of {record['log']}:\n{log_tail(Path(record['log']))}",
        "read the log above; the machine may be overloaded",
        service=service,
    )


def stop(record: dict, timeout: float = 15.0) -> None:
    """SIGTERM to the process group, SIGKILL to what is left after `timeout`."""
    if not alive(record):
        return
    proc = psutil.Process(record["pid"])
    family = [proc, *proc.children(recursive=True)]
    try:
        os.killpg(record["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    _gone, left = psutil.wait_procs(family, timeout=timeout)
    for straggler in left:
        straggler.kill()
    psutil.wait_procs(left, timeout=5)


def family(record: dict) -> list[int]:
    """The recorded process and its children, while it runs."""
    if not alive(record):
        return []
    proc = psutil.Process(record["pid"])
    return [proc.pid, *(c.pid for c in proc.children(recursive=True))]
