"""Run the lab: execute the numbered notebooks in order with papermill into a timestamped run folder.

Layer: top (runs the notebooks): imports any layer below.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KERNEL = "python3"


@dataclass
class NotebookRun:
    notebook: str
    status: str  # ok | failed | not run
    seconds: float = 0.0
    output: Path | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def lab_notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (NN-name.ipynb) in order; `only` keeps those whose name starts with a prefix."""
    found = sorted(p for p in folder.glob("[0-9][0-9]-*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in only)]
    return found


def execute(
    notebook: Path, output: Path, parameters: dict[str, Any] | None = None, timeout: float | None = 1800
) -> NotebookRun:
    """Execute one notebook with papermill (cwd = its folder); a failure is returned, not raised."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters or {},
            cwd=str(notebook.parent),
            kernel_name=KERNEL,
            progress_bar=False,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as exc:
        return NotebookRun(
            notebook.name,
            "failed",
            time.perf_counter() - start,
            output,
            f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
        )
    return NotebookRun(notebook.name, "ok", time.perf_counter() - start, output)


def run_parameters(notebook: Path, folder: Path) -> dict[str, Any]:
    """Parameters a run gives every notebook that has them: OUTPUT_DIR (figures go to the run folder)."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    declared = "\n".join(c.source for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return {"OUTPUT_DIR": str(folder / "figures")} if "OUTPUT_DIR" in declared else {}


def summary(runs: list[NotebookRun], folder: Path) -> str:
    width = max((len(r.notebook) for r in runs), default=10)
    lines = [f"{'notebook':<{width}}  status   time"]
    for r in runs:
        lines.append(f"{r.notebook:<{width}}  {r.status:<7}  {r.seconds:6.1f} s" + (f"  {r.error}" if r.error else ""))
    total = sum(r.seconds for r in runs)
    lines.append(
        f"{len([r for r in runs if r.ok])}/{len(runs)} notebooks ok in {total:.1f} s; executed notebooks: {folder}"
    )
    return "\n".join(lines)


def run_workshop(
    notebooks_dir: Path, runs_dir: Path, only: list[str] | None = None, echo: Callable[[str], None] = print
) -> list[NotebookRun]:
    """Execute the lab's notebooks in order; stop at the first failure (the next ones build on it)."""
    folder = runs_dir / time.strftime("%Y%m%d-%H%M%S")
    notebooks = lab_notebooks(notebooks_dir, only)
    runs: list[NotebookRun] = []
    for notebook in notebooks:
        if runs and not runs[-1].ok:
            runs.append(NotebookRun(notebook.name, "not run"))
            continue
        echo(f"running {notebook.name} ...")
        runs.append(execute(notebook, folder / notebook.name, run_parameters(notebook, folder)))
        echo(f"  {runs[-1].status} in {runs[-1].seconds:.1f} s")
    echo(summary(runs, folder))
    return runs
