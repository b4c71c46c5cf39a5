"""The credentials of day 2: the env-file keys of the generated tokens, passwords generated and root's changed
(stored first), the learner users' tokens, a login with the first token a server accepts, and the tokens as one
Secret per identity. Generated passwords are stored, never printed.

Layer: pipeline, step `vectordb` (its credentials): imports core, clients and vectordb.grants.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from docbot_lib.clients.milvus import connect
from docbot_lib.core.envfile import write_env
from docbot_lib.core.errors import AuthRefused, NotFound
from docbot_lib.core.names import LabNames
from docbot_lib.pipeline.vectordb.grants import PLAIN

# Where the generated credentials go (env file keys; the Secret uses the same names).
ROOT_TOKEN_KEY = "DOCBOT_MILVUS_ROOT_TOKEN"  # Settings.milvus_root_token: for re-running `secure`
INGEST_TOKEN_KEY = "DOCBOT_MILVUS_TOKEN"  # Settings.milvus_token: the next notebooks ingest and search
APP_TOKEN_KEY = "DOCBOT_MILVUS_APP_TOKEN"  # the chatbot app's Secret (read-only user)


def generate_password() -> str:
    """A random password Milvus accepts (6-256 characters; URL-safe, so it needs no quoting in .env)."""
    return secrets.token_urlsafe(24)


# One Secret per identity, so that each workload can be given exactly one: the chatbot mounts the reader's, an
# ingestion job the writer's, and no Deployment mounts root's (only the day-2 steps read it, from the workbench).
ROOT_SECRET = "docbot-milvus-root"
WRITER_SECRET = "docbot-milvus-writer"
READER_SECRET = "docbot-milvus-reader"
SECRET_OF_KEY = {ROOT_TOKEN_KEY: ROOT_SECRET, INGEST_TOKEN_KEY: WRITER_SECRET, APP_TOKEN_KEY: READER_SECRET}


def credentials_secrets(tokens: dict[str, str]) -> list[dict[str, Any]]:
    """The generated tokens as Secret manifests, one per identity (`SECRET_OF_KEY`: root's, the writer's, the
    reader's), each holding its one key as in the env file; a Deployment reads it with `secretKeyRef`.
    Keys of `tokens` that name no identity are refused (they would land in no Secret)."""
    unknown = set(tokens) - set(SECRET_OF_KEY)
    if unknown:
        raise NotFound(
            f"no Secret holds {', '.join(sorted(unknown))}",
            f"pass only {', '.join(SECRET_OF_KEY)} (SecureResult.tokens)",
            service="kubernetes",
        )
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_OF_KEY[key],
                "labels": {"app.kubernetes.io/part-of": "docbot", "app.kubernetes.io/component": "vectordb"},
            },
            "stringData": {key: token},
        }
        for key, token in tokens.items()
    ]


def _login(uri: str, tokens: list[str]) -> tuple[Any, str]:
    """The first token of `tokens` the server accepts, with its client."""
    refused = None
    for token in tokens:
        try:
            return connect(uri, token), token
        except AuthRefused as exc:
            refused = exc
    assert refused is not None
    raise refused


def change_root_password(client, old_token: str, env_file: Path) -> str:
    """Give root a generated password; store it in `env_file` FIRST (so it is never lost), then change it.
    Returns the new root token. The old token must be root's current one."""
    new_token = f"root:{generate_password()}"
    write_env(env_file, {ROOT_TOKEN_KEY: new_token})
    client.update_password("root", old_token.split(":", 1)[1], new_token.split(":", 1)[1])
    return new_token


def learner_tokens(stored: dict[str, str], names: LabNames = PLAIN) -> dict[str, str]:
    """The ingest and app users' tokens (env-file keys): the stored ones where they belong to these users,
    new generated passwords otherwise."""
    tokens = {}
    for user, key in ((names.ingest_user, INGEST_TOKEN_KEY), (names.app_user, APP_TOKEN_KEY)):
        known = stored.get(key, "")
        tokens[key] = known if known.startswith(f"{user}:") else f"{user}:{generate_password()}"
    return tokens
