"""Benchmark: provisioning a class of learners, and learners ingesting at once, on local stand-ins.

What it measures (prints the figures at the end):
  1. `docbot_lib.lab.provision` for a class (default 30 learners, user1..user30) as the administrator, against
     the Kubernetes API stand-in (tests/kubeapi.py) and a real Milvus 2.3.5 server with authorization on
     (tests/milvus_server.py), secured first by `vectordb.secure` so that provisioning runs as the secured root:
     wall time of the first run (everything created), what it created (report rows, Kubernetes objects stored
     in the stand-in, Milvus databases/roles/users), wall time of the second, idempotent run (every row
     "already there", nothing created), then `lab.status` and `lab.teardown` for the whole class.
  2. Learners ingesting the sample documents (`docbot_lib.pipeline.samples.prepare_sample_docs`) each into their own
     database with their own ingest token (read back from their `docbot-learner` Secret in the stand-in):
     one learner alone, then three other learners at once (three threads in this one process; three notebook
     kernels would be three processes), wall time of the three against the one. The grants' propagation to
     the proxy (`vectordb.verify_least_privilege` waits for it) and the embedding model's load are done
     before timing and not counted. The ingesting learners are members of the class (user1, then
     user2..user4), provisioned by step 1; `lab.status` runs after the ingestion so it shows their documents,
     and `lab.teardown` then removes the whole class.

The peer: doing it by hand. Per learner `oc new-project`, `oc create rolebinding`, two `oc create secret`, and
in Milvus a create_database, 2 create_role, one grant_privilege per (role, privilege, collection) (counted here
from docbot_lib.pipeline.vectordb: lab_collections, READER_PRIVILEGES, WRITER_PRIVILEGES), 2 create_user and 2
grant_role calls; the count of commands/calls that replaces is printed.

Run (Milvus starts in a temporary folder, on free ports, and is always stopped):

    .venv/bin/python bench/lab_provision.py
    .venv/bin/python bench/lab_provision.py --users user1..user10   # a smaller class

No secret is printed (tokens and passwords stay in the temporary folder, mode 600, removed at the end).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INGESTERS = 4  # user #1 alone, users #2-#4 at once


def _terminate(_signum, _frame):  # a SIGTERM still stops Milvus (the `finally` below runs)
    raise SystemExit(143)


def learner_tokens(kube, user: str) -> dict[str, str]:
    """The learner's two Milvus tokens, read from their Secret in the stand-in (as their workbench would)."""
    from docbot_lib import lab
    from docbot_lib.pipeline import vectordb

    secret = kube.get("api/v1", user, "secrets", lab.LEARNER_SECRET)
    assert secret, f"no Secret {lab.LEARNER_SECRET} in namespace {user}"
    data = secret["data"]
    return {key: base64.b64decode(data[key]).decode() for key in (vectordb.INGEST_TOKEN_KEY, vectordb.APP_TOKEN_KEY)}


def milvus_counts(uri: str, root_token: str) -> tuple[int, int, int]:
    """(databases, roles, users) on the server, as root."""
    from docbot_lib.clients import milvus

    root = milvus.connect(uri, root_token)
    try:
        return len(root.list_databases()), len(root.list_roles()), len(root.list_users())
    finally:
        root.close()


