"""Settings: precedence (parameters > environment > .env > local stack > defaults) and secret masking."""

import json

from pydantic import SecretStr

from docbot_lib.core.settings import Settings


def write_state(home, **settings):
    (home / "local").mkdir(parents=True)
    (home / "local" / "stack.json").write_text(json.dumps({"services": {}, "settings": settings}))


def test_defaults_point_at_the_local_stack_ports(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    monkeypatch.setenv("DOCBOT_LOCAL_LLM_PORT", "18001")
    s = Settings.load()
    assert s.stack == "local"
    assert s.llm_base_url == "http://127.0.0.1:18001/v1"
    assert s.s3_endpoint == "http://127.0.0.1:9400"
    assert s.milvus_uri == "http://127.0.0.1:19540"
    assert s.llm_model_name == "mistral-7b-instruct"


def test_the_local_stacks_small_model_gets_a_short_prompt_and_the_cluster_the_fields_defaults(monkeypatch, tmp_path):
    from docbot_lib.core.settings import SMALL_MODEL_DEFAULTS, SMALL_MODEL_INSTRUCTIONS

    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    local = Settings.load()
    assert (local.rag_instructions, local.search_k, local.max_tokens) == (SMALL_MODEL_INSTRUCTIONS, 3, 160)
    assert "rag_instructions" not in local.model_fields_set  # still a default: reload() sees it anew
    cluster = Settings.load(stack="cluster")
    assert {name: getattr(cluster, name) for name in SMALL_MODEL_DEFAULTS} == {
        name: Settings.model_fields[name].default for name in SMALL_MODEL_DEFAULTS
    }
    assert (cluster.rag_instructions, cluster.search_k, cluster.max_tokens) == (None, 5, 512)  # rag.INSTRUCTIONS
    monkeypatch.setenv("DOCBOT_MAX_TOKENS", "300")  # what a learner sets wins over the local default
    chosen = Settings.load(search_k=4)
    assert (chosen.max_tokens, chosen.search_k, chosen.rag_instructions) == (300, 4, SMALL_MODEL_INSTRUCTIONS)


def test_precedence_parameters_env_dotenv_stack_defaults(monkeypatch, tmp_path):
    write_state(
        tmp_path,
        llm_model_name="from-stack",
        llm_base_url="http://stack/v1",
        s3_endpoint="http://stack-s3",
        milvus_uri="http://stack-milvus",
    )
    env_file = tmp_path / "test.env"
    env_file.write_text(
        "DOCBOT_LLM_BASE_URL=http://dotenv/v1\nDOCBOT_S3_ENDPOINT=http://dotenv-s3\n"
        "DOCBOT_MILVUS_URI=http://dotenv-milvus\n"
    )
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    monkeypatch.setenv("DOCBOT_S3_ENDPOINT", "http://env-s3")
    monkeypatch.setenv("DOCBOT_MILVUS_URI", "http://env-milvus")

    s = Settings.load(milvus_uri="http://param-milvus", s3_bucket=None)
    assert s.milvus_uri == "http://param-milvus"  # parameter beats environment
    assert s.s3_endpoint == "http://env-s3"  # environment beats .env
    assert s.llm_base_url == "http://dotenv/v1"  # .env beats the local stack
    assert s.llm_model_name == "from-stack"  # the local stack beats the defaults
    assert s.s3_bucket == "docbot"  # None means "not given": the default stays


def test_cluster_stack_ignores_local_state(monkeypatch, tmp_path):
    write_state(tmp_path, llm_base_url="http://stack/v1", llm_model_name="from-stack")
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    s = Settings.load(stack="cluster")
    assert s.llm_base_url is None
    assert s.llm_model_name == "mistral-7b-instruct"


def test_data_connection_variables_are_understood(monkeypatch):
    # what an OpenShift AI data connection injects into a workbench
    monkeypatch.setenv("AWS_S3_ENDPOINT", "https://minio.example:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio-user")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio-secret-value")
    monkeypatch.setenv("AWS_S3_BUCKET", "models")
    s = Settings.load(stack="cluster")
    assert (s.s3_endpoint, s.s3_access_key, s.s3_bucket) == ("https://minio.example:9000", "minio-user", "models")
    assert s.secret("s3_secret_key") == "minio-secret-value"


def test_unprefixed_names_do_not_leak_in(monkeypatch):
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("STACK", "cluster")
    s = Settings.load()
    assert s.stack == "local"
    assert str(s.home) != "/somewhere/else"


def test_secrets_are_masked_everywhere(monkeypatch):
    values = {
        "s3_secret_key": "s3-SECRET-1",
        "llm_api_key": "llm-SECRET-2",
        "milvus_token": "root:SECRET-3",
        "hf_token": "hf_SECRET4",
        "embedding_api_key": "emb-SECRET-5",
    }
    monkeypatch.setenv("HF_TOKEN", values["hf_token"])
    s = Settings.load(**{k: v for k, v in values.items() if k != "hf_token"})
    shown = "\n".join([repr(s), str(s), json.dumps(s.table()), s.model_dump_json()])
    for secret in values.values():
        assert secret not in shown
    assert dict(s.table())["llm_api_key"] == "****** (set)"
    assert s.secret("milvus_token") == "root:SECRET-3"
    assert s.secret("hf_token") == "hf_SECRET4"


def test_reload_sees_the_stack_written_after_loading(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path))
    s = Settings.load(llm_model_name="mine")
    assert s.llm_api_key is None
    write_state(tmp_path, llm_api_key="generated", llm_model_name="from-stack")
    again = s.reload()
    assert again.secret("llm_api_key") == "generated"
    assert again.llm_model_name == "mine"  # an explicit value stays explicit


