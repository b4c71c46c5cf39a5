"""Benchmark: download a 768 MiB model from the local stand-in hub with Doc Bot, and with huggingface_hub as
the peer.

Serves a synthetic repo (3 x 256 MiB random safetensors shards, small json files, and a 256 MiB decoy
pytorch_model.bin) with docbot_lib.local.hubserver, then alternates, ROUNDS times each, in fresh processes:
  Doc Bot            download_model(): plan, disk check, resumable download, sha256 of every shard
  snapshot           huggingface_hub.snapshot_download(allow_patterns=<the same files>, local_dir=...)
  snapshot + verify  the same, then HfApi.verify_repo_checksums(local_dir=...): the same work as Doc Bot's
each into a fresh folder, deleted afterwards. Prints the median times and ratios, and verify_model alone.
Target: Doc Bot <= snapshot + verify. (On 127.0.0.1 the hashing competes with the server for the CPU; over
a real network it hides behind the transfer.)

    .venv/bin/python bench/hub_download.py [--rounds 3] [--shard-mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import write_model  # bench/ is on the path when a benchmark runs

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
REPO_ID = "bench/synthetic-7b"

DOCBOT = """
import sys
from docbot_lib import Settings
from docbot_lib.pipeline.hub import download_model
s = Settings.load(stack="cluster", hf_endpoint=sys.argv[1], model_id=sys.argv[2], model_dir=sys.argv[3])
assert download_model(s, progress=False).report.ok
"""
SNAPSHOT = """
import json, sys
from huggingface_hub import snapshot_download
from huggingface_hub import HfApi
folder = sys.argv[3] + "/" + sys.argv[2]
snapshot_download(sys.argv[2], endpoint=sys.argv[1], local_dir=folder,
                  cache_dir=sys.argv[3] + "/.hf-cache", allow_patterns=json.loads(sys.argv[4]), token=False)
if sys.argv[5] == "verify":
    result = HfApi(endpoint=sys.argv[1], token=False).verify_repo_checksums(sys.argv[2], local_dir=folder)
    assert not result.mismatches
"""


def make_repo(folder: Path, shard_mib: int, shards: int = 3) -> int:
    """The benchmark repo: safetensors shards, a decoy .bin the download must skip, the small files."""
    weights = write_model(folder, shard_mib, shards, extra_weights=("pytorch_model.bin",))
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 32768}')
    return weights


def timed(code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        cwd=HERE.parent,
        env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-mib", type=int, default=256)
    args = parser.parse_args()

    from docbot_lib import Settings
    from docbot_lib.local.hubserver import HubServer
    from docbot_lib.pipeline.hub import plan_download, verify_model

    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    try:
        weights = make_repo(work / "repo", args.shard_mib)
        with HubServer({REPO_ID: work / "repo"}) as server:
            plan = plan_download(Settings.load(stack="cluster", hf_endpoint=server.url, model_id=REPO_ID))
            patterns = json.dumps([f.path for f in plan.files])
            print(
                f"repo: {len(plan.files)} files to fetch, {plan.total_bytes / MiB:.0f} MiB "
                f"({weights / MiB:.0f} MiB of weights); skipped {plan.skipped_bytes / MiB:.0f} MiB; {server.url}"
            )
            times: dict[str, list[float]] = {"docbot": [], "snapshot": [], "snapshot+verify": []}
            verify: list[float] = []
            runs = (
                ("docbot", DOCBOT, ()),
                ("snapshot", SNAPSHOT, (patterns, "no")),
                ("snapshot+verify", SNAPSHOT, (patterns, "verify")),
            )
            for round_ in range(args.rounds):
                for name, code, extra in runs:
                    out = work / f"out-{name}-{round_}"
                    times[name].append(timed(code, server.url, REPO_ID, str(out), *extra))
                    if name == "docbot":
                        start = time.perf_counter()
                        assert verify_model(out / REPO_ID, progress=False).ok
                        verify.append(time.perf_counter() - start)
                    shutil.rmtree(out)
                    print(f"round {round_ + 1}: {name:<15} {times[name][-1]:6.2f} s", flush=True)
        med = {name: statistics.median(values) for name, values in times.items()}
        mib = plan.total_bytes / MiB
        print(f"\nmedian of {args.rounds}, fresh process each, {mib:.0f} MiB over HTTP on 127.0.0.1:")
        print(f"  Doc Bot download_model (download + sha256)         {med['docbot']:6.2f} s")
        print(f"  peer: snapshot_download (no verification)          {med['snapshot']:6.2f} s")
        print(f"  peer: snapshot_download + verify_repo_checksums    {med['snapshot+verify']:6.2f} s")
        print(
            f"  ratio Doc Bot / (snapshot + verify)                {med['docbot'] / med['snapshot+verify']:6.2f}"
            f"  (target <= 1)"
        )
        print(f"  ratio Doc Bot / snapshot alone                     {med['docbot'] / med['snapshot']:6.2f}")
        print(f"  Doc Bot verify_model alone (re-reading the folder) {statistics.median(verify):6.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