def peer_calls_per_learner(collection: str) -> dict[str, int]:
    """What doing one learner by hand takes, counted from the code that does it."""
    from docbot_lib.pipeline import vectordb

    collections = vectordb.lab_collections(collection)
    grants = len(vectordb.grants._privileges(vectordb.READER_PRIVILEGES, collections)) + len(
        vectordb.grants._privileges(vectordb.WRITER_PRIVILEGES, collections)
    )
    return {
        "oc commands": 4,  # new-project, create rolebinding, 2x create secret
        "create_database": 1,
        "create_role": 2,
        "grant_privilege": grants,
        "create_user": 2,
        "grant_role": 2,
        "collections granted on": len(collections),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="user1..user30", help="the class (docbot_lib.core.names.expand_users)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (Milvus data, log)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _terminate)
    base = Path(tempfile.mkdtemp(prefix="docbot-bench-lab-"))
    # nothing of this checkout's .env / cluster.env may leak into the benchmark's settings
    os.environ["DOCBOT_ENV_FILE"] = str(base / "none.env")
    sys.path.insert(0, str(REPO / "tests"))
    from kubeapi import KubeApi
    from milvus_server import start_milvus, stop_milvus

    from docbot_lib.core.names import expand_users

    users = expand_users(args.users)
    if len(users) < INGESTERS:
        parser.error(f"the class needs at least {INGESTERS} learners (step 2 uses {INGESTERS} of them)")
    print(f"starting Milvus 2.3.5 (auth on) in {base} ...", flush=True)
    started = time.monotonic()
    server = start_milvus(base)
    print(f"Milvus ready at {server.uri} in {time.monotonic() - started:.1f} s", flush=True)
    try:
        with KubeApi() as kube:
            figures = run(server, kube, users, base)
    except BaseException:
        print(f"--- the Milvus log's last lines ({server.log}):\n{server.log_tail(15)}", file=sys.stderr)
        raise
    finally:
        stop_milvus(server)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\n".join(["", "=== figures ===", *figures]))
    return 0


def run(server, kube, users: list[str], base: Path) -> list[str]:
    from docbot_lib import lab
    from docbot_lib.clients import milvus
    from docbot_lib.core.envfile import read_env
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline import vectordb

    # -- day 2 once: root gets a generated password (stored in env_file), as an administrator would
    env_file = base / "admin.env"
    vectordb.secure(server.uri, "docbot", env_file)
    root_token = read_env(env_file)[vectordb.ROOT_TOKEN_KEY]
    assert root_token != milvus.DEFAULT_ROOT_TOKEN
    admin = Settings.load(
        stack="cluster",
        home=base / "admin-home",
        milvus_uri=server.uri,
        milvus_root_token=root_token,
        s3_endpoint="https://minio.example",
        s3_access_key="admin",
        s3_secret_key="admin-secret",
        s3_bucket="class-models",
    )
    api = kube.api_client()
    n = len(users)
    before = milvus_counts(server.uri, root_token)

    # -- 1. provision the class, twice
    print(f"provisioning {n} learners (first run) ...", flush=True)
    requests_before = len(kube.requests)
    t0 = time.perf_counter()
    first = lab.provision(admin, users, api_client=api)
    t_first = time.perf_counter() - t0
    requests_first = len(kube.requests) - requests_before
    rows = len(first.rows)
    assert first.count("created") == rows, f"first run: {first.count('created')} of {rows} rows created"
    kube_objects = len(kube.objects)
    milvus_rows = sum(r.what.startswith("Milvus ") for r in first.rows)
    by_kind = {
        what: sum(r.what.startswith(f"Milvus {what} ") for r in first.rows) for what in ("database", "role", "user")
    }
    after = milvus_counts(server.uri, root_token)
    on_server = tuple(a - b for a, b in zip(after, before, strict=True))
    print(
        f"  {t_first:.1f} s: {rows} rows created ({kube_objects} Kubernetes objects, {milvus_rows} Milvus); "
        f"server gained {on_server[0]} databases, {on_server[1]} roles, {on_server[2]} users; "
        f"{requests_first} Kubernetes API requests",
        flush=True,
    )

    print(f"provisioning {n} learners again (idempotent run) ...", flush=True)
    t0 = time.perf_counter()
    second = lab.provision(admin, users, api_client=api)
    t_second = time.perf_counter() - t0
    assert len(second.rows) == rows, (len(second.rows), rows)
    assert second.count("created") == 0 and second.count("already there") == rows, {
        s: second.count(s) for s in {r.state for r in second.rows}
    }
    assert len(kube.objects) == kube_objects
    print(
        f"  {t_second:.1f} s: {second.count('created')} created, {second.count('already there')} already there",
        flush=True,
    )

    # -- 2. one learner alone, then three at once, each into their own database
    figures_ingest = ingest_step(server, kube, users[:INGESTERS], base)

    # -- status and teardown of the whole class
    print(f"status of {n} learners ...", flush=True)
    t0 = time.perf_counter()
    status = lab.status(admin, users, api_client=api)
    t_status = time.perf_counter() - t0
    ingested = [f"{r.user}: {r.state}" for r in status.rows if r.what == "documents ingested"][:INGESTERS]
    print(f"  {t_status:.1f} s; documents: {'; '.join(ingested)}", flush=True)

    print(f"teardown of {n} learners ...", flush=True)
    t0 = time.perf_counter()
    down = lab.teardown(admin, users, api_client=api)
    t_teardown = time.perf_counter() - t0
    left = milvus_counts(server.uri, root_token)
    print(
        f"  {t_teardown:.1f} s: {down.count('removed')} removed, {down.count('absent')} absent; Milvus left with "
        f"{left[0]} databases, {left[1]} roles, {left[2]} users (before the class: {before[0]}, {before[1]}, "
        f"{before[2]}); {len(kube.objects)} objects left in the stand-in",
        flush=True,
    )
    assert left == before, (left, before)

    peer = peer_calls_per_learner(admin.milvus_collection)
    milvus_calls = sum(
        peer[k] for k in ("create_database", "create_role", "grant_privilege", "create_user", "grant_role")
    )
    per_learner = peer["oc commands"] + milvus_calls
    return [
        f"provision {n} learners: {t_first:.1f} s, {rows} objects created ({kube_objects} Kubernetes objects, "
        f"{by_kind['role'] + by_kind['user'] + by_kind['database']} Milvus roles/users/databases: "
        f"{by_kind['role']} roles, {by_kind['user']} users, {by_kind['database']} databases); "
        f"second run: {t_second:.1f} s, {second.count('created')} created, "
        f"{second.count('already there')} already there",
        f"status: {t_status:.1f} s; teardown: {t_teardown:.1f} s ({down.count('removed')} removed)",
        *figures_ingest,
        f"peer: doing it by hand, per learner {peer['oc commands']} oc commands (new-project, create rolebinding, "
        f"2x create secret) and {milvus_calls} Milvus calls (1 create_database, 2 create_role, "
        f"{peer['grant_privilege']} grant_privilege on {peer['collections granted on']} collections, "
        f"2 create_user, 2 grant_role) = ~{per_learner} commands/calls per learner, "
        f"~{per_learner * n:,} for {n} learners; one `lab.provision` call here ({t_first / n:.2f} s a learner)",
    ]


def ingest_step(server, kube, learners: list[str], base: Path) -> list[str]:
    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.core.names import LabNames
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline import vectordb
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    docs = prepare_sample_docs(base / "sample-docs")
    n_docs = sum(1 for p in docs.iterdir() if p.is_file() and not p.name.startswith("."))
    tokens = {user: learner_tokens(kube, user) for user in learners}

    def settings_of(user: str) -> Settings:
        return Settings.load(
            stack="cluster",
            user=user,
            milvus_uri=server.uri,
            milvus_token=tokens[user][vectordb.INGEST_TOKEN_KEY],
            home=base / f"home-{user}",
        )

    print(f"waiting for the grants of {', '.join(learners)} to apply (not timed) ...", flush=True)
    t0 = time.perf_counter()
    for user in learners:
        report = vectordb.verify_least_privilege(server.uri, "docbot", tokens[user], names=LabNames(user))
        assert report.ok, f"{user}:\n{report}"
    t_grants = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder = get_embeddings(settings_of(learners[0]))
    embedder.embed_query("warm up")
    _ = embedder.dimension
    t_model = time.perf_counter() - t0
    print(f"  grants verified in {t_grants:.1f} s; embedding model loaded in {t_model:.1f} s", flush=True)

    alone, group = learners[0], learners[1:]
    print(f"ingesting {n_docs} sample documents: {alone} alone ...", flush=True)
    t0 = time.perf_counter()
    solo = ingest(settings_of(alone), [str(docs)], progress=False)
    t_alone = time.perf_counter() - t0
    assert solo.new == n_docs and not solo.skipped, str(solo)
    print(
        f"  {t_alone:.1f} s ({solo.chunks_written} chunks; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in solo.seconds.items())
        + ")",
        flush=True,
    )

    print(f"ingesting {n_docs} sample documents: {', '.join(group)} at once ...", flush=True)
    reports, errors, walls = {}, [], {}

    def one(user: str) -> None:
        start = time.perf_counter()
        try:
            reports[user] = ingest(settings_of(user), [str(docs)], progress=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{user}: {type(exc).__name__}: {exc}")
        walls[user] = time.perf_counter() - start

    threads = [threading.Thread(target=one, args=(user,), name=f"ingest-{user}") for user in group]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t_group = time.perf_counter() - t0
    assert not errors, errors
    for user in group:
        assert reports[user].new == n_docs and not reports[user].skipped, f"{user}:\n{reports[user]}"
    print(f"  {t_group:.1f} s wall; each: " + ", ".join(f"{u} {walls[u]:.1f} s" for u in group), flush=True)
    return [
        f"ingest (sample docs, {n_docs} documents, {solo.chunks_written} chunks each): 1 learner alone "
        f"{t_alone:.1f} s; {len(group)} learners at once {t_group:.1f} s wall (b/a = {t_group / t_alone:.2f}; "
        f"{len(group)} x serial would be {len(group) * t_alone:.1f} s); not timed: grant propagation "
        f"{t_grants:.1f} s, model load {t_model:.1f} s",
    ]


if __name__ == "__main__":
    sys.exit(main())
