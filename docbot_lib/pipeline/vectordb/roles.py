"""Day 2 as root: root's password changed, the reader and writer roles granted, their users (`secure`, in one
call, safe to re-run); a learner's database, roles, users and probe (`secure_learner`), and their removal
(`drop_learner`).

Layer: pipeline, step `vectordb` (roles and users): imports core, clients and vectordb's own modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.clients.milvus import DEFAULT_ROOT_TOKEN, connect, quiet_pymilvus, supports_rbac
from docbot_lib.core.envfile import read_env, write_env
from docbot_lib.core.errors import AuthRefused, BadInput, ConfigError
from docbot_lib.core.names import DEFAULT_DATABASE, LabNames
from docbot_lib.pipeline.vectordb.credentials import (
    APP_TOKEN_KEY,
    INGEST_TOKEN_KEY,
    ROOT_SECRET,
    ROOT_TOKEN_KEY,
    _login,
    change_root_password,
    learner_tokens,
)
from docbot_lib.pipeline.vectordb.grants import (
    PLAIN,
    READER_PRIVILEGES,
    WRITER_PRIVILEGES,
    _privileges,
    lab_collections,
)
from docbot_lib.pipeline.vectordb.verify import _ensure_probe, _login_outcome


@dataclass
class SecureResult:
    """What `secure` did; safe to print (no password)."""

    uri: str
    env_file: Path
    root_password_changed: bool
    created: list[str] = field(default_factory=list)  # roles and users created this time
    granted: int = 0  # (role, privilege, object) grants ensured
    tokens: dict[str, str] = field(default_factory=dict, repr=False)  # env key -> "user:password"

    def __str__(self) -> str:
        root = "changed to a generated one" if self.root_password_changed else "already changed (kept)"
        made = ", ".join(self.created) or "none (all existed)"
        return (
            f"root password: {root}\nroles and users created: {made}\n"
            f"grants ensured: {self.granted}\n"
            f"credentials stored in {self.env_file} (mode 600): {', '.join(self.tokens)}"
        )


def ensure_roles_and_users(
    client, uri: str, collection: str, passwords: dict[str, str], names: LabNames = PLAIN
) -> tuple[list[str], int]:
    """Create (if missing) the reader and writer roles, grant them on `lab_collections(collection)`,
    create the users `docbot_app` (reader) and `docbot_ingest` (writer) with the given passwords (a user
    whose password is not the given one is recreated: root cannot read passwords). Idempotent. Returns (what was created, number of grants ensured)."""
    created = []
    collections = lab_collections(collection)
    roles = set(client.list_roles())
    granted = 0
    for role, spec in ((names.reader_role, READER_PRIVILEGES), (names.writer_role, WRITER_PRIVILEGES)):
        if role not in roles:
            client.create_role(role)
            created.append(f"role {role}")
        for object_type, privilege, target in _privileges(spec, collections):
            # in the learner's database only; granting twice is a no-op
            client.grant_privilege(role, object_type, privilege, target, db_name=names.database)
            granted += 1
    users = set(client.list_users())
    for user, role in ((names.app_user, names.reader_role), (names.ingest_user, names.writer_role)):
        if user in users:
            # root may not know the old password: replacing the user is the one way to set it
            current = client.describe_user(user).get("roles", ())
            if role not in current or not _password_works(uri, user, passwords[user], names.database):
                client.drop_user(user)
                client.create_user(user, passwords[user])
                created.append(f"user {user} (password reset)")
        else:
            client.create_user(user, passwords[user])
            created.append(f"user {user}")
        client.grant_role(user, role)
    return created, granted


def _password_works(uri: str, user: str, password: str, database: str = DEFAULT_DATABASE) -> bool:
    return _login_outcome(uri, f"{user}:{password}", database) == "allowed"


def secure(
    uri: str,
    collection: str,
    env_file: Path,
    root_token: str | None = None,
    echo: Callable[[str], None] = lambda _msg: None,
    names: LabNames = PLAIN,
) -> SecureResult:
    """Day 2 in one call, safe to re-run: root gets a generated password (unless it already has one),
    the roles and users exist with their grants, and every password is stored in `env_file` (mode 600).

    `root_token` is root's current "root:password" (Settings.milvus_root_token); when absent or refused,
    a fresh server's default is tried. Refuses politely on Milvus Lite (no users, no passwords)."""
    env_file = Path(env_file)
    stored = read_env(env_file)
    candidates = list(dict.fromkeys(t for t in (root_token, stored.get(ROOT_TOKEN_KEY), DEFAULT_ROOT_TOKEN) if t))
    try:
        client, token = _login(uri, candidates)
    except AuthRefused:  # every root password known here: say where the right one is kept
        raise AuthRefused(
            f"Milvus at {uri} refused every root password known here (the default one has been changed)",
            f"set {ROOT_TOKEN_KEY}=root:<password> in the environment or {env_file} "
            f"(on the cluster: from the Secret {ROOT_SECRET})",
            service="milvus",
        ) from None
    try:
        if not supports_rbac(client):
            raise ConfigError(
                f"{uri} is Milvus Lite: it has no users, roles or passwords, so there is nothing to secure",
                "run the day-2 steps against a Milvus server (MILVUS_URI), e.g. the one deployed by this notebook",
            )
        changed = token == DEFAULT_ROOT_TOKEN
        if changed:
            echo("root still has the default password: changing it")
            token = change_root_password(client, token, env_file)
            client.close()
            client = connect(uri, token)
        elif stored.get(ROOT_TOKEN_KEY) != token:
            write_env(env_file, {ROOT_TOKEN_KEY: token})
        tokens = {ROOT_TOKEN_KEY: token, **learner_tokens(stored, names)}
        # stored before the users get them: a crash in between leaves a password to retry with, never none
        write_env(env_file, tokens)
        created, granted = secure_learner(client, uri, token, collection, tokens, names)
        for item in created:
            echo(f"created {item}")
    finally:
        client.close()
    return SecureResult(uri, env_file, changed, created, granted, tokens)


