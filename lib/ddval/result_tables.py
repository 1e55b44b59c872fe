"""Finding, checking and loading the result tables of a preset (all seeds and settings at once).

The stages write one tidy table per seed and setting (``docs/tables.md``) at
``<root>/<preset>/seed-<s>/<setting>/<stage>/<file>``. :class:`ResultTables` finds them, checks their
columns and stacks them with ``seed`` and ``setting`` columns; :mod:`ddval.summary` (which re-exports
these names) reduces them to the numbers behind every figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.config import preset_name
from ddval.display import order_settings
from ddval.layout import TABLES, checkout_results
from ddval.store import read_table

__all__ = ["ResultTables", "check_table", "shipped_results_root"]


def shipped_results_root() -> Path:
    """``results/`` of the checkout the current directory is in: the result tables committed with the
    repository (:func:`ddval.layout.checkout_results`; not where the package is installed)."""
    return checkout_results()


def _seed_key(path: Path) -> tuple[int, str]:
    seed = path.name.removeprefix("seed-")
    return (int(seed), "") if seed.isdigit() else (1 << 62, seed)


def check_table(
    frame: pd.DataFrame, path: str | os.PathLike, required: Sequence[str], numeric: Sequence[str] = ()
) -> None:
    """Raise ``ValueError`` naming ``path``, the row and the field when a required column is missing or a
    numeric field does not parse as a number."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(required)} (docs/tables.md)")
    for col in (c for c in numeric if c in frame.columns):  # optional columns are checked when present
        parsed = pd.to_numeric(frame[col], errors="coerce")
        bad = parsed.isna() & frame[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: row {row + 1}, field {col!r}: {frame[col].iloc[row]!r} is not a number")


@dataclass(frozen=True)
class ResultTables:
    """The result tables of one preset under a results root (read-only; figures go to ``figures_dir``)."""

    root: Path
    preset: str

    @classmethod
    def open(cls, results_root: str | os.PathLike | None, preset: str) -> "ResultTables":
        """``results_root`` None means the tables shipped in the repository (:func:`shipped_results_root`),
        not ``$DDVAL_RESULTS``: the figures notebook must give the same numbers on every fresh clone."""
        root = Path(results_root).expanduser().resolve() if results_root else shipped_results_root()
        return cls(root, preset_name(preset))  # a preset given as a YAML file is filed under its name

    @classmethod
    def open_run_or_shipped(cls, results_root: str | os.PathLike | None, preset: str) -> "ResultTables":
        """The tables of ``preset`` under ``results_root`` when a run of it is there, else the shipped ones
        (notebook 06 shows the benchmark's headline beside any run; a run of the benchmark preset into the
        same root shows that run instead)."""
        run = cls.open(results_root, preset)
        return run if any(run.preset_dir.glob("seed-*")) else cls.open(None, preset)

    @property
    def preset_dir(self) -> Path:
        return self.root / self.preset

    @property
    def figures_dir(self) -> Path:
        """``<root>/<preset>/figures`` (same place as ``ddval.store.figures_dir``)."""
        return self.preset_dir / "figures"

    def pattern(self, name: str) -> str:
        """Where ``name`` is looked for, relative to the results root (for messages)."""
        return f"{self.preset}/seed-*/*/{TABLES[name].stage}/{name}"

    def paths(self, name: str, settings: Iterable[str] | None = None) -> list[Path]:
        """Files of table ``name`` over all seeds and settings, in seed order then setting name."""
        if name not in TABLES:
            raise KeyError(f"unknown result table {name!r}; known: {sorted(TABLES)}")
        stage = TABLES[name].stage
        wanted = None if settings is None else set(settings)
        found = []
        for seed_dir in sorted(self.preset_dir.glob("seed-*"), key=_seed_key):
            for path in sorted(seed_dir.glob(f"*/{stage}/{name}")):
                if wanted is None or path.parts[-3] in wanted:
                    found.append(path)
        return found

    def load(self, name: str, settings: Iterable[str] | None = None) -> pd.DataFrame | None:
        """All seeds' and settings' rows of table ``name`` with ``seed`` and ``setting`` columns, or None
        when no file exists. A file whose own ``seed``/``setting`` disagrees with its folder is an error."""
        frames = []
        for path in self.paths(name, settings):
            frame = read_table(path)
            table = TABLES[name]
            check_table(frame, path, table.required, table.numeric)
            seed, setting = int(path.parts[-4].removeprefix("seed-")), path.parts[-3]
            frame = _stamp(frame, path, "seed", seed)
            frame = _stamp(frame, path, "setting", setting)
            frames.append(frame)
        if not frames:
            return None
        # A header-only file (a setting without rows, e.g. no exact values under label flip) reads as
        # `object` columns, and concatenating it would turn every numeric column into `object`.
        return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)

    def inventory(self) -> pd.DataFrame:
        """One row per known table: how many files, which seeds and settings (for the notebook's first cell)."""
        rows = []
        for name in TABLES:
            paths = self.paths(name)
            seeds = sorted({int(p.parts[-4].removeprefix("seed-")) for p in paths})
            settings = order_settings(p.parts[-3] for p in paths)
            rows.append((name, len(paths), " ".join(map(str, seeds)) or "-", " ".join(settings) or "-"))
        return pd.DataFrame(rows, columns=["table", "files", "seeds", "settings"])


def _stamp(frame: pd.DataFrame, path: Path, column: str, value: object) -> pd.DataFrame:
    if column not in frame.columns:
        frame = frame.copy()
        frame.insert(0, column, value)
        return frame
    differs = frame[column].astype(str) != str(value)
    if differs.any():
        row = int(np.flatnonzero(differs.to_numpy())[0])
        raise ValueError(
            f"{path}: row {row + 1}, field {column!r}: {frame[column].iloc[row]!r} disagrees with the folder ({value!r})"
        )
    return frame
