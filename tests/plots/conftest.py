"""Fixtures of the figure tests: the committed 3-seed fixture tables (tests/plots/fixtures/results)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ddval.summary import ResultTables

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    """Results root holding the fixture preset ``demo`` (read-only: render into tmp_path)."""
    return FIXTURES / "results"


@pytest.fixture(scope="session")
def tables(fixture_root: Path) -> ResultTables:
    return ResultTables.open(fixture_root, "demo")


@pytest.fixture
def copied_root(tmp_path: Path, fixture_root: Path) -> Path:
    """A writable copy of the fixture root."""
    dst = tmp_path / "results"
    shutil.copytree(fixture_root, dst)
    return dst
