"""The README's results tables, generated from the shipped result tables, never typed by hand.

A block of ``README.md`` between ``<!-- results:<table>:<preset> -->`` and ``<!-- /results -->`` holds
the Markdown form of table ``<table>`` (:data:`TABLES`) computed from ``results/<preset>/``. Regenerate
every block after a new run with ``python -m ddval.readme``; ``python -m ddval.readme --check`` (and
``tests/valpipe/test_readme.py``) fails when a block differs from what the shipped tables give.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ddval import scorecard
from ddval.config import repo_root
from ddval.summary import ResultTables

_BLOCK = re.compile(
    r"(<!-- results:(?P<table>[a-z_]+):(?P<preset>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S
)


def _similarity(tables: ResultTables) -> pd.DataFrame:
    sim = tables.load("similarity.csv")
    if sim is None or sim.empty:
        raise FileNotFoundError(f"{tables.preset_dir}: no similarity.csv rows")
    return sim


def _headline(tables: ResultTables) -> pd.DataFrame:
    return scorecard.headline(_similarity(tables)).reset_index()


def _wins(tables: ResultTables) -> pd.DataFrame:
    return scorecard.wins_table(_similarity(tables)).reset_index()


def _loaded(tables: ResultTables, name: str) -> pd.DataFrame:
    frame = tables.load(name)
    if frame is None:
        raise FileNotFoundError(f"{tables.preset_dir}: no {name}")
    return frame


#: Every table a README block can hold.
TABLES: dict[str, Callable[[ResultTables], pd.DataFrame]] = {
    "headline": _headline,
    "wins": _wins,
    "stops": lambda t: scorecard.stop_reasons(_loaded(t, "replicates.csv")),
    "lambda": lambda t: scorecard.sensitivity(_loaded(t, "lambda_sensitivity.csv"), "lambda"),
    "or_batchnorm": lambda t: scorecard.sensitivity(_loaded(t, "or_batchnorm.csv"), "batchnorm"),
}


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame`` (index dropped; cells as text, ``|`` escaped)."""

    def cell(v) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def render(table: str, preset: str, results_root=None) -> str:
    """The Markdown of ``table`` for ``preset`` (``results_root`` None: the shipped tables)."""
    if table not in TABLES:
        raise KeyError(f"unknown README table {table!r}; known: {sorted(TABLES)}")
    return markdown(TABLES[table](ResultTables.open(results_root, preset)))


def readme_path() -> Path:
    """``<repo>/README.md``."""
    return repo_root() / "README.md"


def stale_blocks(path: str | Path | None = None, results_root=None) -> list[str]:
    """``"<table>:<preset>"`` of every block whose text differs from :func:`render`."""
    text = Path(path or readme_path()).read_text()
    return [
        f"{m['table']}:{m['preset']}"
        for m in _BLOCK.finditer(text)
        if m["body"] != render(m["table"], m["preset"], results_root)
    ]


def update(path: str | Path | None = None, results_root=None) -> int:
    """Rewrite every block of the README from the result tables; returns how many blocks there are."""
    path = Path(path or readme_path())
    text = path.read_text()
    new, n = _BLOCK.subn(lambda m: m.group(1) + render(m["table"], m["preset"], results_root) + m.group(5), text)
    path.write_text(new)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddval.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report blocks that differ (exit 1 if any)")
    parser.add_argument(
        "--results-root",
        default=None,
        help="results root to read (default: the checkout's shipped results/, which the test checks)",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_blocks(results_root=args.results_root)
        for name in stale:
            print(f"README block {name} differs from the result tables; run python -m ddval.readme")
        return 1 if stale else 0
    print(f"{update(results_root=args.results_root)} README result blocks regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
