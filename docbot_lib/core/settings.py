"""Every endpoint, credential and knob of Doc Bot, read in one place.

Precedence, highest first:
  1. explicit values (notebook parameters, CLI flags) passed to `Settings.load(...)`; a parameter left at
     None is not given, so it never hides the environment;
  2. environment variables (`DOCBOT_*`, and the names an OpenShift AI data connection injects:
     `AWS_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`, ...);
  3. a `.env` file in the project folder (or the current folder);
  4. what the lab itself recorded: with `stack="local"` the endpoints and generated credentials of the
     running local stack; with `stack="cluster"` the cluster state file (`cluster.env`, next to the first
     `.env`) that notebooks 03 and 04 write: the model's endpoint, served name and token, Milvus' URI;
  5. the defaults below.

Secrets are `SecretStr`: their repr, `str()` and `Settings.table()` show them masked.
Pass secrets through the environment or `.env`, never as notebook parameters (papermill writes
parameters into the executed notebook).

Layer: core (the bottom): imports nothing of Doc Bot's beyond core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from docbot_lib.core.envfile import cluster_state_file, env_files, project_dir, write_env
from docbot_lib.core.errors import ConfigError

if TYPE_CHECKING:
    from docbot_lib.core.names import LabNames


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _workbench_namespace() -> str | None:
    """The project of the workbench pod this runs in (None outside a pod): a learner's default `user`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


ENV_PREFIX = "DOCBOT_"


def env_name(field: str) -> str:
    """The variable (environment, `.env`, the cluster state file) a field is read from: `DOCBOT_<FIELD>`."""
    return f"{ENV_PREFIX}{field.upper()}"


# Fields the local stack fills in (when not set explicitly): see docbot_lib.local.stack.
LOCAL_STACK_FIELDS = (
    "s3_endpoint",
    "s3_access_key",
    "s3_secret_key",
    "llm_base_url",
    "llm_model_name",
    "llm_api_key",
    "milvus_uri",
    "milvus_server_uri",
    "hf_endpoint",
    "model_id",
    "model_revision",
)


# What the local stack's model gets unless set otherwise: SmolLM2-135M on 2 CPU cores reads a short prompt and writes
# a short answer far sooner (first token ~2x sooner with 3 passages than with 5); a model this small does not
# use a long context or a long answer well. The cluster's model (Mistral-7B) keeps the defaults of the fields.
SMALL_MODEL_INSTRUCTIONS = (
    "Answer the question in one sentence, using only the numbered sources below. End the sentence with the "
    "number of the source you used in square brackets, like [1]. If no source answers the question, reply "
    "exactly: I don't know."
)
SMALL_MODEL_DEFAULTS: dict[str, Any] = {"rag_instructions": SMALL_MODEL_INSTRUCTIONS, "search_k": 3, "max_tokens": 160}


# The fields, grouped by what they configure; Settings combines them (its field order is theirs, top to bottom).
class StackFields(BaseModel):
    """Where the lab runs, its working folder, the local stack's ports, and whose objects these are."""

    # where the lab runs: the embedded local stack, or services on a cluster
    stack: Literal["local", "cluster"] = "local"
    home: Path = Field(
        default_factory=lambda: project_dir() / ".docbot",
        description="Doc Bot's working folder: local stack state, logs, data",
    )

    # local stack ports (127.0.0.1); change them when a port is taken
    local_s3_port: int = 9400
    local_llm_port: int = 8400
    local_milvus_port: int = 19540
    local_hub_port: int = 8410
    local_milvus_server_port: int = Field(19550, description="the local Milvus 2.3 server (auth on) for day 2")
    local_llm_gguf: Path | None = Field(None, description="model file of the local LLM; default SmolLM2-135M")

    # the OpenShift project (namespace) the lab deploys into; None: the workbench's own, or `oc project`'s
    namespace: str | None = None
    # the learner: names their Milvus database, users and roles, S3 prefix (docbot_lib.core.names); one per learner
    # when a class shares a cluster. None: the workbench's namespace in a workbench, else no learner (plain names)
    user: str | None = None


