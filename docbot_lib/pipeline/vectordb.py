"""Milvus day 2: what the server is, and its security (root password, roles, users, grants, least privilege).

    info = server_info(connect(uri, token), uri)        # Milvus or Milvus Lite, version, BM25, RBAC
    result = secure(uri, collection, env_file)          # change_root_password + ensure_roles_and_users
    report = verify_least_privilege(uri, collection, tokens)     # each role tried for real, OK/FAIL lines

Connecting (and the server's capabilities) is the client layer's: docbot_lib.clients.milvus; the chunks and
their record are the store's: docbot_lib.pipeline.store. A class of learners: `secure_learner`, `drop_learner`.

Roles Doc Bot creates, granted on the lab's collections (`lab_collections`: the chatbot's collection, the
evaluation's, each with its `_docs` record, and a small probe collection that `verify_least_privilege` uses,
so that the grants can be proved before anything is ingested):
  docbot_reader  search and query (the chatbot app, user `docbot_app`)
  docbot_writer  the reader's privileges + insert, delete, upsert, flush, indexes (the ingestion job,
                 user `docbot_ingest`).
Three privileges are global in Milvus 2.3 (object "*", every collection of the database): DescribeCollection and
ShowCollections (both roles: a client lists and describes collections before it opens one), and
CreateCollection (the writer: ingestion creates its collection and record). Neither role gets DropCollection,
which is global too: it would allow dropping every collection; dropping stays root's.
Generated passwords are stored, never printed: in an env file (mode 600, written whole then renamed) and,
on a cluster, in one Secret per identity (`credentials_secrets`: root's, the writer's, the reader's).

Layer: pipeline, step `vectordb`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docbot_lib.clients.milvus import (
    BM25_SINCE,
    DEFAULT_ROOT_TOKEN,
    connect,
    is_permission_denied,
    parse_version,
    quiet_pymilvus,
    supports_rbac,
)
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from docbot_lib.core.names import DEFAULT_DATABASE, LabNames
from docbot_lib.core.settings import read_env, write_env

PLAIN = LabNames()  # one learner (or none): the plain names; a class gives each learner LabNames(user)
READER_ROLE, WRITER_ROLE = PLAIN.reader_role, PLAIN.writer_role
APP_USER, INGEST_USER = PLAIN.app_user, PLAIN.ingest_user
# Where the generated credentials go (env file keys; the Secret uses the same names).
ROOT_TOKEN_KEY = "DOCBOT_MILVUS_ROOT_TOKEN"  # Settings.milvus_root_token: for re-running `secure`
INGEST_TOKEN_KEY = "DOCBOT_MILVUS_TOKEN"  # Settings.milvus_token: the next notebooks ingest and search
APP_TOKEN_KEY = "DOCBOT_MILVUS_APP_TOKEN"  # the chatbot app's Secret (read-only user)
# Milvus 2.3 privilege names (checked against the server: it rejects unknown ones), by object type.
READER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "Collection": (
        "Search",
        "Query",
        "Load",
        "GetLoadState",
        "GetLoadingProgress",
        "GetStatistics",
        "IndexDetail",
        "ShowPartitions",
        "HasPartition",
    ),
    "Global": ("DescribeCollection", "ShowCollections"),
}
WRITER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "Collection": READER_PRIVILEGES["Collection"]
    + ("Insert", "Delete", "Upsert", "Flush", "GetFlushState", "CreateIndex", "DropIndex", "Release"),
    "Global": READER_PRIVILEGES["Global"] + ("CreateCollection",),
}
GRANT_TIMEOUT = 120.0  # grants reach the proxy's cache within ~16 s on a quiet machine, 50 s seen under load: a deadline, not a wait
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    """What a Milvus endpoint is and supports, printable for a learner."""

    uri: str
    version: str
    rbac: bool  # users, roles and grants
    bm25: bool  # sparse vectors + the BM25 function (hybrid search)
    collections: list[str] = field(default_factory=list)
    as_root: bool = True  # False: seen as a learner's own user (root's password is the administrator's)

    @property
    def kind(self) -> str:
        return "Milvus server" if self.rbac else "Milvus Lite (embedded, no authentication)"

    def __str__(self) -> str:
        rows = [
            ("endpoint", self.uri),
            ("server", f"{self.kind}, version {self.version}"),
            (
                "users/roles",
                "yes" if self.rbac else "no: no users, roles or passwords (anyone who reaches it can read and write)",
            ),
            (
                "BM25 hybrid",
                "yes" if self.bm25 else f"no: needs Milvus >= {BM25_SINCE[0]}.{BM25_SINCE[1]} (dense search only)",
            ),
            ("collections", ", ".join(self.collections) or "(none)"),
        ]
        return "\n".join(f"{name:<12} {value}" for name, value in rows)


def server_info(client, uri: str = "") -> ServerInfo:
    """Version, RBAC and BM25 support, collections of the server behind `client`."""
    version = client.get_server_version()
    return ServerInfo(
        uri=uri,
        version=version,
        rbac=supports_rbac(client),
        bm25=parse_version(version) >= BM25_SINCE,
        collections=sorted(client.list_collections()),
    )


def inspect(
    uri: str, env_file: Path | None = None, root_token: str | None = None, names: LabNames = PLAIN
) -> ServerInfo:
    """`server_info` of the server at `uri`, logged in as root with the first password that works (the given
    one, the one stored in `env_file`, the default); Milvus Lite needs none. A learner of a class, whose
    administrator keeps root's password, is seen as their own ingest user instead (`as_root` False)."""
    stored = read_env(env_file) if env_file else {}
    candidates = [t for t in (root_token, stored.get(ROOT_TOKEN_KEY), DEFAULT_ROOT_TOKEN) if t]
    try:
        client, _token = _login(uri, list(dict.fromkeys(candidates)))
        as_root = True
    except AuthRefused:
        own = stored.get(INGEST_TOKEN_KEY, "")
        if not own.startswith(f"{names.ingest_user}:"):
            raise
        client, as_root = connect(uri, own, database=names.database), False
    try:
        info = server_info(client, uri)
    finally:
        client.close()
    return ServerInfo(info.uri, info.version, info.rbac, info.bm25, info.collections, as_root)


