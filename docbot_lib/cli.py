"""`docbot`: the command line of the workshop. Each command is a thin call into docbot_lib."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from docbot_lib.errors import DocbotError
from docbot_lib.settings import Settings, project_dir


def _local(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.local import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        stack.up(echo=print)
    elif args.action == "down":
        stack.down(echo=print)
        return 0
    statuses = stack.status()
    for st in statuses:
        pid = f"pid {st.pid}" if st.pid else ""
        print(f"{st.name:<7} {st.state:<8} {st.url:<32} {pid}")
        if st.detail:
            print("        " + st.detail.replace("\n", "\n        "))
    print(f"state: {stack.state_file}   logs: {stack.log_dir}")
    return 0 if args.action == "up" or all(s.state == "running" for s in statuses) else 1


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.checks import check_all

    report = check_all(settings, args.services or None)
    print(report)
    return 0 if report.ok else 1


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    print(settings)
    return 0


def _workshop(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.workshop import run_workshop

    runs = run_workshop(args.notebooks, args.runs, only=args.only, echo=print)
    return 0 if all(r.ok for r in runs) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docbot", description="Doc Bot: a RAG chatbot over documentation.")
    parser.add_argument("--stack", choices=["local", "cluster"], default=None,
                        help="where the services run (default: DOCBOT_STACK, else local)")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the local stack: S3, LLM and Milvus on this machine")
    local.add_argument("action", choices=["up", "down", "status"])
    local.set_defaults(func=_local)

    check = sub.add_parser("check", help="check every service answers (S3, LLM, Milvus, embeddings)")
    check.add_argument("services", nargs="*", help="only these: S3 LLM Milvus embeddings")
    check.set_defaults(func=_check)

    show = sub.add_parser("settings", help="print the settings in use (secrets masked)")
    show.set_defaults(func=_settings)

    workshop = sub.add_parser("workshop", help="execute every notebook in order with papermill")
    workshop.add_argument("--notebooks", type=Path, default=project_dir() / "notebooks")
    workshop.add_argument("--runs", type=Path, default=project_dir() / "runs",
                          help="executed notebooks go to RUNS/<timestamp>/")
    workshop.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 00 01")
    workshop.set_defaults(func=_workshop)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(stack=args.stack)
        return args.func(args, settings)
    except DocbotError as exc:
        print(f"docbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("docbot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
