"""flowkit's modules import one way, floor by floor, with no cycle; none is over 500 lines.

Imports inside functions count, and so do ``import_module("flowkit....")`` calls; imports
under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowkit

ROOT = Path(flowkit.__file__).parent

FLOORS: dict[str, int] = {
    # leaves
    "errors": 0,
    "events": 0,
    "retry": 0,
    "limits": 0,
    "budgets": 0,
    "adaptive": 0,
    "pacing": 0,
    "limitstats": 0,
    "pauses": 0,
    "engine": 0,
    "redact": 0,
    "files": 0,
    "extras": 0,
    "templates": 0,
    "serve": 0,
    # the PocketFlow model and what a run produces: definitions only
    "node": 1,
    "flow": 1,
    "graph": 1,
    "fingerprint": 1,
    "results": 1,
    # where exec runs; where results are kept
    "executors": 2,
    "store": 2,
    # how work runs
    "runner": 3,
    # observers and tools that read events and results
    "progress": 4,
    "report": 4,
    "detector": 4,
    "observers": 4,
    "otel": 4,
    "notebook": 4,
    "commands": 4,
    # drives runs
    "cli": 5,
    "__init__": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1] if len(parts) > 1 else "__init__"]


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST, modules: set[str], here: str) -> set[str]:
    """flowkit modules that ``tree`` imports when it runs, in functions too."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{here}: use absolute imports"
            base = node.module or ""
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in modules}


files = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {
    name: imports(ast.parse(path.read_text()), set(files), name) - {name}
    for name, path in files.items()
}


def test_every_module_has_a_floor() -> None:
    assert [name for name in files if name != "flowkit" and name.split(".")[1] not in FLOORS] == []


def test_imports_only_point_down_or_sideways() -> None:
    upward = sorted(
        f"{name} (floor {floor_of(name)}) imports {dep} (floor {floor_of(dep)})"
        for name, deps in GRAPH.items()
        for dep in deps
        if floor_of(dep) > floor_of(name)
    )
    assert upward == []


def test_no_import_cycle() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def walk(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH[name]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                walk(dep, [*stack, dep])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_the_node_module_does_not_import_the_runner() -> None:
    reach: set[str] = set()
    todo = ["flowkit.node"]
    while todo:
        for dep in GRAPH[todo.pop()] - reach:
            reach.add(dep)
            todo.append(dep)
    assert not {m for m in reach if m.startswith("flowkit.runner")}


def test_no_module_is_over_500_lines() -> None:
    long = {name: n for name, p in files.items() if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