# -- credentials storage ------------------------------------------------------------------------------


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


# -- day 2: root password, roles, users ----------------------------------------------------------------


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


EVAL_SUFFIX = "_eval"  # notebook 07's collection: <collection>_eval
EVAL_SMALL_CHUNKS = (100,)  # its chunk-size variants: <collection>_eval_c100


def record_collection(name: str) -> str:
    """The collection that records what was ingested into collection `name`."""
    return f"{name}_docs"


def lab_collections(collection: str) -> list[str]:
    """Every collection the lab creates around `collection`, each with the `_docs` record the store keeps:
    the chatbot's, the evaluation's and its chunk-size variants, and the probe. The roles are granted on these."""
    evaluation = f"{collection}{EVAL_SUFFIX}"
    stores = [collection, evaluation] + [f"{evaluation}_c{tokens}" for tokens in EVAL_SMALL_CHUNKS]
    return [name for store in stores for name in (store, record_collection(store))] + [probe_collection(collection)]


def _privileges(spec: dict[str, tuple[str, ...]], collections: list[str]) -> list[tuple[str, str, str]]:
    rows = []
    # Global first: grants reach the proxies in the order given, so once a collection grant the probe proves
    # has applied, the global ones (CreateCollection: ingestion's first call) have too
    for object_type, names in sorted(spec.items(), key=lambda item: item[0] != "Global"):
        targets = collections if object_type == "Collection" else ["*"]
        rows += [(object_type, name, target) for name in names for target in targets]
    return rows


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


def probe_collection(collection: str) -> str:
    """The small collection `verify_least_privilege` proves the grants on (same roles, same privileges)."""
    return f"{collection}_rbac_probe"


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


def learner_tokens(stored: dict[str, str], names: LabNames = PLAIN) -> dict[str, str]:
    """The ingest and app users' tokens (env-file keys): the stored ones where they belong to these users,
    new generated passwords otherwise."""
    tokens = {}
    for user, key in ((names.ingest_user, INGEST_TOKEN_KEY), (names.app_user, APP_TOKEN_KEY)):
        known = stored.get(key, "")
        tokens[key] = known if known.startswith(f"{user}:") else f"{user}:{generate_password()}"
    return tokens


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


# -- verification ------------------------------------------------------------------------------------

PROBE_DIM = 4


def _ensure_probe(client, collection: str) -> None:
    probe = probe_collection(collection)
    if not client.has_collection(probe):
        client.create_collection(probe, dimension=PROBE_DIM, consistency_level="Strong")
        # no flush: a Strong search sees the growing segment, and a flush cost ~3 s a learner when provisioning
        client.insert(probe, [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}])


@dataclass
class Verdict:
    """One verified expectation: what was tried, as whom, expected and seen."""

    user: str
    action: str
    expected: str  # "allowed" | "refused"
    seen: str

    @property
    def ok(self) -> bool:
        return self.seen == self.expected

    def __str__(self) -> str:
        return (
            f"{'OK  ' if self.ok else 'FAIL'}  {self.user:<14} {self.action:<28} {self.expected:<8} (saw: {self.seen})"
        )


class VerifyReport(list):
    """The Verdicts of `verify_least_privilege`; printable, `ok` when all hold."""

    @property
    def ok(self) -> bool:
        return bool(self) and all(v.ok for v in self)

    def __str__(self) -> str:
        return "\n".join(str(v) for v in self)