def secure_learner(
    root, uri: str, root_token: str, collection: str, tokens: dict[str, str], names: LabNames = PLAIN
) -> tuple[list[str], int]:
    """As root (`root` is root's client, `root_token` its token): the learner's database (when not the default
    one), roles granted in it on the lab's collections, users with the passwords of `tokens`, and the probe
    collection. Idempotent. Returns (what was created, grants ensured)."""
    created = []
    if names.database != DEFAULT_DATABASE and names.database not in root.list_databases():
        root.create_database(names.database)
        created.append(f"database {names.database}")
    passwords = {
        tokens[key].split(":", 1)[0]: tokens[key].split(":", 1)[1] for key in (INGEST_TOKEN_KEY, APP_TOKEN_KEY)
    }
    made, granted = ensure_roles_and_users(root, uri, collection, passwords, names)
    inside = connect(uri, root_token, database=names.database) if names.database != DEFAULT_DATABASE else root
    try:
        _ensure_probe(inside, collection)
    finally:
        if inside is not root:
            inside.close()
    return created + made, granted


def drop_learner(uri: str, root_token: str, names: LabNames, collection: str = "docbot") -> list[str]:
    """As root: remove one learner's database (its collections first), users and roles; every other learner's
    stay intact. Idempotent. Returns what was removed."""
    if names.user is None:
        raise BadInput("refusing to drop the plain (shared) names", "name the learner: LabNames(user)")
    removed = []
    root = connect(uri, root_token)
    try:
        if names.database in root.list_databases():
            inside = connect(uri, root_token, database=names.database)
            try:
                for name in inside.list_collections():
                    inside.drop_collection(name)
            finally:
                inside.close()
            root.drop_database(names.database)
            removed.append(f"database {names.database}")
        users = set(root.list_users())
        for user in (names.app_user, names.ingest_user):
            if user in users:
                root.drop_user(user)
                removed.append(f"user {user}")
        roles = set(root.list_roles())
        for role, spec in ((names.reader_role, READER_PRIVILEGES), (names.writer_role, WRITER_PRIVILEGES)):
            if role in roles:
                for object_type, privilege, target in _privileges(spec, lab_collections(collection)):
                    with quiet_pymilvus(), contextlib.suppress(Exception):  # a grant already gone
                        root.revoke_privilege(role, object_type, privilege, target, db_name=names.database)
                root.drop_role(role)
                removed.append(f"role {role}")
    finally:
        root.close()
    return removed
