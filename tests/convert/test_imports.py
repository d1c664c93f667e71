"""convert/ modules import each other without a cycle, imports inside functions included (type-only
imports under TYPE_CHECKING excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeport.convert

PACKAGE = Path(edgeport.convert.__file__).parent


def _imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & modules


def test_convert_modules_import_each_other_without_a_cycle():
    names = {("edgeport.convert" if f.stem == "__init__" else f"edgeport.convert.{f.stem}"): f
             for f in PACKAGE.glob("*.py")}
    graph = {name: _imports(path, set(names)) - {name} for name, path in names.items()}
    cycles = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for following in graph[node]:
            if following == start:
                cycles.append(" -> ".join([*path, start]))
            elif following not in path:
                visit(start, following, [*path, following])

    for name in graph:
        visit(name, name, [name])
    assert cycles == []
