"""The tables: retrieval per setting (hit@k, MRR@10, per difficulty, timings), and where an answer's time goes
(milliseconds per stage per question, medians and p95s).

Layer: pipeline, step `evaluate` (its tables): imports evaluate.scores, evaluate.retrieval and evaluate.answers.
"""

from __future__ import annotations

from typing import Any

from docbot_lib.pipeline.evaluate.answers import AnswerReport
from docbot_lib.pipeline.evaluate.retrieval import RetrievalRun
from docbot_lib.pipeline.evaluate.scores import difficulty_order, median_ms, p95_ms


def retrieval_table(runs: dict[str, RetrievalRun], ks: tuple[int, ...] = (1, 3, 5, 10)) -> str:
    """A text table: one row per setting, hit@k columns, MRR@10, then per difficulty hit@4."""
    levels = difficulty_order({level for r in runs.values() for level in r.scores.by_difficulty})
    width = max([len("setting"), *(len(name) for name in runs)]) + 2
    head = f"{'setting':<{width}}" + "".join(f"{'hit@' + str(k):>8}" for k in ks) + f"{'MRR@10':>8}"
    head += "".join(f"{level + ' hit@4':>14}" for level in levels) + f"{'embed ms':>10}{'search ms':>10}"
    lines = [head]
    for r in runs.values():
        line = f"{r.name:<{width}}" + "".join(f"{r.scores.hit_at[k]:>8.2f}" for k in ks if k in r.scores.hit_at)
        line += f"{r.scores.mrr_at_10:>8.3f}"
        line += "".join(
            f"{r.scores.by_difficulty.get(level, {}).get('hit@4', float('nan')):>14.2f}" for level in levels
        )
        lines.append(line + f"{median_ms(r.embed_s):>10.1f}{median_ms(r.search_s):>10.1f}")
    lines.append(
        f"({next(iter(runs.values())).scores.questions} questions; ranks count chunks; times are medians)"
        if runs
        else "(no settings)"
    )
    return "\n".join(lines)


STAGES = ("rewrite", "embed", "search", "first token", "generate")


def latency_rows(report: AnswerReport) -> list[dict[str, Any]]:
    """Per question, milliseconds per stage (summing to about the total): rewrite, embed, search, first token
    (prompt processing until the model's first token), generate (the rest of the answer); and total."""
    rows = []
    for c in report.checks:
        t = c.timings
        to_first = t.get("first_token", t["total"])
        rows.append(
            {
                "id": c.id,
                "rewrite": t.get("rewrite", 0) * 1000,
                "embed": t.get("embed", 0) * 1000,
                "search": t.get("search", 0) * 1000,
                "first token": max(0.0, to_first - t.get("rewrite", 0) - t.get("retrieve", 0)) * 1000,
                "generate": max(0.0, t["total"] - to_first) * 1000,
                "total": t["total"] * 1000,
                "time to first token": to_first * 1000,
            }
        )
    return rows


def latency_table(report: AnswerReport) -> str:
    """Median and p95 per stage over the questions, in milliseconds."""
    rows = latency_rows(report)
    columns = (*STAGES, "time to first token", "total")
    lines = [f"{'ms':<8}" + "".join(f"{c:>21}" for c in columns)]
    for name, pick in (("median", median_ms), ("p95", p95_ms)):
        lines.append(f"{name:<8}" + "".join(f"{pick([r[c] / 1000 for r in rows]):>21.0f}" for c in columns))
    lines.append(f"({len(rows)} answers; 'first token' = from the prompt sent to the model's first token)")
    return "\n".join(lines)