def test_a_misspelt_parameter_is_an_error():
    import pytest

    from docbot_lib.core.errors import DocbotError

    with pytest.raises(DocbotError, match="unknown setting.*llm_base_ur"):
        Settings.load(llm_base_ur="http://typo/v1")


def test_a_parameter_left_at_none_does_not_hide_the_environment(monkeypatch, tmp_path):
    """The notebooks' `STACK = None`: DOCBOT_STACK=cluster in the environment or .env decides."""
    env_file = tmp_path / "test.env"
    env_file.write_text("DOCBOT_STACK=cluster\n")
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    assert Settings.load(stack=None).stack == "cluster"
    assert Settings.load(stack="local").stack == "local"  # a value the learner gives still wins
    monkeypatch.setenv("DOCBOT_STACK", "local")
    assert Settings.load(stack=None).stack == "local"  # the environment beats .env


def test_what_the_cluster_notebooks_record_is_found_below_dotenv(monkeypatch, tmp_path):
    import stat

    from docbot_lib.core.envfile import cluster_state_file

    env_file = tmp_path / ".env"
    env_file.write_text("DOCBOT_STACK=cluster\nDOCBOT_MILVUS_URI=http://from-dotenv:19530\n")
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    s = Settings.load()
    assert s.llm_base_url is None
    recorded = s.record(
        llm_base_url="https://model.apps.example/v1",
        llm_model_name="mistral",
        llm_api_key=SecretStr("token-VALUE"),
        milvus_uri="http://milvus.ns.svc:19530",
    )
    assert cluster_state_file() == tmp_path / "cluster.env"
    assert stat.S_IMODE(cluster_state_file().stat().st_mode) == 0o600
    for again in (recorded, Settings.load()):  # the next notebook finds it
        assert again.llm_base_url == "https://model.apps.example/v1" and again.llm_model_name == "mistral"
        assert again.secret("llm_api_key") == "token-VALUE"
        assert again.milvus_uri == "http://from-dotenv:19530"  # .env beats what was recorded
    assert Settings.load(llm_model_name="mine").llm_model_name == "mine"
    monkeypatch.setenv("DOCBOT_STACK", "local")
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path / "home"))
    assert Settings.load().llm_base_url.startswith("http://127.0.0.1:")  # the local stack ignores it


