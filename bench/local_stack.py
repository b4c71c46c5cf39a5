"""Benchmark: start-up time and peak memory of the local stack under a small real workload.

Starts a private stack (own HOME, free ports; S3, LLM, hub, Milvus), samples the resident memory (RSS) of every stack process
tree every 0.1 s while it: waits for each service, puts and gets 64 MiB in S3, asks the LLM for 3 chat
completions, inserts and searches 2,000 vectors in Milvus; then stops the stack. Prints the figures.
Peer: the cluster's own footprint is not comparable here; the figure to compare is the machine's 24 GiB
(and a workbench's typical 8-16 GiB).

    .venv/bin/python bench/local_stack.py
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import threading
import time

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PeakRss(threading.Thread):
    """Samples the RSS of each service's process tree; keeps the peak per service and of the sum."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.peak, self.total, self.stop = stack, {}, 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            now = {}
            for name, record in self.stack.state()["services"].items():
                try:
                    proc = psutil.Process(record["pid"])
                    now[name] = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
                except psutil.Error:
                    continue
            for name, rss in now.items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
            self.total = max(self.total, sum(now.values()))


def main() -> None:
    home = tempfile.mkdtemp(prefix="docbot-bench-")
    os.environ.update(
        DOCBOT_HOME=home,
        DOCBOT_LOCAL_S3_PORT=str(free_port()),
        DOCBOT_LOCAL_LLM_PORT=str(free_port()),
        DOCBOT_LOCAL_MILVUS_PORT=str(free_port()),
        DOCBOT_LOCAL_HUB_PORT=str(free_port()),
        DOCBOT_LOCAL_MILVUS_SERVER_PORT=str(free_port()),
        DOCBOT_ENV_FILE=os.path.join(home, "none.env"),
    )
    from docbot_lib.core.settings import Settings
    from docbot_lib.local.stack import LocalStack

    stack = LocalStack(Settings.load())
    sampler = PeakRss(stack)
    sampler.start()
    t0 = time.perf_counter()
    try:
        stack.up()
        startup = time.perf_counter() - t0
        settings = Settings.load()

        import boto3
        from openai import OpenAI
        from pymilvus import MilvusClient

        s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.secret("s3_secret_key"),
        )
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="blob", Body=os.urandom(64 << 20))
        s3.get_object(Bucket="bench", Key="blob")["Body"].read()

        llm = OpenAI(base_url=settings.llm_base_url, api_key=settings.secret("llm_api_key"))
        t1 = time.perf_counter()
        tokens = 0
        for question in ("What is Milvus?", "What does KServe do?", "Explain RAG in one sentence."):
            reply = llm.chat.completions.create(
                model=settings.llm_model_name, max_tokens=64, messages=[{"role": "user", "content": question}]
            )
            tokens += reply.usage.completion_tokens
        llm_seconds = time.perf_counter() - t1

        milvus = MilvusClient(uri=settings.milvus_uri)
        milvus.create_collection("bench", dimension=384, metric_type="COSINE")
        rng = random.Random(0)
        milvus.insert("bench", [{"id": i, "vector": [rng.random() for _ in range(384)]} for i in range(2000)])
        milvus.flush("bench")
        milvus.search("bench", data=[[rng.random() for _ in range(384)]], limit=10)
        milvus.close()
    finally:
        stack.down()
        sampler.stop.set()
        sampler.join()
        shutil.rmtree(home, ignore_errors=True)  # the Milvus server's unpacked binary alone is ~250 MB

    mib = 1 << 20
    print(f"local stack start-up ({len(sampler.peak)} services, each answering): {startup:.1f} s")
    print(
        f"LLM: 3 chat completions, {tokens} tokens in {llm_seconds:.1f} s ({tokens / llm_seconds:.0f} tok/s incl. prompt)"
    )
    for name, rss in sorted(sampler.peak.items()):
        print(f"peak RSS {name:<13} {rss / mib:7.0f} MiB")
    print(
        f"peak RSS total         {sampler.total / mib:7.0f} MiB   (peer: this machine's 24 GiB; a workbench's 8-16 GiB)"
    )


if __name__ == "__main__":
    main()
