"""No import cycle inside failover: dependencies point one way (STYLE.md, "The layout").

Every import counts, wherever it is written: at the top, under ``if TYPE_CHECKING:``, or inside a
function (a lazy import only hides a cycle from the interpreter, not from the design). ``from
package import name`` is an edge to ``package.name`` when that is a module, else to the package's
``__init__``. A package is not taken to depend on its ``__init__``'s parent: importing
``failover.engine.run`` runs ``failover/engine/__init__.py`` first, but that is Python's order,
not a dependency of ``run``.

Run it as a script to see the cycles (``.venv/bin/python tests/test_imports.py``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the ``failover`` package under ``src``, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((src / "failover").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    yield submodule
                elif target in known:
                    yield target


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the failover modules it imports."""
    known = modules(src)
    return {name: set(_imported(name, path, known)) for name, path in known.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing
    itself): each is at least one cycle. Tarjan's algorithm, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
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
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    """No module of failover imports, directly or through others, one that imports it back."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check can fail: a two-module and a three-module circle are both found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


if __name__ == "__main__":
    found = cycles(import_graph(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC))
    for cycle in found:
        print(" <-> ".join(cycle))
    print(f"{len(found)} import cycle(s)")
    sys.exit(1 if found else 0)
