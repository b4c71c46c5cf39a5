"""Milvus clients: connect (as a user, in a database), what the server supports, and one reconnect.

Layer: clients (imports only core). The pipeline's Milvus steps (vectordb's day 2, the chunk store), the checks
and the chatbot API make their clients here:

    client = milvus_client(settings)                  # the settings' URI, token and database
    client = connect(uri, "user:password")            # any server, any user: day 2, the tests
    hits = reconnecting(lambda: store.search(...), on_drop=forget)   # once more on a dropped channel

A refused password or a silent server is a typed error (AuthRefused, NotReachable) that never shows the
password; pymilvus's own logging of an expected refusal is kept quiet.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from docbot_lib.clients.net import tcp_open
from docbot_lib.core.errors import AuthRefused, ConfigError, DocbotError, NotReachable, ServiceUnavailable
from docbot_lib.core.names import DEFAULT_DATABASE
from docbot_lib.core.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_ROOT_TOKEN = "root:Milvus"  # what every fresh Milvus server accepts: public knowledge


BM25_SINCE = (2, 5)  # sparse vectors and the BM25 function arrived in Milvus 2.5


def grpc_status(exc: BaseException) -> str:
    """The gRPC status name (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, ...) in an exception's chain."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "code", None)
        if callable(code):
            try:
                name = getattr(code(), "name", "")
            except Exception:  # noqa: BLE001 - a code() that needs arguments is not grpc's
                name = ""
            if name:
                return name
        text = str(seen)
        for name in ("UNAUTHENTICATED", "PERMISSION_DENIED", "UNIMPLEMENTED"):
            if name in text:
                return name
        seen = seen.__cause__ or seen.__context__
    return ""


def is_permission_denied(exc: BaseException) -> bool:
    """True when Milvus refused an operation for lack of privilege."""
    return grpc_status(exc) == "PERMISSION_DENIED" or "permission deny" in str(exc).lower()


@contextlib.contextmanager
def quiet_pymilvus() -> Iterator[None]:
    """pymilvus logs every failed RPC with a traceback; a refusal we expect is not an error."""
    logger = logging.getLogger("pymilvus")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def user_of(token: str) -> str:
    return token.split(":", 1)[0] if ":" in token else "(API token)"


# pymilvus pings every 10 s even on an idle connection; gRPC servers that keep their default policy (Milvus
# Lite's) answer that with GOAWAY "too_many_pings" and the next call fails. Ping only while a call runs.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 60_000, "grpc.keepalive_permit_without_calls": False}


def connect(uri: str | None, token: str | None = None, timeout: float = 10.0, database: str = DEFAULT_DATABASE):
    """A MilvusClient for `uri` as `token` ("user:password"), in `database` (a learner's own); a refused
    password or a silent server is a clear ServiceUnavailable that never shows the password."""
    from pymilvus import MilvusClient

    if not uri:
        raise ConfigError(
            "no Milvus URI configured", "set DOCBOT_MILVUS_URI (or the MILVUS_URI parameter)", service="milvus"
        )
    if uri.startswith(("http://", "https://", "tcp://", "grpc://")) and not tcp_open(uri):
        raise NotReachable(
            f"Milvus does not answer at {uri}",
            "start it (locally: `docbot local up`) or correct DOCBOT_MILVUS_URI",
            service="milvus",
        )

    def opened():
        client = None
        try:
            with quiet_pymilvus():
                client = MilvusClient(
                    uri=uri,
                    token=token or "",
                    timeout=timeout,
                    grpc_options=GRPC_OPTIONS,
                    **({"db_name": database} if database != DEFAULT_DATABASE else {}),
                )
                # pymilvus shares connections: the constructor alone may not have asked the server
                try:
                    client.list_collections()
                except Exception as exc:  # noqa: BLE001
                    if not is_permission_denied(exc):  # refused an operation = the password was accepted
                        raise
            return client
        except Exception:
            if client is not None:
                client.close()
            raise

    try:
        # a shared channel the server has just dropped (GOAWAY) fails once, then connects anew
        return reconnecting(opened, on_drop=lambda: time.sleep(1.0))
    except DocbotError:
        raise
    except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException or grpc errors
        _connect_error(exc, uri, token)
    raise AssertionError("unreachable: _connect_error raises")


