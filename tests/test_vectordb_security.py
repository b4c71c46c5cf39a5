"""Day-2 security of Milvus, against a real Milvus 2.3.5 server with auth on (and Milvus Lite for the no-auth path)."""

from __future__ import annotations

import stat
from pathlib import Path

import nbformat
import pytest
from milvus_server import milvus_server  # noqa: F401 - the module's server

from docbot_lib.clients import milvus
from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline import vectordb

REPO = Path(__file__).resolve().parents[1]
COLLECTION = "docbot_sec"


@pytest.fixture(scope="module")
def secured(milvus_server):  # noqa: F811
    """`secure` run once on the module's server (the root password is changed from here on)."""
    result = vectordb.secure(milvus_server.uri, COLLECTION, milvus_server.env_file)
    return milvus_server, result


def test_server_info_of_a_real_server(milvus_server):  # noqa: F811
    client = milvus.connect(
        milvus_server.uri,
        vectordb.read_env(milvus_server.env_file).get(vectordb.ROOT_TOKEN_KEY, milvus.DEFAULT_ROOT_TOKEN),
    )
    try:
        info = vectordb.server_info(client, milvus_server.uri)
        assert milvus.supports_rbac(client) and not milvus.supports_bm25(client)
    finally:
        client.close()
    assert milvus.parse_version(info.version) == (2, 3, 5)
    assert info.rbac and not info.bm25
    text = str(info)
    assert "Milvus server" in text and "needs Milvus >= 2.5" in text


def test_a_wrong_password_is_a_clear_error(milvus_server):  # noqa: F811
    with pytest.raises(ServiceUnavailable) as err:
        milvus.connect(milvus_server.uri, "root:not-the-password-123")
    assert "refused the password of user 'root'" in err.value.problem
    assert "not-the-password-123" not in str(err.value)
    assert "DOCBOT_MILVUS_TOKEN" in err.value.fix


def test_a_silent_server_is_a_clear_error():
    from conftest import free_port

    with pytest.raises(ServiceUnavailable, match="does not answer"):
        milvus.connect(f"http://127.0.0.1:{free_port()}", "root:Milvus")


def test_secure_changes_root_and_stores_every_password(secured):
    server, result = secured
    assert set(result.tokens) == {vectordb.ROOT_TOKEN_KEY, vectordb.INGEST_TOKEN_KEY, vectordb.APP_TOKEN_KEY}
    assert stat.S_IMODE(server.env_file.stat().st_mode) == 0o600
    assert vectordb.read_env(server.env_file) == result.tokens
    assert not list(server.env_file.parent.glob(".*.tmp")), "no temporary file left behind"
    # the default root password no longer works; the generated one does
    with pytest.raises(ServiceUnavailable, match="refused the password"):
        milvus.connect(server.uri, milvus.DEFAULT_ROOT_TOKEN)
    root = milvus.connect(server.uri, result.tokens[vectordb.ROOT_TOKEN_KEY])
    try:
        assert {vectordb.READER_ROLE, vectordb.WRITER_ROLE} <= set(root.list_roles())
        assert root.describe_user(vectordb.APP_USER)["roles"] == (vectordb.READER_ROLE,)
        assert root.describe_user(vectordb.INGEST_USER)["roles"] == (vectordb.WRITER_ROLE,)
    finally:
        root.close()
    # the printable summary names what was stored, never a password
    text = str(result)
    assert all(token.split(":", 1)[1] not in text for token in result.tokens.values())


def test_settings_read_what_secure_stored(secured, monkeypatch):
    server, result = secured
    monkeypatch.setenv("DOCBOT_ENV_FILE", str(server.env_file))
    settings = Settings.load(stack="cluster")
    assert settings.secret("milvus_token") == result.tokens[vectordb.INGEST_TOKEN_KEY]
    assert settings.secret("milvus_root_token") == result.tokens[vectordb.ROOT_TOKEN_KEY]


