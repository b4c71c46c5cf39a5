"""The env files Doc Bot reads and writes: the project's `.env`, the cluster state file (`cluster.env`), the
local Milvus server's passwords. Written whole then renamed, mode 600.

Layer: core (the bottom): imports nothing of Doc Bot's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def project_dir() -> Path:
    """The checkout this package runs from (editable install), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def env_files() -> tuple[Path, ...]:
    """The .env files read, later ones winning: DOCBOT_ENV_FILE alone if set, else the project's and the cwd's."""
    chosen = os.environ.get("DOCBOT_ENV_FILE")
    files = [Path(chosen)] if chosen else [project_dir() / ".env", Path.cwd() / ".env"]
    return tuple(dict.fromkeys(p.resolve() for p in files))


def cluster_state_file() -> Path:
    """What notebooks 03 and 04 record on a cluster (endpoints, names, the model's token): `cluster.env`
    beside the first `.env` file (mode 600, never committed)."""
    return env_files()[0].parent / "cluster.env"


def write_env(path: Path, values: dict[str, str]) -> None:
    """Set KEY=value lines in an env file, keeping its other lines; written whole then renamed, mode 600
    (a crash never leaves half a file, and other users of the machine cannot read it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.is_file() else []
    pending = dict(values)
    out = []
    for line in lines:
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match[1] in pending:
            out.append(f"{match[1]}={pending.pop(match[1])}")
        else:
            out.append(line)
    out += [f"{key}={value}" for key, value in pending.items()]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(out) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_env(path: Path) -> dict[str, str]:
    """The KEY=value pairs of an env file (empty when it does not exist)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None} if Path(path).is_file() else {}
