"""The import graph of the product packages, read with ``ast`` (nothing is imported).

An edge ``a -> b`` is an ``import`` or ``from ... import`` statement of module ``a`` that runs
when ``a`` is imported: module level, including inside ``try``/``if`` blocks, but not inside a
function or class body (those run later) and not under ``if TYPE_CHECKING:`` (never at run
time). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. A package's ``__init__`` is not counted as imported by its submodules: Python runs it
first, but it cannot see a submodule half-initialised unless it imports it itself, which is an
edge of its own.

    python tests/support/import_graph.py    # print the cycles of depcache and depcache_celery
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("depcache", "depcache_celery", "depcache_pytest")

Graph = dict[str, set[str]]


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_imports(
    body: list[ast.stmt], everything: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements executed when a module body runs (see the module docstring), or
    with ``everything`` every import statement (in functions, under ``TYPE_CHECKING``)."""
    if everything:
        for stmt in body:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    yield node
        return
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _run_time_imports(node.body)
            yield from _run_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _run_time_imports(block)
            for handler in node.handlers:
                yield from _run_time_imports(handler.body)
        elif isinstance(node, ast.With):
            yield from _run_time_imports(node.body)


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: Mapping[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if submodule in known else source


def import_graph(
    root: Path = ROOT, packages: Iterable[str] = PACKAGES, everything: bool = False
) -> Graph:
    """Module -> the modules of ``packages`` it imports at run time (with ``everything``: also
    in function bodies and under ``TYPE_CHECKING``, the imports a reader follows)."""
    known = modules(root, packages)
    graph: Graph = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in _run_time_imports(tree.body, everything):
            for target in _targets(name, is_package, node, known):
                if target in known and target != name:
                    graph[name].add(target)
    return graph


def external_imports(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the top-level names of everything it imports at run time, anywhere in it
    (function bodies included; ``TYPE_CHECKING`` blocks excluded)."""
    known = modules(root, packages)
    found: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hidden = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and _is_type_checking(node.test)
            for stmt in node.body
            for child in ast.walk(stmt)
        }
        tops: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                tops.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.split(".")[0])
        found[name] = tops
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), each
    sorted, in sorted order: every import cycle lies within one of them (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> int:
    found = cycles(import_graph())
    for component in found:
        print("cycle among:", ", ".join(component))
    print(f"{len(found)} import cycle(s) at run time")
    for component in cycles(import_graph(everything=True)):
        print("counting deferred and TYPE_CHECKING imports too:", ", ".join(component))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
