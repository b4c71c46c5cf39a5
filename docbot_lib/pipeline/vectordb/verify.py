"""Proving least privilege for real: each role's allowed and refused operations tried on the probe collection
(`verify_least_privilege`, a printable VerifyReport of Verdicts), waiting for fresh grants to reach the proxies
(`wait_until_permitted`), and the probe collection itself (`_ensure_probe`, made by `secure_learner`).

Layer: pipeline, step `vectordb` (verification): imports core, clients, vectordb.grants and vectordb.credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docbot_lib.clients.milvus import DEFAULT_ROOT_TOKEN, connect, is_permission_denied, quiet_pymilvus
from docbot_lib.core.errors import AuthRefused, DocbotError, PermissionDenied, ServiceUnavailable
from docbot_lib.core.names import DEFAULT_DATABASE, LabNames
from docbot_lib.pipeline.vectordb.credentials import APP_TOKEN_KEY, INGEST_TOKEN_KEY, generate_password
from docbot_lib.pipeline.vectordb.grants import PLAIN, probe_collection

GRANT_TIMEOUT = 120.0  # grants reach the proxy's cache within ~16 s on a quiet machine, 50 s seen under load: a deadline, not a wait
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
