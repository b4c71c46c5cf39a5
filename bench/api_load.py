"""Benchmark: the chatbot API under load — 50 concurrent clients, 500 requests in all.

Starts a private local stack (LLM + Milvus), ingests the sample docs, runs `docbot serve` in a subprocess on a
free port, then 50 clients (httpx, async) send 500 streamed chat completions in all. Prints requests/s,
p50/p95 latency and time to first token of the answered requests, and the count of responses by status.
Target: no errors other than the deliberate 429s (the API answers at most DOCBOT_API_MAX_CONCURRENCY at
once; the local llama.cpp server generates one answer at a time). Peer: none runs here; the figure to
read is "0 non-2xx other than 429".

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def one(client, url: str, key: str, question: str, max_tokens: int) -> tuple[int, float, float | None]:
    start = time.perf_counter()
    first = None
    body = {"model": "docbot", "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": question}]}
    async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        async for line in response.aiter_lines():
            if first is None and line.startswith("data:") and '"content"' in line:
                first = time.perf_counter() - start
        return response.status_code, time.perf_counter() - start, first


async def load(url: str, key: str, clients: int, total: int, max_tokens: int) -> list[tuple[int, float, float | None]]:
    import httpx

    questions = ["Which role should the chatbot's Milvus user get?", "Why does vLLM need a /dev/shm volume?",
                 "What does the storage initializer copy?", "What is hybrid search?"]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    results: list[tuple[int, float, float | None]] = []

    async def worker():
        async with httpx.AsyncClient(timeout=600) as client:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    results.append(await one(client, url, key, questions[i % len(questions)], max_tokens))
                except httpx.HTTPError as exc:
                    results.append((0, 0.0, None))
                    print(f"request {i}: {type(exc).__name__}", file=sys.stderr)

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
    os.environ.update(DOCBOT_HOME=str(home), DOCBOT_ENV_FILE=str(home / "none.env"), DOCBOT_API_KEY=key,
                      DOCBOT_LOCAL_S3_PORT=str(free_port()), DOCBOT_LOCAL_LLM_PORT=str(free_port()),
                      DOCBOT_LOCAL_MILVUS_PORT=str(free_port()), DOCBOT_LOCAL_HUB_PORT=str(free_port()),
                      DOCBOT_MAX_TOKENS=str(args.max_tokens))
    from docbot_lib.ingest import ingest
    from docbot_lib.local import LocalStack
    from docbot_lib.samples import prepare_sample_docs
    from docbot_lib.settings import Settings

    stack = LocalStack(Settings.load())
    server = None
    try:
        stack.up(only=["llm", "milvus"])
        settings = Settings.load()
        ingest(settings, [str(prepare_sample_docs(home / "docs"))], progress=False)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "docbot_lib.cli", "serve", "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        start = time.perf_counter()
        results = asyncio.run(load(f"http://127.0.0.1:{port}/v1/chat/completions", key, args.clients,
                                   args.requests, args.max_tokens))
        wall = time.perf_counter() - start
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        stack.down()

    statuses = Counter(status for status, _, _ in results)
    ok = [(s, t, f) for s, t, f in results if s == 200]
    ms = lambda values, q: 1000 * statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")  # noqa: E731
    latencies = [t for _, t, _ in ok]
    firsts = [f for _, _, f in ok if f is not None]
    print(f"{len(results)} requests from {args.clients} clients in {wall:.1f} s: {len(results) / wall:.1f} requests/s "
          f"({len(ok) / wall:.2f} answered/s); max_tokens {args.max_tokens}; API concurrency "
          f"{settings.api_max_concurrency}; {os.cpu_count()} cores")
    print("responses by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"answered (200): p50 {ms(latencies, 50):.0f} ms, p95 {ms(latencies, 95):.0f} ms; "
          f"time to first token p50 {ms(firsts, 50):.0f} ms, p95 {ms(firsts, 95):.0f} ms")
    errors = sum(n for s, n in statuses.items() if s not in (200, 429))
    print(f"errors other than the deliberate 429s: {errors} (target 0)")


if __name__ == "__main__":
    main()
