"""The library's layout: subpackages by concern, each saying what it owns, in one direction of
import (no cycles between packages), and never importing the stages."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "exigo"


def _module_level_imports(path: Path) -> set[str]:
    """The exigo modules a file imports when it is imported (not inside functions, not under
    `if TYPE_CHECKING:`)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "exigo" or m.startswith(("exigo.", "stages"))}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_subpackage_says_what_it_owns_and_nothing_is_called_utils():
    for init in SRC.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)}: say what the package owns"
    assert not list(SRC.rglob("utils.py")) and not list(SRC.rglob("helpers.py"))


def test_the_library_never_imports_a_stage():
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "from stages" not in text and "import stages" not in text, path


def test_packages_import_in_one_direction():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for imported in _module_level_imports(path):
            if _package(imported) != _package(module):
                graph[_package(module)].add(_package(imported))
    assert not graph["core"], f"core imports {graph['core']}: it is what everything builds on"

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen and (found := cycle_from(start, nxt, (*seen, nxt))):
                return found
        return None

    for package in list(graph):
        cycle = cycle_from(package, package, (package,))
        assert cycle is None, " -> ".join(cycle)


def test_stages_stay_thin():
    for path in (ROOT / "stages").glob("*.py"):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert len(lines) < 160, f"{path.name}: {len(lines)} lines; move the compute to src/exigo"