class StorageFields(BaseModel):
    """The S3 storage the model is uploaded to (MinIO, ODF, AWS, the local moto)."""

    # S3 (MinIO / ODF / AWS): the same names as an OpenShift AI data connection
    s3_endpoint: str | None = Field(None, validation_alias=AliasChoices("DOCBOT_S3_ENDPOINT", "AWS_S3_ENDPOINT"))
    s3_access_key: str | None = Field(None, validation_alias=AliasChoices("DOCBOT_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))
    s3_secret_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DOCBOT_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
    )
    s3_region: str = Field("us-east-1", validation_alias=AliasChoices("DOCBOT_S3_REGION", "AWS_DEFAULT_REGION"))
    s3_bucket: str = Field("docbot", validation_alias=AliasChoices("DOCBOT_S3_BUCKET", "AWS_S3_BUCKET"))


class ModelFields(BaseModel):
    """The model to download from the Hugging Face hub (or its local stand-in) and serve."""

    # the model to serve
    model_id: str = "mistralai/Mistral-7B-Instruct-v0.2"
    model_revision: str = "main"
    model_dir: Path | None = Field(None, description="download folder; default HOME/models")
    hf_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DOCBOT_HF_TOKEN", "HF_TOKEN"))
    hf_endpoint: str | None = Field(None, validation_alias=AliasChoices("DOCBOT_HF_ENDPOINT", "HF_ENDPOINT"))


class LLMFields(BaseModel):
    """The chat model the chatbot asks, its sampling and instructions, and the optional judge."""

    # the LLM: any OpenAI-compatible endpoint (vLLM on KServe, or the local llama.cpp server)
    llm_base_url: str | None = None
    llm_model_name: str = "mistral-7b-instruct"
    llm_api_key: SecretStr | None = None
    llm_cluster_url: str | None = Field(
        None,
        description="the model's address for pods in the cluster (the chatbot); None: the predictor Service of "
        "the model notebook 03 deployed in this project. `lab provision --model` sets the class's",
    )
    temperature: float = 0.01
    top_p: float = 0.92
    max_tokens: int = 512
    presence_penalty: float = 1.03
    rag_instructions: str | None = Field(
        None,
        description="the chatbot's instructions; None: docbot_lib.pipeline.rag.INSTRUCTIONS (the local stack: SMALL_MODEL_DEFAULTS)",
    )
    llm_system_role: bool | None = Field(None, description="None = known from the model name (Mistral-7B-Instruct: no)")

    # an optional judge model for notebook 07 / `docbot eval`: any OpenAI-compatible endpoint
    judge_base_url: str | None = Field(None, description="None = no judge: only the checks that need no model")
    judge_model: str | None = Field(None, description="the judge's model name; None = llm_model_name")
    judge_api_key: SecretStr | None = None


class MilvusFields(BaseModel):
    """Milvus: where the documents live, and the identities that read, write and administer it."""

    # Milvus: a server URI (http://host:19530), or a local Milvus Lite file path for one process
    milvus_uri: str | None = None
    milvus_token: SecretStr | None = Field(None, description="user:password, or an API token")
    milvus_app_token: SecretStr | None = Field(None, description="the read-only user's token: the chatbot, notebook 06")
    milvus_root_token: SecretStr | None = Field(
        None,
        description="root:password, for the day-2 steps (`docbot milvus secure`)",
    )
    milvus_collection: str = "docbot"
    milvus_server_uri: str | None = Field(
        None,
        description="a Milvus server with auth for the day-2 steps (notebook 04, `docbot milvus`); None: "
        "milvus_uri. The local stack puts its Milvus 2.3 server here: Milvus Lite has no users",
    )


class RetrievalFields(BaseModel):
    """Embeddings, ingestion and retrieval."""

    # embeddings: a sentence-transformers model run in-process, or an OpenAI-compatible endpoint
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="in-process model precision; auto = bfloat16 where the CPU has native bf16 (AMX/AVX512-BF16)",
    )
    embedding_query_prefix: str | None = Field(None, description="None = the model's known prefix (nomic, e5) or none")
    embedding_document_prefix: str | None = None
    embedding_normalize: bool = True
    embedding_batch_size: int = 32

    # ingestion and retrieval
    chunk_tokens: int = Field(
        200,
        description="chunk size in the embedding model's tokens, title/section header included",
    )
    max_document_mb: float = 25.0
    url_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds an http(s) document may take to download; slower: skipped",
    )
    documents_prefix: str = "documents/"
    search_k: int = 5
    hybrid: bool = Field(True, description="dense + BM25 with reciprocal-rank fusion where the server supports BM25")
    max_chunks_per_source: int | None = Field(1, description="chunks of one document among the first results")
    min_similarity: float = Field(0.2, description="cosine similarity below which no chunk counts as relevant")