def test_least_privilege_is_verified(secured):
    server, result = secured
    report = vectordb.verify_least_privilege(server.uri, COLLECTION, result.tokens)
    assert report.ok, str(report)
    actions = {(v.user, v.action.split()[0]) for v in report}
    assert {
        ("docbot_app", "search"),
        ("docbot_app", "insert"),
        ("docbot_app", "drop"),
        ("docbot_ingest", "insert"),
        ("root", "log"),
        ("docbot_ingest", "create"),
        ("docbot_ingest", "grant"),
    } <= actions
    # what each proves, as seen: root's default refused, the writer refused user and role management
    seen = {v.action: v.seen for v in report}
    assert seen["log in as root:Milvus (the default)"] == "refused"
    assert seen["create a user"] == seen["create a role"] == seen["grant itself the admin role"] == "refused"


def test_reader_searches_but_cannot_write_and_writer_ingests(secured):
    """On the real collection (created by the ingest user, as the ingestion job does)."""
    server, result = secured
    writer = milvus.connect(server.uri, result.tokens[vectordb.INGEST_TOKEN_KEY])
    reader = milvus.connect(server.uri, result.tokens[vectordb.APP_TOKEN_KEY])
    rows = [{"id": i, "vector": [float(i), 1.0, 0.0, 0.0]} for i in range(1, 4)]
    try:
        if writer.has_collection(COLLECTION):
            writer.delete(COLLECTION, ids=[r["id"] for r in rows])
        else:
            writer.create_collection(COLLECTION, dimension=4, consistency_level="Strong")
        writer.insert(COLLECTION, rows)
        writer.flush(COLLECTION)
        vectordb.wait_until_permitted(lambda: reader.search(COLLECTION, [[1.0, 1.0, 0.0, 0.0]], limit=2))
        hits = reader.search(COLLECTION, [[1.0, 1.0, 0.0, 0.0]], limit=2)[0]
        assert [h["id"] for h in hits][:1] == [1]
        for forbidden in (
            lambda: reader.insert(COLLECTION, [{"id": 9, "vector": [0.0] * 4}]),
            lambda: reader.drop_collection(COLLECTION),
        ):
            with pytest.raises(Exception) as err:
                forbidden()
            assert milvus.is_permission_denied(err.value), err.value
        with pytest.raises(Exception) as err:
            writer.drop_collection(COLLECTION)
        assert milvus.is_permission_denied(err.value)
    finally:
        reader.close()
        writer.close()


def test_secure_again_changes_nothing(secured):
    server, first = secured
    again = vectordb.secure(server.uri, COLLECTION, server.env_file, root_token=first.tokens[vectordb.ROOT_TOKEN_KEY])
    assert not again.root_password_changed
    assert again.created == []
    assert again.tokens == first.tokens
    assert vectordb.verify_least_privilege(server.uri, COLLECTION, again.tokens).ok


def test_a_lost_user_password_is_reset(secured, tmp_path):
    """An env file that lost the app user's password: secure gives the user a new one that works."""
    server, first = secured
    partial = tmp_path / "partial.env"
    vectordb.write_env(
        partial, {vectordb.ROOT_TOKEN_KEY: first.tokens[vectordb.ROOT_TOKEN_KEY], "OTHER_SETTING": "kept"}
    )
    result = vectordb.secure(server.uri, COLLECTION, partial)
    assert "user docbot_app (password reset)" in result.created
    assert vectordb.read_env(partial)["OTHER_SETTING"] == "kept"
    milvus.connect(server.uri, result.tokens[vectordb.APP_TOKEN_KEY]).close()
    # the shared env file is put back in force for the other tests
    vectordb.secure(server.uri, COLLECTION, server.env_file)
    milvus.connect(server.uri, first.tokens[vectordb.APP_TOKEN_KEY]).close()


def test_secure_without_roots_password_says_where_to_put_it(secured, tmp_path):
    server, _ = secured
    with pytest.raises(DocbotError) as err:
        vectordb.secure(server.uri, COLLECTION, tmp_path / "empty.env", root_token="root:wrong-guess-1")
    assert "refused every root password" in err.value.problem
    assert "DOCBOT_MILVUS_ROOT_TOKEN" in err.value.fix
    assert "wrong-guess-1" not in str(err.value)
    assert not (tmp_path / "empty.env").exists(), "nothing written when nothing was done"


