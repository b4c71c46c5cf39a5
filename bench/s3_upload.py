"""Benchmark: upload a 1 GiB model folder to S3 with Doc Bot, and with the AWS CLI as the peer.

Starts a private local S3 (the moto server of the local stack, own HOME and port), generates a synthetic
model folder (3 x 341 MiB of random "weights" + small json files), then alternates, ROUNDS times each:
  Doc Bot   upload_model() in a fresh Python process, digest cache removed (hashing included)
  AWS CLI   `aws s3 cp --recursive --endpoint-url ...` (v1 from PyPI, its defaults), fresh process
each into a fresh prefix, deleted afterwards (moto keeps objects in memory). Then the unchanged re-sync:
Doc Bot against a complete prefix, with its digest cache (the usual case) and without it (re-hashing 1 GiB).
Prints the median times, the ratio, the CPU the S3 server spent per upload (steadier than wall clock on a
shared machine), and the re-sync times. Targets: Doc Bot <= AWS CLI; re-sync <= 2 s.

The AWS CLI pins its own botocore, so it lives in its own venv (default /tmp/awscli-venv), created from
bench/requirements.txt when missing.

    .venv/bin/python bench/s3_upload.py [--rounds 3] [--part-size-mib 64] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import write_model  # bench/ is on the path when a benchmark runs

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_cli(venv: Path) -> Path:
    aws = venv / "bin" / "aws"
    if not aws.is_file():
        print(f"installing the AWS CLI into {venv} (bench/requirements.txt) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements.txt")], check=True)
    return aws


def make_model(folder: Path, shard_mib: int = 341, shards: int = 3) -> int:
    """The benchmark model folder; returns its size in bytes."""
    write_model(folder, shard_mib, shards)
    return sum(p.stat().st_size for p in folder.iterdir())


DOCBOT = """
import sys
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.s3 import upload_model
r = upload_model(Settings.load(), sys.argv[1], sys.argv[2], part_size=int(sys.argv[3]), concurrency=int(sys.argv[4]),
                 progress=False)
