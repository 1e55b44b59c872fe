"""Reading the datasets' source files: CSV tables checked field by field, and the images they list.

Shared by the three dataset readers (:mod:`ddval.data.nih`, :mod:`ddval.data.chexpert`,
:mod:`ddval.data.mimic`). Every check raises :class:`DataFormatError` naming the file, the line
(header = line 1) and the field, with the first offending values: a missing file or column, an
unparseable number or label code, an unknown code, a duplicate id. An image listed but absent is
an error or, with ``on_missing="skip"``, a row of the skipped-rows table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Plausible ages; values outside become unknown (NaN) and are counted.
AGE_RANGE = (0.0, 120.0)

#: Years per unit of an age written with a unit letter (``013M``).
AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}

#: Label codes of the CheXpert labeler (CheXpert, MIMIC-CXR): positive, negative, uncertain; blank is NaN.
LABEL_CODES = (1.0, 0.0, -1.0)

#: Columns of the skipped-rows table (``index_skipped.csv``).
SKIPPED_COLUMNS = ("dataset", "source", "line", "path", "reason")


class DataFormatError(ValueError):
    """An input file does not match its documented format; the message names file, line and field."""


def find_file(folder: Path, names: Iterable[str], what: str, hint: str = "") -> Path:
    """First of ``names`` (each also tried with ``.gz``) that exists in ``folder``."""
    tried = []
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            tried.append(str(candidate))
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"{what}: none of {tried} exists" + (f" ({hint})" if hint else ""))


def read_csv(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """Read a CSV(.gz) as strings (blank -> NaN) with a ``_line`` column (header = line 1);
    a missing file or required column is a :class:`DataFormatError` naming both."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV file: {exc}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {missing} (renamed or wrong file?); columns present: {list(frame.columns)}"
        )
    frame["_line"] = np.arange(2, len(frame) + 2)
    return frame


def fail(path: Path, frame: pd.DataFrame, bad: pd.Series, field: str, expected: str) -> None:
    """Raise naming the first offending rows of ``frame`` (``bad`` is a boolean mask)."""
    if not bad.any():
        return
    rows = frame.loc[bad, ["_line", field]].head(5)
    shown = "; ".join(f"line {ln}: {field}={val!r}" for ln, val in zip(rows["_line"], rows[field]))
    raise DataFormatError(f"{path}: {int(bad.sum())} row(s) with a bad {field!r} ({expected}): {shown}")


def numbers(path: Path, frame: pd.DataFrame, field: str, expected: str) -> pd.Series:
    """Column ``field`` as floats; a value that is present but not a number is an error."""
    values = pd.to_numeric(frame[field], errors="coerce")
    fail(path, frame, frame[field].notna() & values.isna(), field, expected)
    return values.astype(float)


def ages(path: Path, frame: pd.DataFrame, field: str) -> pd.Series:
    """Ages in years; implausible ones (outside :data:`AGE_RANGE`) become NaN and are counted in the log.

    NIH's older CSVs (and the Kaggle ``sample_labels.csv``) write ages with a unit: ``058Y`` years,
    ``013M`` months, ``001D`` days (``W``: weeks); they are converted to years.
    """
    text = frame[field].str.strip()
    unit = text.str.extract(r"^(\d+(?:\.\d+)?)\s*([YyMmWwDd])$")
    values = pd.to_numeric(text.where(unit[0].isna(), unit[0]), errors="coerce").astype(float)
    values = values * unit[1].str.upper().map(AGE_UNITS).fillna(1.0)
    fail(path, frame, frame[field].notna() & values.isna(), field, "a number of years (or with a unit Y/M/W/D)")
    odd = values.notna() & ((values < AGE_RANGE[0]) | (values > AGE_RANGE[1]))
    if odd.any():
        log.warning(
            "%s: %d implausible age(s) outside %s set to unknown (e.g. line %d: %s)",
            path,
            int(odd.sum()),
            AGE_RANGE,
            int(frame.loc[odd, "_line"].iloc[0]),
            frame.loc[odd, field].iloc[0],
        )
    return values.mask(odd)