def test_write_env_keeps_other_lines_and_is_private(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# my settings\nexport DOCBOT_STACK=cluster\nDOCBOT_MILVUS_TOKEN=old:one\n")
    vectordb.write_env(path, {"DOCBOT_MILVUS_TOKEN": "new:two", "DOCBOT_MILVUS_ROOT_TOKEN": "root:three"})
    assert path.read_text() == (
        "# my settings\nexport DOCBOT_STACK=cluster\nDOCBOT_MILVUS_TOKEN=new:two\nDOCBOT_MILVUS_ROOT_TOKEN=root:three\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_milvus_lite_has_no_rbac_and_secure_refuses_politely(settings, tmp_path):
    client = milvus.connect(settings.milvus_uri)
    try:
        info = vectordb.server_info(client, settings.milvus_uri)
        assert not milvus.supports_rbac(client)
        assert milvus.supports_bm25(client)  # Milvus Lite 3 has BM25
    finally:
        client.close()
    assert not info.rbac and "Milvus Lite" in str(info) and "no users, roles or passwords" in str(info)
    with pytest.raises(DocbotError) as err:
        vectordb.secure(settings.milvus_uri, COLLECTION, tmp_path / "lite.env")
    assert "Milvus Lite" in err.value.problem and "nothing to secure" in err.value.problem
    assert "Milvus server" in err.value.fix


@pytest.mark.parametrize(
    "text,expected",
    [
        ("v2.3.5-lite", (2, 3, 5)),
        ("2.5.4", (2, 5, 4)),
        ("milvus_lite-3.2.2", (3, 2, 2)),
        ("v2.6", (2, 6, 0)),
        ("", (0, 0, 0)),
    ],
)
def test_parse_version(text, expected):
    assert milvus.parse_version(text) == expected


def test_notebook_secures_the_real_server(secured, tmp_path):
    """04-deploy-milvus.ipynb with MILVUS_URI at the server with auth: every day-2 cell runs; no password
    in the executed notebook."""
    from docbot_lib.workshop import execute

    server, _ = secured
    run = execute(
        REPO / "notebooks" / "04-deploy-milvus.ipynb",
        tmp_path / "04.ipynb",
        parameters={"MILVUS_URI": server.uri, "ENV_FILE": str(server.env_file), "COLLECTION": COLLECTION},
    )
    assert run.ok, run.error
    text = run.output.read_text()
    for token in vectordb.read_env(server.env_file).values():
        assert token.split(":", 1)[1] not in text
    nb = nbformat.read(run.output, as_version=4)
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Milvus server, version v2.3.5" in outputs
    assert "OK    docbot_app" in outputs and "FAIL" not in outputs


def test_a_refusal_on_a_milvus_2_3_server_is_retried_before_it_counts(monkeypatch):
    """Milvus 2.3 refuses a granted privilege now and then while its proxy reloads its policy cache."""
    monkeypatch.setattr(milvus.StaleGrantsRetry, "DELAYS", (0.01, 0.01))

    class Client:
        def __init__(self, refusals: int):
            self.refusals, self.calls = refusals, 0

        def query(self, name):
            self.calls += 1
            if self.calls <= self.refusals:
                raise RuntimeError("<_InactiveRpcError: PrivilegeQuery: permission deny to docbot_ingest>")
            return [name]

        def drop_collection(self, name):
            raise ValueError("collection not found")

    flaky = milvus.tolerate_stale_grants(Client(refusals=2), "v2.3.5")
    assert flaky.query("docbot") == ["docbot"] and flaky._client.calls == 3
    refused = milvus.tolerate_stale_grants(Client(refusals=9), "v2.3.5")
    with pytest.raises(RuntimeError, match="permission deny"):
        refused.query("docbot")
    assert refused._client.calls == 3  # a real refusal still counts, after the retries
    with pytest.raises(ValueError):  # any other error at once
        flaky.drop_collection("docbot")
    plain = Client(refusals=1)
    assert milvus.tolerate_stale_grants(plain, "2.6.15") is plain  # fixed servers: no retry
    assert milvus.tolerate_stale_grants(plain, "") is plain