class StaleGrantsRetry:
    """A MilvusClient whose calls a refusal does not fail at once. Milvus 2.3 servers refuse a granted privilege
    now and then while their proxy reloads its policy cache (milvus-io/milvus#34667, #32632; later releases
    fixed it): Doc Bot's tests and benchmarks saw a learner's proved Query and CreateCollection grants refused
    under load. On such a server a refusal is retried after `DELAYS`; a real refusal then costs their sum."""

    DELAYS = (0.5, 1.5)

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            for delay in self.DELAYS:
                try:
                    return attribute(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException or grpc errors
                    if not is_permission_denied(exc):
                        raise
                    time.sleep(delay)
            return attribute(*args, **kwargs)

        return call


def tolerate_stale_grants(client, server_version: str):
    """`client` itself, or wrapped in StaleGrantsRetry on a server older than 2.4 (see there)."""
    return StaleGrantsRetry(client) if (0, 0, 0) < parse_version(server_version) < (2, 4, 0) else client


def _connect_error(exc: Exception, uri: str, token: str | None) -> None:
    """Raise the ServiceUnavailable that says what failed, never showing the password."""
    if grpc_status(exc) == "UNAUTHENTICATED":
        who = f"user {user_of(token)!r}" if token else "a client without credentials"
        raise AuthRefused(
            f"Milvus at {uri} refused the password of {who}",
            "set DOCBOT_MILVUS_TOKEN=user:password (environment or .env) to a user of this server",
            service="milvus",
        ) from None
    raise ServiceUnavailable(
        f"Milvus at {uri} failed: {type(exc).__name__}: {exc}",
        "check DOCBOT_MILVUS_URI and that the server is running",
        service="milvus",
    ) from None


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a Milvus version string such as "v2.3.5-lite" or "2.5.4"; (0, 0, 0) if none."""
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(found[1]), int(found[2]), int(found[3] or 0)) if found else (0, 0, 0)


def supports_rbac(client) -> bool:
    """True when the server has users and roles (a Milvus server); Milvus Lite answers UNIMPLEMENTED."""
    try:
        with quiet_pymilvus():
            client.list_roles()
    except Exception as exc:  # noqa: BLE001
        if grpc_status(exc) == "UNIMPLEMENTED" or "unimplemented" in str(exc).lower():
            return False
        if is_permission_denied(exc):  # a user who may not list roles: the server has them
            return True
        raise
    return True


def supports_bm25(client) -> bool:
    """True when the server can hold BM25 (sparse) fields: Milvus ≥ 2.5, or Milvus Lite 3.
    Never create a BM25 collection when this is False: Milvus 2.3 accepts it and crashes on load."""
    version = client.get_server_version()
    return parse_version(version) >= BM25_SINCE


def milvus_client(settings: Settings, timeout: float = 10.0):
    """A pymilvus MilvusClient for the settings, with a clear error when Milvus is not there."""
    try:
        return connect(
            settings.milvus_uri, settings.secret("milvus_token"), timeout=timeout, database=settings.names.database
        )
    except (NotReachable, ConfigError) as exc:  # not started, or no address: say how to start it
        raise type(exc)(exc.problem, settings.start_hint("DOCBOT_MILVUS_URI"), service="milvus") from None


def connection_lost(exc: BaseException) -> bool:
    """True when a call failed because the server dropped pymilvus's shared gRPC channel (an idle GOAWAY, a
    restarted server): the next call opens the channel anew."""
    text = str(exc)
    return grpc_status(exc) == "UNAVAILABLE" or "Fail connecting" in text or "UNAVAILABLE" in text


def reconnecting(call: Callable[[], T], on_drop: Callable[[], None] | None = None) -> T:
    """call(); when Milvus had dropped the connection, `on_drop()` (forget a cached client) and call() once more.
    Doc Bot's own errors and any other failure raise at once."""
    try:
        return call()
    except DocbotError:
        raise
    except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException or grpc errors
        if not connection_lost(exc):
            raise
        log.warning("Milvus connection lost; reconnecting once")
        if on_drop is not None:
            on_drop()
        return call()