class ApiFields(BaseModel):
    """The chatbot API (`docbot serve`): its token, limits and binding."""

    # the chatbot API (`docbot serve`): every /v1 route needs "Authorization: Bearer <api_key>"
    api_key: SecretStr | None = Field(None, description="the chatbot API's bearer token (a Secret on the cluster)")
    api_max_concurrency: int = Field(4, ge=1, description="answers generated at once; more requests wait for a slot")
    api_queue_timeout: float = Field(
        30.0,
        ge=0,
        description="seconds a request waits for a slot, then 503 with Retry-After",
    )
    api_max_queue: int = Field(64, ge=0, description="requests waiting for a slot at most; beyond that 503 at once")
    api_max_body_kb: int = Field(64, ge=1, description="largest request body (KiB); larger: HTTP 413")
    api_max_messages: int = Field(50, ge=1, description="messages in one request at most; more: HTTP 422")
    api_max_message_chars: int = Field(8000, ge=1, description="characters in one message at most; longer: HTTP 422")
    api_public_docs: bool = Field(False, description="serve /docs, /openapi.json and /metrics without the API key")
    api_host: str = Field("127.0.0.1", description="address `docbot serve` binds; 0.0.0.0 in a container")
    api_trusted_proxies: str = Field(
        "127.0.0.1",
        description="addresses whose X-Forwarded-* headers are trusted (comma-separated)",
    )


