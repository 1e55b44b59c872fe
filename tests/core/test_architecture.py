"""The package's shape (issue 16): no import circle between ddval modules, small modules, one notebook pattern,
and the linter's checks."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from ddval.config import repo_root

#: What ruff checks and formats.
LINTED = ("lib", "tests", "benchmarks", "tools", "contracts")
LIB = repo_root() / "lib" / "ddval"
#: About 400 lines (10 % leeway: the formatter's line breaks count too); a longer module is split by concern,
#: or says at its top why it is one ("Why one module...").
MAX_LINES = 440


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """ddval modules that ``name`` imports anywhere (top level or inside functions): ``from pkg import sub``
    counts as importing ``pkg.sub`` (and ``pkg`` only when a name that is not a module is imported)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in mods] + ([base] if any(t not in mods for t in subs) else [])
        else:
            continue
        for target in targets:
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target.startswith("ddval") and target != name:
                out.add(target)
    return out


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a circle (strongly connected components)."""
    digraph = nx.DiGraph([(a, b) for a, targets in graph.items() for b in targets])
    digraph.add_nodes_from(graph)
    return sorted(sorted(c) for c in nx.strongly_connected_components(digraph) if len(c) > 1)


def test_cycle_finder_finds_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert import_cycles(graph) == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_are_small_or_say_why(name):
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        head = "\n".join(path.read_text().splitlines()[:40])
        assert "Why one module" in head, f"{path} has {lines} lines; split it by concern or say why at its top"


def _notebook_imports(path: Path) -> list[str]:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return [line for c in cells for line in "".join(c["source"]).splitlines() if re.match(r"(import|from) ddval", line)]


STAGE_NOTEBOOKS = {
    "01_index": "data",
    "02_resize": "data",
    "03_train": "train",
    "04_valuation": "valuation",
    "05_token_economy": "economy",
}


@pytest.mark.parametrize("notebook, package", sorted(STAGE_NOTEBOOKS.items()))
def test_stage_notebooks_import_one_way(notebook, package):
    """``import ddval.notebook``, ``from ddval import <stage>``, ``from ddval.<stage> import views``, and the
    stage runs as ``<stage>.run_<name>_stage``."""
    path = repo_root() / "notebooks" / f"{notebook}.ipynb"
    imports = _notebook_imports(path)
    assert imports[:3] == [
        "import ddval.notebook",
        f"from ddval import {package}",
        f"from ddval.{package} import views",
    ]
    source = path.read_text()
    assert re.search(rf"{package}\.run_\w+_stage\(", source), f"{notebook} does not call {package}.run_<stage>_stage"


def test_the_linter_finds_nothing():
    """``ruff check`` (pyproject's [tool.ruff]: undefined names, unused imports, pycodestyle errors)."""
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", *LINTED],
        cwd=repo_root(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_code_is_formatted():
    """``ruff format --check``: the formatter owns layout and the 120-character lines."""
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *LINTED], cwd=repo_root(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


NUMPY_SECTION = re.compile(r"^\s*(Parameters|Returns|Raises|Yields|Attributes)\n\s*-{3,}\s*$", re.MULTILINE)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstrings_use_one_section_style(name):
    """Google style (``Args:``, ``Returns:``, ``Raises:``), not NumPy's underlined sections."""
    tree = ast.parse(_modules()[name].read_text())
    nodes = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module))
    ]
    offenders = [getattr(n, "name", name) for n in nodes if NUMPY_SECTION.search(ast.get_docstring(n) or "")]
    assert not offenders, f"{name}: NumPy-style docstring sections in {offenders}; use Args:/Returns:/Raises:"
