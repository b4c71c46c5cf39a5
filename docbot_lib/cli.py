"""`docbot`: the command line of the workshop. Each command is a thin call into docbot_lib.

Layer: top (the command line): imports any layer below; each command is a thin call into them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from docbot_lib.core.envfile import project_dir
from docbot_lib.core.errors import ConfigError, DocbotError
from docbot_lib.core.settings import Settings


def _local(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.local.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        stack.up(echo=print)
    elif args.action == "down":
        stack.down(echo=print)
        return 0
    statuses = stack.status()
    for st in statuses:
        pid = f"pid {st.pid}" if st.pid else ""
        print(f"{st.name:<13} {st.state:<8} {st.url:<32} {pid}")
        if st.detail:
            print("        " + st.detail.replace("\n", "\n        "))
    print(f"state: {stack.state_file}   logs: {stack.log_dir}")
    return 0 if args.action == "up" or all(s.state == "running" for s in statuses) else 1


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.checks import check_all, check_lab

    report = check_all(settings, args.services) if args.services else check_lab(settings)
    print(report)
    return 0 if report.ok else 1


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    print(settings)
    return 0


def _workshop(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.workshop import run_workshop

    runs = run_workshop(args.notebooks, args.runs, only=args.only, echo=print)
    return 0 if all(r.ok for r in runs) else 1


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline.ingest import ingest

    report = ingest(settings, args.inputs, collection=args.collection, pattern=args.glob, progress=sys.stderr.isatty())
    print(report)
    return 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from docbot_lib.pipeline.store import search

    hits = search(settings.as_reader(), args.question, k=args.k, collection=args.collection)
    for hit in hits:
        if args.json:
            print(json.dumps(hit.to_dict(), ensure_ascii=False))
        else:
            where = (
                f"{hit.source}" + (f" p.{hit.page}" if hit.page else "") + (f" · {hit.section}" if hit.section else "")
            )
            print(f"{hit.rank:>2}. [{hit.score:.3f}] {where}\n    {hit.text[:200].replace(chr(10), ' ')}")
    return 0


def _milvus(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline import vectordb

    # the day-2 server: locally the Milvus 2.3 server beside Milvus Lite, on a cluster the one Milvus
    uri, env_file = settings.day2_milvus_uri, args.env_file or settings.day2_env_file
    if not uri:
        raise ConfigError(
            "no Milvus URI configured", "set DOCBOT_MILVUS_SERVER_URI or DOCBOT_MILVUS_URI", service="milvus"
        )
    collection = args.collection or settings.milvus_collection
    root = settings.secret("milvus_root_token")
    if args.action == "info":
        print(vectordb.inspect(uri, env_file, root))
        return 0
    if args.action == "secure":
        print(vectordb.secure(uri, collection, env_file, root_token=root, echo=print, names=settings.names))
        return 0
    report = vectordb.verify_least_privilege(uri, collection, vectordb.read_env(env_file), names=settings.names)
    print(report)
    return 0 if report.ok else 1


def _lab(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib import lab
    from docbot_lib.core.names import expand_users

    users = expand_users(args.users)
    options: dict[str, Any] = {"milvus": not args.no_milvus, "kube": not args.no_kube}
    if args.action != "status":
        options.update(model=args.model, s3_users=args.s3_users)
    if args.action == "provision":
        report = lab.provision(settings, users, echo=lambda m: print(m, file=sys.stderr), **options)
    else:
        report = getattr(lab, args.action)(settings, users, **options)
    print(report)
    return 0


def _gpu_size(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline import sizing

    options = {
        "gpus": args.gpu or None,
        "tensor_parallel": args.tensor_parallel,
        "gpu_memory_utilization": args.gpu_memory_utilization,
    }
    report = sizing.gpu_report(args.model_dir, **options) if args.model_dir else sizing.published_report(**options)
    print(report)
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline.api import serve

    serve(settings.as_reader(), host=args.host, port=args.port, collection=args.collection)
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline.evaluate import eval_command

    return eval_command(settings, args.questions, args.collection, args.json, answers=args.answers)


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from docbot_lib.pipeline.rag import Answer, RagChain

    print(f"Q: {args.question}", flush=True)
    answer, started = None, False
    for piece in RagChain(settings.as_reader(), collection=args.collection).stream(args.question):
        if isinstance(piece, Answer):
            answer = piece
        else:
            # "A:" once the answer starts: what loads before it (the embedding model) prints on stderr
            print(piece if started else f"A: {piece}", end="", flush=True)
            started = True
    assert answer is not None  # RagChain.stream ends with the Answer
    if answer.note():
        print(f"\n\nNote: {answer.note()}")
    print("\nSources:" if answer.sources else "\nRetrieved (not cited):")
    for source in answer.sources or answer.retrieved:
        print(f"  {source}")
    return 0 if answer.found else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docbot", description="Doc Bot: a RAG chatbot over documentation.")
    parser.add_argument(
        "--stack",
        choices=["local", "cluster"],
        default=None,
        help="where the services run (default: DOCBOT_STACK, else local)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the local stack: S3, LLM and Milvus on this machine")
    local.add_argument("action", choices=["up", "down", "status"])
    local.set_defaults(func=_local)

    check = sub.add_parser("check", help="check every service answers (S3, LLM, Milvus, embeddings)")
    check.add_argument("services", nargs="*", help="only these: S3 LLM Milvus embeddings")
    check.set_defaults(func=_check)

    ingest = sub.add_parser("ingest", help="ingest documents into Milvus (incremental); prints the report")
    ingest.add_argument(
        "inputs", nargs="+", metavar="PATH_OR_URI", help="folders, files, s3://bucket/prefix, http(s) URLs"
    )
    ingest.add_argument("--collection", default=None, help="default: DOCBOT_MILVUS_COLLECTION (docbot)")
    ingest.add_argument("--glob", default=None, help="only files matching, e.g. '**/*.html'")
    ingest.set_defaults(func=_ingest)

    search = sub.add_parser("search", help="the chunks that best match a question")
    search.add_argument("question")
    search.add_argument("--collection", default=None)
    search.add_argument("-k", type=int, default=None, help="how many chunks (default: DOCBOT_SEARCH_K)")
    search.add_argument(
        "--json", action="store_true", help="one JSON object per line: rank, source, title, score, text"
    )
    search.set_defaults(func=_search)

    milvus = sub.add_parser("milvus", help="day 2: server info, secure (root password, roles, users), verify")
    milvus.add_argument("action", choices=["info", "secure", "verify"])
    milvus.add_argument("--collection", default=None, help="the collection the roles are granted on")
    milvus.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="where passwords are stored (default: .env; on the local stack beside its Milvus "
        "server, .docbot/local/milvus-server.env)",
    )
    milvus.set_defaults(func=_milvus)

    gpu = sub.add_parser("gpu-size", help="will the model fit on a GPU, and which --max-model-len")
    gpu.add_argument(
        "model_dir",
        nargs="?",
        type=Path,
        default=None,
        help="a downloaded model (config.json + safetensors); default: Mistral-7B-Instruct-v0.2 as published",
    )
    gpu.add_argument("--gpu", action="append", help="T4, A10G, L4, A100-40GB, A100-80GB, H100-80GB (repeatable)")
    gpu.add_argument("--tensor-parallel", type=int, default=1)
    gpu.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    gpu.set_defaults(func=_gpu_size)

    ask = sub.add_parser("ask", help="ask the bot one question: the answer streams, then its sources")
    ask.add_argument("question")
    ask.add_argument("--collection", default=None)
    ask.set_defaults(func=_ask)

    serve = sub.add_parser("serve", help="the chatbot: OpenAI-compatible API and web UI (needs DOCBOT_API_KEY)")
    serve.add_argument(
        "--host", default=None, help="address to bind (default: DOCBOT_API_HOST, 127.0.0.1; 0.0.0.0 in a container)"
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--collection", default=None, help="default: DOCBOT_MILVUS_COLLECTION")
    serve.set_defaults(func=_serve)

    ev = sub.add_parser("eval", help="measure retrieval (hit@k, MRR@10; hybrid vs dense) on a question set")
    ev.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    ev.add_argument("--collection", default=None, help="default: DOCBOT_MILVUS_COLLECTION")
    ev.add_argument(
        "--answers",
        type=int,
        default=0,
        metavar="N",
        help="also ask the LLM the first N questions: answer checks and time per stage",
    )
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    ev.set_defaults(func=_eval)

    lab = sub.add_parser("lab", help="the lab's administrator: provision, status, teardown of a class of learners")
    lab.add_argument("action", choices=["provision", "status", "teardown"])
    lab.add_argument("--users", required=True, help="e.g. user1..user30, or ann,bob (each names a project)")
    lab.add_argument("--no-milvus", action="store_true", help="leave Milvus alone (no root token needed)")
    lab.add_argument("--no-kube", action="store_true", help="leave the cluster alone (Milvus only)")
    lab.add_argument(
        "--model",
        metavar="NAMESPACE/NAME",
        help="the InferenceService the class shares (token auth on): each learner gets a token that may "
        "only call it, in their docbot-learner Secret",
    )
    lab.add_argument(
        "--s3-users",
        action="store_true",
        help="an S3 user per learner, limited to their prefix, through the storage's IAM API (AWS, Ceph "
        "RGW/ODF); without it every data connection holds the class's key",
    )
    lab.set_defaults(func=_lab)

    show = sub.add_parser("settings", help="print the settings in use (secrets masked)")
    show.set_defaults(func=_settings)

    workshop = sub.add_parser("workshop", help="execute every notebook in order with papermill")
    workshop.add_argument("--notebooks", type=Path, default=project_dir() / "notebooks")
    workshop.add_argument(
        "--runs", type=Path, default=project_dir() / "runs", help="executed notebooks go to RUNS/<timestamp>/"
    )
    workshop.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 00 01")
    workshop.set_defaults(func=_workshop)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(stack=args.stack)
        return args.func(args, settings)
    except DocbotError as exc:  # one line naming the problem and the fix; the status says which kind (errors.py)
        print(f"docbot: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("docbot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
