"""The committed fixture tables are exactly what tests/plots/fixtures/make_fixtures.py writes, and they
follow the column contract of docs/tables.md (as encoded in ddval.summary.TABLES)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from ddval import summary as S

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixtures_are_current(tmp_path, fixture_root):
    _load_script().main(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(fixture_root) for p in fixture_root.rglob("*") if p.is_file() and "figures" not in p.parts
    )
    assert fresh == committed
    for rel in fresh:
        if rel.suffix == ".csv":
            assert (tmp_path / rel).read_text() == (fixture_root / rel).read_text(), rel
        else:
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / rel), pd.read_parquet(fixture_root / rel))


def test_every_contract_table_has_a_fixture(tables):
    for name in S.TABLES:
        assert tables.paths(name), f"no fixture for {name}"
        assert tables.load(name) is not None  # columns checked against the contract on load
