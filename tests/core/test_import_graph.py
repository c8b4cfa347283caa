"""The core's modules import one another without loops: every import statement counts, also
the ones inside functions and under ``if TYPE_CHECKING:`` (a loop there still means two
modules that cannot be read, or moved, one without the other)."""

from __future__ import annotations

import ast
from pathlib import Path

import corekit

ROOT = Path(corekit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, here: str, is_package: bool, modules: set[str]) -> list[str]:
    """The corekit modules one import statement reads (``from corekit import recipe`` reads
    the module ``corekit.recipe``; ``from corekit.x import name`` reads ``corekit.x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = here if is_package else here.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    found = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
    if len(found) < len(node.names) and source in modules:
        found.append(source)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        here = module_name(path)
        edges = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text())):
            edges.update(m for m in imported(node, here, path.name == "__init__.py", modules)
                         if m != here and not here.startswith(f"{m}."))
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_nested_and_type_checking_imports():
    graph = import_graph()
    assert "corekit.recipe" in graph["corekit.runner.plan"]
    assert "corekit.engine.trainer" in graph["corekit.runner.loop"]
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_loop_in_the_core():
    assert loops(import_graph()) == []
