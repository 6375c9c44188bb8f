"""The folders' layering, read from the source: what each top-level package may import.

kernel/ (ids, domain types, errors, events, wire format, Settings, stored rows) imports nothing of ours;
persistence/ and actors/ build on it and never on each other (the stores reach the actors through
`actors.ports`, wired by api/wiring.py); api/ may import them all. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("kernel", "persistence", "actors", "api")
ALLOWED = {
    "kernel": set(),
    "persistence": {"kernel"},
    "actors": {"kernel"},
    "api": {"kernel", "persistence", "actors"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _folder_edges() -> dict[tuple[str, str], list[str]]:
    """(importer folder, imported folder) -> the modules that make the edge."""
    edges: dict[tuple[str, str], list[str]] = {}
    for folder in OURS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _imports(path):
                target = name.split(".")[0]
                if target in OURS and target != folder:
                    edges.setdefault((folder, target), []).append(f"{path.relative_to(ROOT)} -> {name}")
    return edges


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def walk(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            found = walk(nxt, [*path, nxt])
            if found:
                return found
        return None

    for start in sorted(graph):
        found = walk(start, [start])
        if found:
            return found
    return None


def test_no_cycle_between_top_level_folders() -> None:
    edges = _folder_edges()
    assert _cycle(set(edges)) is None, f"import cycle between folders: {_cycle(set(edges))}"


@pytest.mark.parametrize("folder", OURS)
def test_each_folder_imports_only_the_layers_below_it(folder: str) -> None:
    wrong = {
        f"{a} -> {b}": where
        for (a, b), where in _folder_edges().items()
        if a == folder and b not in ALLOWED[a]
    }
    assert not wrong, f"{folder}/ imports what it may not: {wrong}"


def test_the_checks_see_a_cycle() -> None:
    assert _cycle({("actors", "persistence"), ("persistence", "actors")}) == [
        "actors",
        "persistence",
        "actors",
    ]
    assert _cycle({("api", "actors"), ("actors", "kernel")}) is None


def _project_classes() -> dict[str, tuple[str, list[str]]]:
    """Every class of ours: name -> (where, the names of its bases)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for folder in OURS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    bases = [ast.unparse(b).split(".")[-1].split("[")[0] for b in node.bases]
                    found[node.name] = (f"{path.relative_to(ROOT)}:{node.lineno}", bases)
    return found


def test_no_class_is_a_tower_of_project_base_classes() -> None:
    # Collaborators with their own state, not mixins spread over files (STYLE.md); the kernel's small
    # abstract types (its errors, its enums) do not count as a tower.
    classes = _project_classes()
    kernel = {name for name, (where, _) in classes.items() if where.startswith("kernel/")}

    def ancestors(name: str) -> set[str]:
        ours = {b for b in classes[name][1] if b in classes and b not in kernel and b != name}
        return ours.union(*(ancestors(b) for b in ours)) if ours else set()

    towers = {
        f"{name} ({classes[name][0]})": sorted(up) for name in classes if len(up := ancestors(name)) > 2
    }
    assert not towers, f"classes with more than two project base classes: {towers}"