class Settings(
    ApiFields, RetrievalFields, MilvusFields, LLMFields, ModelFields, StorageFields, StackFields, BaseSettings
):
    """Doc Bot's configuration. Build it with `Settings.load(**parameters)`.

    Where each field is read from is pydantic-settings' own: `DOCBOT_<FIELD>` (`env_prefix`; case does not
    matter), never the bare field name (a `HOME` or `STACK` in the environment does not get in). The few fields
    an OpenShift AI data connection or Hugging Face also name (`AWS_S3_ENDPOINT`, `HF_TOKEN`, ...) list both in
    `validation_alias`, `DOCBOT_<FIELD>` first: with both set, Doc Bot's own wins (an alias replaces the prefixed
    name, so it is written out). `validate_by_name`: `Settings.load` passes parameters by field name.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        validate_by_name=True,
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)  # what load() was given explicitly

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Settings from parameters (None means "not given"), environment, `.env`, local stack, defaults."""
        unknown = set(overrides) - set(cls.model_fields)
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}", f"use one of: {', '.join(cls.model_fields)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = cls(_env_file=env_files(), **given)
        if settings.stack == "local":
            settings = settings._with_local_stack()
        elif cluster_state_file().is_file():
            # what notebooks 03 and 04 recorded, below .env (pydantic-settings: later files win)
            settings = cls(_env_file=(cluster_state_file(), *env_files()), **given)
        settings._overrides = given
        return settings

    def record(self, **values: Any) -> Settings:
        """Remember values for the next notebooks on this cluster (the cluster state file, mode 600), and
        return the settings with them. Explicit settings (parameters, environment, `.env`) still win."""
        if self.stack != "cluster":
            raise ConfigError(
                "only a cluster's state is recorded (the local stack keeps its own)",
                "record after deploying to a cluster (STACK = cluster)",
            )
        unknown = set(values) - set(type(self).model_fields)
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}", "record fields of Settings")
        clear = {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in values.items()}
        write_env(cluster_state_file(), {env_name(k): str(v) for k, v in clear.items() if v is not None})
        return self.reload()

    @property
    def names(self) -> LabNames:
        """The names of this learner's objects on a cluster (`user`, else the workbench's namespace); the plain
        ones on the local stack, which serves one person (Milvus Lite has one database)."""
        from docbot_lib.core.names import LabNames

        if self.stack != "cluster":
            return LabNames()
        return LabNames(self.user or _workbench_namespace())

    @property
    def milvus_user(self) -> str:
        """The Milvus user the token logs in as (never its password): "(no token)" without one."""
        token = self.secret("milvus_token")
        return token.split(":", 1)[0] if token and ":" in token else "(API token)" if token else "(no token)"

    def as_reader(self) -> Settings:
        """The same settings as the read-only Milvus user (the chatbot's, from notebook 04) when one is known;
        the ingest user writes, the chatbot and notebook 06 only read."""
        if self.milvus_app_token is None:
            return self
        return self.model_copy(update={"milvus_token": self.milvus_app_token})

    @property
    def day2_milvus_uri(self) -> str | None:
        """The Milvus the day-2 steps (root password, users, roles) talk to: `milvus_server_uri`, unless only
        `milvus_uri` was given (then that one: a server you chose). On a cluster both are the same Milvus;
        locally the documents live in Milvus Lite (`milvus_uri`) and day 2 runs on the Milvus 2.3 server."""
        chosen = self.model_fields_set
        if self.milvus_server_uri and ("milvus_server_uri" in chosen or "milvus_uri" not in chosen):
            return self.milvus_server_uri
        return self.milvus_uri

    @property
    def day2_env_file(self) -> Path:
        """Where the day-2 steps keep the passwords they generate (mode 600): on the local stack's own server,
        beside its data (HOME/local/milvus-server.env: they live and go with it, and never reach the `.env`
        that the documents' Milvus Lite reads); elsewhere the project's `.env`."""
        if self.stack == "local" and self.day2_milvus_uri == self.local_defaults()["milvus_server_uri"]:
            return self.local_dir / "milvus-server.env"
        return env_files()[0]

    # -- the local stack ---------------------------------------------------------------
    @property
    def local_dir(self) -> Path:
        return self.home / "local"

    @property
    def local_state_file(self) -> Path:
        return self.local_dir / "stack.json"

    def local_defaults(self) -> dict[str, Any]:
        """Where the local services listen (before `docbot local up` has written credentials)."""
        host = "127.0.0.1"
        return {
            "s3_endpoint": f"http://{host}:{self.local_s3_port}",
            "llm_base_url": f"http://{host}:{self.local_llm_port}/v1",
            "milvus_uri": f"http://{host}:{self.local_milvus_port}",
            "milvus_server_uri": f"http://{host}:{self.local_milvus_server_port}",
            "hf_endpoint": f"http://{host}:{self.local_hub_port}",
        }

    def _with_local_stack(self) -> Settings:
        values = self.local_defaults()
        if self.local_state_file.is_file():
            state = json.loads(self.local_state_file.read_text())
            values.update(state.get("settings", {}))
        update = {k: v for k, v in values.items() if k in LOCAL_STACK_FIELDS and k not in self.model_fields_set}
        update |= {k: v for k, v in SMALL_MODEL_DEFAULTS.items() if k not in self.model_fields_set}
        for key in ("s3_secret_key", "llm_api_key"):
            if isinstance(update.get(key), str):
                update[key] = SecretStr(update[key])
        merged = self.model_copy(update=update)
        # model_copy marks the update as explicitly set; it is not (reload() must see the stack anew)
        object.__setattr__(merged, "__pydantic_fields_set__", set(self.model_fields_set))
        return merged

    def reload(self) -> Settings:
        """The same explicit values, with the environment, `.env` and the lab's recorded state read again
        (after `docbot local up`, or after a notebook recorded what it deployed)."""
        return type(self).load(**self._overrides)

    # -- derived values -----------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.model_dir or self.home / "models"

    def start_hint(self, what: str) -> str:
        """The fix to print when a service does not answer: start the local stack, or check `what`."""
        if self.stack == "local":
            return "start the local stack: `docbot local up` (or `make lab`); `docbot local status` shows its logs"
        return f"check {what} in your settings (environment or .env) and that the service is running"

    def secret(self, name: str) -> str | None:
        """The clear value of a secret field, for the client that needs it (never for printing)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def table(self) -> list[tuple[str, str]]:
        """(name, value) rows with every secret masked: safe to print."""
        rows = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "****** (set)" if value.get_secret_value() else "(empty)"
            elif value is None:
                shown = "(not set)"
            else:
                shown = str(value)
            rows.append((name, shown))
        return rows

    def __str__(self) -> str:
        rows = self.table()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
