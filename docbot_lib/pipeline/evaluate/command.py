"""`docbot eval QUESTIONS.jsonl`: retrieval hybrid vs dense, and with `answers` N the answer checks and latency,
printed as tables or JSON.

Layer: pipeline, step `evaluate` (its command): imports core and the evaluate modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.evaluate.answers import check_answers
from docbot_lib.pipeline.evaluate.questions import load_questions
from docbot_lib.pipeline.evaluate.retrieval import compare_retrieval
from docbot_lib.pipeline.evaluate.tables import latency_rows, latency_table, retrieval_table


def eval_command(
    settings: Settings,
    questions_path: str | Path,
    collection: str | None = None,
    as_json: bool = False,
    answers: int = 0,
) -> int:
    """`docbot eval QUESTIONS.jsonl`: retrieval hybrid vs dense on the collection; with `answers` N, the
    answer checks and per-stage latency on the first N questions. Prints a table, or JSON; returns 0."""
    questions = load_questions(questions_path)
    runs = compare_retrieval(
        settings, questions, {"hybrid": {"hybrid": True}, "dense": {"hybrid": False}}, collection, progress=False
    )
    report = check_answers(settings, questions[:answers], collection, progress=False) if answers else None
    if as_json:
        out: dict[str, Any] = {
            "questions": str(questions_path),
            "collection": collection or settings.milvus_collection,
            "retrieval": {name: run.to_dict() for name, run in runs.items()},
        }
        if report:
            out["answers"] = report.to_dict()
            out["latency_ms"] = latency_rows(report)
        print(json.dumps(out, indent=2, default=str))
    else:
        print(retrieval_table(runs))
        if report:
            print()
            print(report)
            print()
            print(latency_table(report))
    return 0
