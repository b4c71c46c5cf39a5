"""A question set: JSON Lines of {"question", "source", optional "also": [...], "answer", "difficulty"} read into
`Question`s, a bad line one clear error naming it; the sample set the lab ships (`SAMPLE_QUESTIONS`).

Layer: pipeline, step `evaluate` (its questions): imports core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from docbot_lib.core.errors import BadInput, NotFound

SAMPLE_QUESTIONS = Path(__file__).resolve().parents[2] / "data" / "sample_questions.jsonl"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    expected: frozenset[str]  # source plus the equally good pages in `also`
    difficulty: str = ""
    answer: str = ""


def load_questions(path: str | Path) -> list[Question]:
    """Read a JSON Lines question set; a bad line is one clear error naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise NotFound(
            f"cannot read the question set {path} ({type(exc).__name__})",
            "give the path of a JSON Lines file, e.g. docbot_lib/data/sample_questions.jsonl",
        ) from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(
                    str(row.get("id", number)),
                    row["question"],
                    frozenset([row["source"], *row.get("also", [])]),
                    row.get("difficulty", ""),
                    row.get("answer", ""),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInput(
                f"{path}, line {number}: not a question ({type(exc).__name__}: {exc})",
                'each line needs at least {"question": ..., "source": ...}',
            ) from None
    if not questions:
        raise BadInput(f"{path} holds no questions", 'write one JSON object per line: {"question", "source"}')
    return questions
