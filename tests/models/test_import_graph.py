"""modules.models and modules.networks: every submodule imports, and their imports point one way (no cycle).

Imports are read with ast, function-local ones included, so a cycle cannot hide inside a function.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("modules.models", "modules.networks")


def _module_names(package: str) -> list[str]:
    folder = ROOT / package.replace(".", "/")
    return sorted(f"{package}.{path.stem}" for path in folder.glob("*.py") if path.stem != "__init__")


def _imports(name: str, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its source."""
    tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text(encoding="utf8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & known - {name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path of module names, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


ALL = [name for package in PACKAGES for name in _module_names(package)]


@pytest.mark.parametrize("name", ALL)
def test_each_submodule_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_import_cycle() -> None:
    known = set(ALL)
    graph = {name: _imports(name, known) for name in ALL}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
