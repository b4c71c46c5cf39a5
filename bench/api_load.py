"""Benchmark: the chatbot API under load — 50 concurrent clients, 500 requests in all.

Starts a private local stack (LLM + Milvus), ingests the sample docs, runs `docbot serve` in a subprocess on a
free port, then 50 clients (httpx, async) send 500 streamed chat completions in all, each client its next one
as soon as the last is done. Prints how many were answered (200), refused (503 with Retry-After: no slot came
within DOCBOT_API_QUEUE_TIMEOUT, or the queue of DOCBOT_API_MAX_QUEUE was full) and failed otherwise; the
p50/p95 wait (from the request to its response's status: the queue, retrieval and the first token for an
answer); the total time. Target: every request answered or refused with Retry-After, 0 other errors.
Peer: none runs here.

The right concurrency depends on the model server. llama.cpp, the local stack's, generates one answer at a
time: slots beyond 1 only interleave answers (and llama-cpp-python, unless started with --interrupt_requests
False, cuts a streamed answer short when another request comes), so DOCBOT_API_MAX_CONCURRENCY=1 and the
queue. vLLM batches many requests at once: there raise DOCBOT_API_MAX_CONCURRENCY (e.g. 16-64, within its
--max-num-seqs). The default (4, queue 64, 30 s) sits between; try others through the environment
(DOCBOT_API_*), which the server inherits.

    .venv/bin/python bench/api_load.py [--clients 50] [--requests 500] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Result(NamedTuple):
    outcome: str  # "answered" (200, the stream ended with [DONE]), "refused" (503 + Retry-After), else "error"
    wait: float  # seconds from the request to its response's status
    seconds: float  # to the end of the response
    detail: str = ""


async def one(client, url: str, key: str, question: str, max_tokens: int) -> Result:
    start = time.perf_counter()
    body = {
        "model": "docbot",
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}],
    }
    async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        wait = time.perf_counter() - start
        lines = [line async for line in response.aiter_lines()]
    seconds = time.perf_counter() - start
    if response.status_code == 200 and "data: [DONE]" in lines and not any('"error"' in line for line in lines):
        return Result("answered", wait, seconds)
    if response.status_code == 503 and response.headers.get("Retry-After", "").isdigit():
        return Result("refused", wait, seconds)
    return Result("error", wait, seconds, f"HTTP {response.status_code}: {' '.join(lines)[:200]}")


async def load(url: str, key: str, clients: int, total: int, max_tokens: int) -> list[Result]:
    import httpx

    questions = [
        "Which role should the chatbot's Milvus user get?",
        "Why does vLLM need a /dev/shm volume?",
        "What does the storage initializer copy?",
        "What is hybrid search?",
    ]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    results: list[Result] = []

    async def worker():
        async with httpx.AsyncClient(timeout=600) as client:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    results.append(await one(client, url, key, questions[i % len(questions)], max_tokens))
                except httpx.HTTPError as exc:
                    results.append(Result("error", 0.0, 0.0, type(exc).__name__))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=32, help="keeps each answer short (the LLM is serial)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="docbot-api-bench-"))
    key = secrets.token_urlsafe(16)
    os.environ.update(
        DOCBOT_HOME=str(home),
        DOCBOT_ENV_FILE=str(home / "none.env"),
        DOCBOT_API_KEY=key,
        DOCBOT_LOCAL_S3_PORT=str(free_port()),
        DOCBOT_LOCAL_LLM_PORT=str(free_port()),
        DOCBOT_LOCAL_MILVUS_PORT=str(free_port()),
        DOCBOT_LOCAL_HUB_PORT=str(free_port()),
        DOCBOT_MAX_TOKENS=str(args.max_tokens),
    )
    from docbot_lib.core.settings import Settings
    from docbot_lib.local.stack import LocalStack
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    stack = LocalStack(Settings.load())
    server = None
    try:
        stack.up(only=["llm", "milvus"])
        settings = Settings.load()
        ingest(settings, [str(prepare_sample_docs(home / "docs"))], progress=False)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "docbot_lib.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import httpx

        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        start = time.perf_counter()
        results = asyncio.run(
            load(f"http://127.0.0.1:{port}/v1/chat/completions", key, args.clients, args.requests, args.max_tokens)
        )
        wall = time.perf_counter() - start
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        stack.down()

    outcomes = Counter(r.outcome for r in results)

    def quantiles(values: list[float]) -> str:
        if len(values) < 2:
            return "p50 -, p95 -"
        cuts = statistics.quantiles(values, n=100)
        return f"p50 {cuts[49]:.1f} s, p95 {cuts[94]:.1f} s"

    print(
        f"{len(results)} requests from {args.clients} clients; max_tokens {args.max_tokens}; API concurrency "
        f"{settings.api_max_concurrency}, queue {settings.api_max_queue}, queue timeout "
        f"{settings.api_queue_timeout:g} s; {os.cpu_count()} cores"
    )
    print(
        f"answered: {outcomes['answered']}, refused (503 + Retry-After): {outcomes['refused']}, "
        f"other errors: {outcomes['error']} (target 0)"
    )
    print(
        f"wait (to the response's status), all: {quantiles([r.wait for r in results])}; "
        f"answered: {quantiles([r.wait for r in results if r.outcome == 'answered'])}; "
        f"refused: {quantiles([r.wait for r in results if r.outcome == 'refused'])}"
    )
    print(f"answered, to the end of the answer: {quantiles([r.seconds for r in results if r.outcome == 'answered'])}")
    print(f"total time: {wall:.1f} s ({outcomes['answered'] / wall:.2f} answered/s)")
    for detail, count in Counter(r.detail for r in results if r.outcome == "error").most_common(5):
        print(f"  error x{count}: {detail}")


if __name__ == "__main__":
    main()
