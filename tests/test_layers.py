"""The package's layers point one way: each module imports only from layers below it (and, in the pipeline,
from earlier steps), and no import cycle exists. Imports inside functions count too: a lazy import that goes
upwards is still an upward dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import docbot_lib
from docbot_lib import pipeline

PACKAGE = Path(docbot_lib.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every docbot_lib module `path` imports (module-level, lazy and TYPE_CHECKING imports alike)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("docbot_lib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("docbot_lib"):
            for alias in node.names:  # `from docbot_lib.pipeline import s3` imports the module pipeline.s3
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _exists(sub) else node.module)
    return found


def _exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def rank(module: str) -> tuple[int, int]:
    """(layer, step): the layer from docbot_lib.LAYERS, the step from docbot_lib.pipeline.STEPS."""
    parts = module.split(".")
    if len(parts) == 1:  # docbot_lib itself re-exports from the bottom layer only
        return (0, 0)
    layer = docbot_lib.LAYERS.index(parts[1])
    if parts[1] == "pipeline" and len(parts) > 2:
        return (layer, pipeline.STEPS.index(parts[2]) + 1)
    return (layer, 0)


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != "docbot_lib" and m.split(".")[1] not in docbot_lib.LAYERS]
    steps = [m for m in MODULES if m.startswith("docbot_lib.pipeline.") and m.split(".")[2] not in pipeline.STEPS]
    assert not unplaced and not steps, f"not in docbot_lib.LAYERS: {unplaced}; not in pipeline.STEPS: {steps}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """`A imports B` where B's layer is above A's, or, in the pipeline, B is A's own step or a later one.
    Peers of one other layer may import each other (the cycle test still holds them)."""
    pipeline_layer = docbot_lib.LAYERS.index("pipeline")
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            if target == "docbot_lib" or module.startswith(target + "."):
                continue  # the package itself re-exports from core only; a package's own __init__
            (layer, step), (target_layer, target_step) = rank(module), rank(target)
            if target_layer == layer and layer != pipeline_layer:
                continue
            if layer == pipeline_layer and module.split(".")[:3] == target.split(".")[:3]:
                continue  # the modules of one step (pipeline/ingest/) are peers too
            if (target_layer, target_step) >= (layer, step):
                wrong.append(f"{module} imports {target}")
    return sorted(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_upward_import():
    assert upward_imports(GRAPH) == []


def test_no_import_cycle():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        (
            {"docbot_lib.core.errors": {"docbot_lib.pipeline.store"}},
            ["docbot_lib.core.errors imports docbot_lib.pipeline.store"],
        ),
        (
            {"docbot_lib.pipeline.hub": {"docbot_lib.pipeline.rag"}},
            ["docbot_lib.pipeline.hub imports docbot_lib.pipeline.rag"],
        ),
        ({"docbot_lib.pipeline.rag": {"docbot_lib.pipeline.store", "docbot_lib.core.settings"}}, []),
    ],
)
def test_the_layer_check_can_fail(graph, expected):
    assert upward_imports(graph) == expected


def test_the_cycle_check_can_fail():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
