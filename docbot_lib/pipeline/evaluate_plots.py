"""The pictures of notebook 07: hit@k curves, hit rate per difficulty, where the time goes.

Each function draws on its own matplotlib Figure (the Agg canvas: no display, no pyplot state), saves it as
a PNG when given a path, and returns the path, so a notebook shows the very file it saved
(`IPython.display.Image(path)`) and a headless run leaves the same pictures behind.

Layer: pipeline, step `evaluate_plots`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from docbot_lib.pipeline.evaluate import STAGES, AnswerReport, RetrievalRun, difficulty_order, latency_rows


def _save(fig: Figure, path: str | Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


STYLES = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]  # lines stay apart when they overlap


def _levels(runs: dict[str, RetrievalRun]) -> list[str]:
    return difficulty_order(level for r in runs.values() for level in r.scores.by_difficulty)


def hit_curves(runs: dict[str, RetrievalRun], path: str | Path, title: str = "") -> Path:
    """hit@k for k = 1..10, one line per setting (MRR@10 in the legend)."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for i, run in enumerate(runs.values()):
        ks = sorted(run.scores.hit_at)
        marker, line = STYLES[i % len(STYLES)]
        ax.plot(
            ks,
            [run.scores.hit_at[k] for k in ks],
            marker=marker,
            linestyle=line,
            markersize=8 - 1.5 * i,
            label=f"{run.name} (MRR@10 {run.scores.mrr_at_10:.2f})",
        )
    ax.set_xlabel("k (chunks returned)")
    ax.set_ylabel("hit@k: share of questions with an expected page")
    ax.set_xticks(range(1, 11))
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    n = next(iter(runs.values())).scores.questions if runs else 0
    ax.set_title(title or f"Retrieval quality ({n} questions)")
    return _save(fig, path)


def by_difficulty(
    runs: dict[str, RetrievalRun], path: str | Path, metrics: tuple[str, ...] = ("hit@1", "hit@4")
) -> Path:
    """Grouped bars per difficulty, one bar per setting, one panel per metric (hit@1, hit@4, hit@10, mrr@10)."""
    levels = _levels(runs)
    fig = Figure(figsize=(4.2 * len(metrics) + 0.5, 4.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.8 / max(len(runs), 1)
    counts = {
        level: next(
            r.scores.by_difficulty[level]["questions"] for r in runs.values() if level in r.scores.by_difficulty
        )
        for level in levels
    }
    for ax, metric in zip(axes, metrics, strict=True):
        for i, run in enumerate(runs.values()):
            values = [run.scores.by_difficulty.get(level, {}).get(metric, 0.0) for level in levels]
            bars = ax.bar([x + i * width for x in range(len(levels))], values, width, label=run.name)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(
            [x + width * (len(runs) - 1) / 2 for x in range(len(levels))],
            [f"{level}\n({counts[level]:.0f} q)" for level in levels],
        )
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{metric} per difficulty")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(runs), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path, tight=False)


def latency_stack(report: AnswerReport, path: str | Path) -> Path:
    """One stacked bar per question: rewrite, embed, search, first token, generate (milliseconds)."""
    rows = latency_rows(report)
    fig = Figure(figsize=(max(6.4, 0.6 * len(rows) + 2), 4.0))
    ax = fig.add_subplot()
    bottom = [0.0] * len(rows)
    for stage in STAGES:
        values = [r[stage] for r in rows]
        ax.bar(range(len(rows)), values, 0.6, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(rows)), [r["id"] for r in rows], rotation=45 if len(rows) > 8 else 0)
    ax.set_ylabel("milliseconds")
    ax.set_title("Where the time goes, per answer")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