def _attempt(op: Callable[[], Any]) -> str:
    try:
        with quiet_pymilvus():
            op()
    except Exception as exc:  # noqa: BLE001
        return "refused" if is_permission_denied(exc) else f"error: {type(exc).__name__}: {exc}"
    return "allowed"


def wait_until_permitted(op: Callable[[], Any], timeout: float = GRANT_TIMEOUT, interval: float = 0.5) -> float:
    """Poll an operation a grant should allow until it succeeds; seconds waited. Grants reach Milvus'
    proxies asynchronously (seconds). A refusal past the deadline, or any other error, raises."""
    start = time.monotonic()
    while True:
        outcome = _attempt(op)
        if outcome == "allowed":
            return time.monotonic() - start
        if outcome != "refused" or time.monotonic() - start > timeout:
            raise PermissionDenied(
                f"an operation the grants allow is still {outcome} after {time.monotonic() - start:.0f} s",
                "run `docbot milvus secure` again; check the roles with `docbot milvus info`",
                service="milvus",
            )
        time.sleep(interval)


def _permitted(op: Callable[[], Any], timeout: float) -> str:
    """ "allowed" once a fresh grant lets `op` through (waiting for it), else what the server answered."""
    try:
        wait_until_permitted(op, timeout)
    except DocbotError:
        return _attempt(op)
    return "allowed"


def _login_outcome(uri: str, token: str, database: str = DEFAULT_DATABASE) -> str:
    """ "allowed" or "refused" for a login with `token` (or the error, when the server said something else)."""
    try:
        connect(uri, token, database=database).close()
    except AuthRefused:
        return "refused"
    except ServiceUnavailable as exc:
        return f"error: {exc.problem}"
    return "allowed"


def verify_least_privilege(
    uri: str, collection: str, tokens: dict[str, str], timeout: float = GRANT_TIMEOUT, names: LabNames = PLAIN
) -> VerifyReport:
    """Prove the day-2 work on the server: root's public default password no longer logs in; a wrong password
    is refused; on the probe collection the app user searches but may not insert, delete or drop; the ingest
    user inserts but may not drop, nor create users or roles, nor grant itself a role. Waits (polling) for
    fresh grants to apply. `tokens` are the env-file keys of `secure` (SecureResult.tokens or `read_env(env_file)`)."""
    probe = probe_collection(collection)
    report = VerifyReport()
    app_token, ingest_token = tokens[APP_TOKEN_KEY], tokens[INGEST_TOKEN_KEY]

    APP_USER, INGEST_USER = names.app_user, names.ingest_user  # noqa: N806 - the learner's, in their database
    report.append(
        Verdict(
            "root", f"log in as {DEFAULT_ROOT_TOKEN} (the default)", "refused", _login_outcome(uri, DEFAULT_ROOT_TOKEN)
        )
    )
    report.append(
        Verdict(
            APP_USER,
            "log in with a wrong password",
            "refused",
            _login_outcome(uri, f"{APP_USER}:{generate_password()}", names.database),
        )
    )

    app = connect(uri, app_token, database=names.database)
    ingest = connect(uri, ingest_token, database=names.database)
    try:
        search = _permitted(lambda: app.search(probe, [[1.0, 0.0, 0.0, 0.0]], limit=1), timeout)
        report.append(Verdict(APP_USER, f"search {probe}", "allowed", search))
        row = [{"id": 2, "vector": [0.0, 1.0, 0.0, 0.0]}]
        report.append(Verdict(APP_USER, f"insert into {probe}", "refused", _attempt(lambda: app.insert(probe, row))))
        report.append(
            Verdict(APP_USER, f"delete from {probe}", "refused", _attempt(lambda: app.delete(probe, ids=[1])))
        )
        report.append(Verdict(APP_USER, f"drop {probe}", "refused", _attempt(lambda: app.drop_collection(probe))))

        insert = _permitted(lambda: ingest.upsert(probe, row), timeout)
        report.append(Verdict(INGEST_USER, f"insert into {probe}", "allowed", insert))
        report.append(Verdict(INGEST_USER, f"drop {probe}", "refused", _attempt(lambda: ingest.drop_collection(probe))))
        # user and role management stays root's: a leaked ingestion token cannot mint itself more rights
        intruder = f"{INGEST_USER}_intruder"
        report.append(
            Verdict(
                INGEST_USER,
                "create a user",
                "refused",
                _attempt(lambda: ingest.create_user(intruder, generate_password())),
            )
        )
        report.append(Verdict(INGEST_USER, "create a role", "refused", _attempt(lambda: ingest.create_role(intruder))))
        report.append(
            Verdict(
                INGEST_USER,
                "grant itself the admin role",
                "refused",
                _attempt(lambda: ingest.grant_role(INGEST_USER, "admin")),
            )
        )
    finally:
        app.close()
        ingest.close()
    return report