print(len(r.uploaded), r.bytes_uploaded, len(r.skipped))
"""


SERVER: list = []  # the S3 server's psutil.Process, once started


def server_cpu() -> float:
    times = SERVER[0].cpu_times() if SERVER else None
    return times.user + times.system if times else 0.0


def timed(command: list[str], env: dict, cpu: list[float] | None = None) -> tuple[float, str]:
    before, start = server_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{command[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    if cpu is not None:
        cpu.append(server_cpu() - before)
    return seconds, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part-size-mib", type=int, default=None, help="default: docbot_lib.pipeline.s3.PART_SIZE")
    parser.add_argument("--concurrency", type=int, default=None, help="default: docbot_lib.pipeline.s3.CONCURRENCY")
    parser.add_argument("--awscli-venv", type=Path, default=Path("/tmp/awscli-venv"))
    args = parser.parse_args()

    aws = aws_cli(args.awscli_venv)
    work = Path(tempfile.mkdtemp(prefix="docbot-bench-s3-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCBOT_", "AWS_"))}
    env.update(
        DOCBOT_HOME=str(work / "home"),
        DOCBOT_LOCAL_S3_PORT=str(free_port()),
        DOCBOT_ENV_FILE=str(work / "none.env"),
        DOCBOT_S3_BUCKET="bench",
    )
    os.environ.update(env)
    from docbot_lib.clients.s3 import s3_client
    from docbot_lib.core.settings import Settings
    from docbot_lib.local.stack import LocalStack
    from docbot_lib.pipeline import s3

    part_size = (args.part_size_mib * MiB) if args.part_size_mib else s3.PART_SIZE
    concurrency = args.concurrency or s3.CONCURRENCY
    stack = LocalStack(Settings.load())
    try:
        print("generating the model folder ...", flush=True)
        model = work / "model"
        total = make_model(model)
        files = len(list(model.iterdir()))
        stack.up(only=["s3"])
        import psutil

        SERVER.append(psutil.Process(stack.pids()[0]))  # only s3 runs: its process
        settings = Settings.load()
        client = s3_client(settings)
        client.create_bucket(Bucket="bench")
        aws_env = {
            **env,
            "AWS_ACCESS_KEY_ID": settings.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": settings.secret("s3_secret_key"),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        cache = model / ".cache"

        def clear(prefix: str) -> None:
            for key in s3.list_objects(client, "bench", prefix):
                client.delete_object(Bucket="bench", Key=key)

        print(
            f"{total / MiB:,.0f} MiB in {files} files; S3 = moto at {settings.s3_endpoint}; "
            f"Doc Bot part size {part_size // MiB} MiB, concurrency {concurrency}; {os.cpu_count()} cores",
            flush=True,
        )
        times: dict[str, list[float]] = {"docbot": [], "aws": []}
        cpu: dict[str, list[float]] = {"docbot": [], "aws": []}
        for i in range(args.rounds):
            shutil.rmtree(cache, ignore_errors=True)
            prefix = f"models/docbot-{i}/"
            seconds, out = timed(
                [sys.executable, "-c", DOCBOT, str(model), prefix, str(part_size), str(concurrency)], env, cpu["docbot"]
            )
            assert out.split()[:2] == [str(files), str(total)], out
            times["docbot"].append(seconds)
            clear(prefix)
            shutil.rmtree(cache, ignore_errors=True)
            prefix = f"models/aws-{i}/"
            seconds, _ = timed(
                [
                    str(aws),
                    "s3",
                    "cp",
                    "--recursive",
                    "--only-show-errors",
                    "--endpoint-url",
                    settings.s3_endpoint,
                    str(model),
                    f"s3://bench/{prefix}",
                ],
                aws_env,
                cpu["aws"],
            )
            assert sum(s3.list_objects(client, "bench", prefix).values()) == total
            times["aws"].append(seconds)
            clear(prefix)
            print(
                f"round {i + 1}: Doc Bot {times['docbot'][-1]:.2f} s (server CPU {cpu['docbot'][-1]:.1f} s), "
                f"AWS CLI {times['aws'][-1]:.2f} s (server CPU {cpu['aws'][-1]:.1f} s); "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )

        shutil.rmtree(cache, ignore_errors=True)
        timed([sys.executable, "-c", DOCBOT, str(model), "models/resync/", str(part_size), str(concurrency)], env)
        resync, out = timed(
            [sys.executable, "-c", DOCBOT, str(model), "models/resync/", str(part_size), str(concurrency)], env
        )
        assert out.split()[:2] == ["0", "0"], out
        shutil.rmtree(cache, ignore_errors=True)
        resync_cold, out = timed(
            [sys.executable, "-c", DOCBOT, str(model), "models/resync/", str(part_size), str(concurrency)], env
        )
        assert out.split()[:2] == ["0", "0"], out

        docbot, peer = statistics.median(times["docbot"]), statistics.median(times["aws"])
        print()
        print(f"upload 1 GiB, median of {args.rounds} (fresh process each, wall clock):")
        print(
            f"  Doc Bot upload_model   {docbot:6.2f} s  ({total / MiB / docbot:,.0f} MiB/s; sha256 + verify included)"
        )
        print(f"  AWS CLI s3 cp          {peer:6.2f} s  ({total / MiB / peer:,.0f} MiB/s)")
        print(f"  ratio Doc Bot / AWS CLI  {docbot / peer:.2f}  (target <= 1.00)")
        print(
            f"  S3 server CPU per upload: Doc Bot {statistics.median(cpu['docbot']):.1f} s, "
            f"AWS CLI {statistics.median(cpu['aws']):.1f} s"
        )
        print(
            f"unchanged re-sync (nothing sent): {resync:.2f} s with the digest cache (target <= 2 s), "
            f"{resync_cold:.2f} s without it (re-hashing 1 GiB)"
        )
    finally:
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