def test_as_reader_uses_the_read_only_token(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DOCBOT_MILVUS_TOKEN=docbot_ingest:w-secret\nDOCBOT_MILVUS_APP_TOKEN=docbot_app:r-secret\n")
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    s = Settings.load()
    assert s.milvus_user == "docbot_ingest"
    reader = s.as_reader()
    assert reader.milvus_user == "docbot_app" and reader.secret("milvus_token") == "docbot_app:r-secret"
    assert "r-secret" not in str(reader)
    env_file.write_text("")
    assert Settings.load().as_reader().milvus_user == "(no token)"


def _another_value(name, field, tmp_path):
    """A valid value of the field's type that is not its default (as the text a variable holds)."""
    import types
    from pathlib import Path
    from typing import Literal, get_args, get_origin

    default = field.get_default(call_default_factory=True)
    kind = field.annotation
    if get_origin(kind) is types.UnionType:  # X | None
        (kind,) = (a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is Literal:
        return next(v for v in get_args(kind) if v != default)
    if kind is bool:
        return "false" if default is True else "true"
    if kind is int:
        return str((default or 0) + 3)
    if kind is float:
        return str(default + 0.5)
    if kind is Path:
        return str(tmp_path / name)
    assert kind in (str, SecretStr), f"{name}: a new type, give it a value here"
    return f"{name}-value"


def _loaded(settings, name):
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def test_every_field_is_read_from_its_docbot_name_in_the_environment_and_in_dotenv(monkeypatch, tmp_path):
    from docbot_lib.core.settings import env_name
    from docbot_lib.local.chatbot import settings_environment

    fields = Settings.model_fields
    values = {env_name(name): _another_value(name, field, tmp_path) for name, field in fields.items()}
    values[env_name("stack")] = "cluster"  # the local stack would fill in its own endpoints
    for name in fields:
        assert env_name(name) == "DOCBOT_" + name.upper()

    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    from_env = Settings.load()
    assert {name: _loaded(from_env, name) for name in fields} == {n: values[env_name(n)] for n in fields}
    assert settings_environment(from_env) == values  # what a child process (`docbot serve`) is given to read

    for variable in values:
        monkeypatch.delenv(variable)
    env_file = tmp_path / "all.env"
    env_file.write_text("".join(f"{variable}='{value}'\n" for variable, value in values.items()))
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    from_dotenv = Settings.load()
    assert {name: _loaded(from_dotenv, name) for name in fields} == {n: values[env_name(n)] for n in fields}


def test_the_workbench_names_are_the_aliases_after_doc_bots_own():
    """The names a data connection and Hugging Face inject, each after DOCBOT_<FIELD>: Doc Bot's own wins."""
    from docbot_lib.core.settings import env_name

    aliases = {
        name: tuple(field.validation_alias.choices)
        for name, field in Settings.model_fields.items()
        if field.validation_alias is not None
    }
    assert aliases == {
        "s3_endpoint": (env_name("s3_endpoint"), "AWS_S3_ENDPOINT"),
        "s3_access_key": (env_name("s3_access_key"), "AWS_ACCESS_KEY_ID"),
        "s3_secret_key": (env_name("s3_secret_key"), "AWS_SECRET_ACCESS_KEY"),
        "s3_region": (env_name("s3_region"), "AWS_DEFAULT_REGION"),
        "s3_bucket": (env_name("s3_bucket"), "AWS_S3_BUCKET"),
        "hf_token": (env_name("hf_token"), "HF_TOKEN"),
        "hf_endpoint": (env_name("hf_endpoint"), "HF_ENDPOINT"),
    }


def test_precedence_holds_between_the_workbench_names_and_doc_bots_own(monkeypatch, tmp_path):
    """parameter > environment > .env whichever of a field's names each one uses; within one source DOCBOT_* wins."""
    env_file = tmp_path / "test.env"
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))

    env_file.write_text("DOCBOT_S3_ENDPOINT=http://dotenv-docbot\nDOCBOT_HF_TOKEN=hf_DOTENV\n")
    monkeypatch.setenv("AWS_S3_ENDPOINT", "http://env-aws")
    monkeypatch.setenv("HF_TOKEN", "hf_ENV")
    s = Settings.load(stack="cluster")
    assert (s.s3_endpoint, s.secret("hf_token")) == ("http://env-aws", "hf_ENV")  # the environment beats .env
    assert Settings.load(stack="cluster", s3_endpoint="http://param").s3_endpoint == "http://param"

    monkeypatch.setenv("DOCBOT_S3_ENDPOINT", "http://env-docbot")
    assert Settings.load(stack="cluster").s3_endpoint == "http://env-docbot"  # both in one source: DOCBOT_* wins

    for name in ("AWS_S3_ENDPOINT", "HF_TOKEN", "DOCBOT_S3_ENDPOINT"):
        monkeypatch.delenv(name)
    env_file.write_text("AWS_S3_ENDPOINT=http://dotenv-aws\nDOCBOT_S3_ENDPOINT=http://dotenv-docbot\n")
    assert Settings.load(stack="cluster").s3_endpoint == "http://dotenv-docbot"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-SECRET-value")
    env_file.write_text("AWS_S3_ENDPOINT=http://dotenv-aws\n")
    s = Settings.load(stack="cluster")
    assert s.s3_endpoint == "http://dotenv-aws" and s.secret("s3_secret_key") == "aws-SECRET-value"
    assert isinstance(s.s3_secret_key, SecretStr) and "aws-SECRET-value" not in repr(s) + str(s)


def test_unprefixed_look_alikes_in_dotenv_or_the_environment_do_not_get_in(monkeypatch, tmp_path):
    env_file = tmp_path / "test.env"
    env_file.write_text("STACK=cluster\nHOME=/somewhere/else\nS3_BUCKET=dotenv-bucket\nLLM_MODEL_NAME=dotenv\n")
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(env_file))
    monkeypatch.setenv("DOCBOT_HOME", str(tmp_path / "home"))  # no local stack's recorded state
    monkeypatch.setenv("S3_ENDPOINT", "http://bare-s3")
    monkeypatch.setenv("MODEL_ID", "bare/model")
    monkeypatch.setenv("API_KEY", "bare-key")
    monkeypatch.setenv("USER", "bare-user")
    s = Settings.load()
    assert (s.stack, s.s3_bucket, s.llm_model_name) == ("local", "docbot", "mistral-7b-instruct")
    assert str(s.home) != "/somewhere/else" and s.user is None and s.api_key is None
    assert s.s3_endpoint == "http://127.0.0.1:9400" and s.model_id != "bare/model"