def codes(path: Path, frame: pd.DataFrame, field: str, mapping: dict[str, str], allow_blank: bool = False) -> pd.Series:
    """Map a coded column; an unknown code (or a blank, unless allowed) is an error listing the known ones."""
    values = frame[field].str.strip()
    known = values.isin(list(mapping)) | (values.isna() & allow_blank)
    fail(path, frame, ~known, field, f"one of {sorted(mapping)}" + (" or blank" if allow_blank else ""))
    return values.map(mapping)


def no_duplicates(path: Path, frame: pd.DataFrame, fields: list[str]) -> None:
    """Raise naming the first rows that repeat the same ``fields``."""
    dup = frame.duplicated(fields, keep=False)
    if dup.any():
        rows = frame.loc[dup, ["_line"] + fields].head(6)
        shown = "; ".join(
            f"line {r['_line']}: " + ", ".join(f"{f}={r[f]!r}" for f in fields) for _, r in rows.iterrows()
        )
        raise DataFormatError(f"{path}: duplicate {'+'.join(fields)} ({int(dup.sum())} rows): {shown}")


def label_codes(path: Path, frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The CheXpert-labeler codes (1.0, 0.0, -1.0, NaN = blank) of each harmonised label
    (``columns`` maps label -> source column); any other value is an error."""
    out = {}
    for label, field in columns.items():
        values = numbers(path, frame, field, "1.0, 0.0, -1.0 or blank")
        fail(path, frame, values.notna() & ~values.isin(LABEL_CODES), field, "1.0, 0.0, -1.0 or blank")
        out[label] = values.to_numpy()
    return pd.DataFrame(out, index=frame.index)


def check_files(frame: pd.DataFrame, source: Path, on_missing: str, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (rows whose image exists, skipped rows); an absent image is an error unless
    ``on_missing == "skip"``."""
    present = existing(frame["path"])
    if present.all():
        return frame, empty_skipped()
    missing = frame.loc[~present]
    shown = "; ".join(f"line {ln}: {p}" for ln, p in zip(missing["_line"].head(5), missing["path"].head(5)))
    if on_missing == "error":
        raise DataFormatError(
            f"{source}: {len(missing)} image(s) listed but absent (set data.on_missing: skip to index without "
            f"them): {shown}"
        )
    log.warning("%s: skipping %d listed image(s) that are absent, e.g. %s", source, len(missing), shown)
    skipped = pd.DataFrame(
        {
            "dataset": dataset,
            "source": str(source),
            "line": missing["_line"].to_numpy(),
            "path": missing["path"].to_numpy(),
            "reason": "image file absent",
        }
    )
    return frame.loc[present].copy(), skipped


def empty_skipped() -> pd.DataFrame:
    """A skipped-rows table without rows."""
    return pd.DataFrame({c: [] for c in SKIPPED_COLUMNS}, dtype=object)


def existing(paths: pd.Series) -> np.ndarray:
    """Which files exist. Folders holding many of the files (NIH: 10^5 in one) are listed once;
    otherwise (MIMIC, CheXpert: one or two images per study folder) each file is checked, which
    costs fewer system calls. Plain Python sets: pandas' ``isin`` on Arrow strings is far slower."""
    plist = paths.tolist()
    folders = list(dict.fromkeys(p.rpartition("/")[0] for p in plist))
    if len(folders) * 4 > len(plist):
        return np.fromiter((os.path.isfile(p) for p in plist), dtype=bool, count=len(plist))
    found: set[str] = set()
    for folder in folders:
        try:
            found.update(f"{folder}/{name}" for name in os.listdir(folder))
        except OSError:
            continue
    return np.fromiter((p in found for p in plist), dtype=bool, count=len(plist))
