#!/usr/bin/env python3
"""The structure rules `make lint` enforces: no import cycles, no module over the size limit, a short shrink().

Imports are read from the source with `ast` (module-level and function-level alike, `TYPE_CHECKING`
blocks excepted, since they never run), resolved to modules of the package, and searched for cycles.
`from pkg import name` counts as an import of `pkg/__init__` (and of module `pkg.name` if there is one);
the implicit import of a module's parent package is not counted, since Python completes it before the
module's own code runs.

    python tools/check_structure.py [--max-lines 400] [--max-shrink-lines 40]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mobileprune"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Package modules that `path` imports when it runs (TYPE_CHECKING imports left out)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")  # `from . import x` imports module x
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def function_length(path: Path, name: str) -> int:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node.end_lineno - node.lineno + 1
    raise SystemExit(f"{path}: no function {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-lines", type=int, default=400)
    ap.add_argument("--max-shrink-lines", type=int, default=40)
    args = ap.parse_args()
    files = {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    graph = {name: imports_of(path, name, set(files)) for name, path in files.items()}
    problems = []
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " <-> ".join(cycle))
    for path in files.values():
        lines = len(path.read_text().splitlines())
        if lines > args.max_lines:
            problems.append(f"{path.relative_to(ROOT)}: {lines} lines (limit {args.max_lines})")
    shrink_lines = function_length(ROOT / PACKAGE / "prune" / "pipeline.py", "shrink")
    if shrink_lines > args.max_shrink_lines:
        problems.append(f"shrink() is {shrink_lines} lines (limit {args.max_shrink_lines})")
    for p in problems:
        print(p)
    edges = sum(len(d) for d in graph.values())
    print(
        f"{len(files)} modules, {edges} imports between them, {len(problems)} problems; shrink() {shrink_lines} lines"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
