"""A local stand-in for the Hugging Face hub: serves model repos from folders on disk.

The command line, `python -m docbot_lib.local.hubserver --repo ID=FOLDER [--repo ...] --host 127.0.0.1 --port P
[--token-required]`: the accepted token is read from DOCBOT_LOCAL_HUB_TOKEN, never from the command line, where
`ps` would show it. Runs until SIGTERM or SIGINT.

Layer: local (the hub stand-in's command line): imports local.hubserver.server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from docbot_lib.local.hubserver.server import HubServer

TOKEN_ENV = "DOCBOT_LOCAL_HUB_TOKEN"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docbot_lib.local.hubserver", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repo",
        action="append",
        required=True,
        metavar="ID=FOLDER",
        help="serve the folder as model repo ID (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8410)
    parser.add_argument(
        "--token-required", action="store_true", help=f"gate every repo: downloads need the token in ${TOKEN_ENV}"
    )
    args = parser.parse_args(argv)

    repos = {}
    for spec in args.repo:
        repo_id, sep, folder = spec.partition("=")
        if not sep or not repo_id or not folder:
            parser.error(f"--repo {spec!r}: expected ID=FOLDER, e.g. --repo owner/name=/path/to/folder")
        repos[repo_id] = Path(folder)
    token = None
    if args.token_required:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            parser.error(f"--token-required: set the accepted token in the environment variable {TOKEN_ENV}")
    try:
        server = HubServer(repos, args.host, args.port, token=token, log=True)
    except (FileNotFoundError, OSError) as exc:
        print(f"hubserver: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    for repo in server.repos.values():
        print(
            f"hubserver: {repo.repo_id} ({len(repo.files)} files, commit {repo.sha[:12]}) "
            f"at {server.url}{' (gated)' if token else ''}",
            file=sys.stderr,
            flush=True,
        )
    while not stop.wait(0.5):
        pass
    server.stop()
    print("hubserver: stopped", file=sys.stderr, flush=True)
    return 0
