"""How result tables look to a reader: one place for display names, units, rounding and row order.

Every notebook shows its tables through :func:`table` (``ddval.notebook.show`` and the figures of
notebook 06 call it), so that a quantity reads the same everywhere:

- **display names** as on the figures: ``nih`` -> ``NIH``, ``lambda_mr`` -> ``λ-MR``, ``noniid`` ->
  ``non-IID`` (in the ``setting``/``method``/``institution`` columns, index levels and pivoted headers);
- **settings in display order** (non-IID, IID, label flip, then the others), never alphabetical;
- **cosine similarity and flip rates in percent**: a ``cosine`` or ``flip_rate`` column (a fraction, as
  the result tables store it) becomes ``cosine_pct`` / ``flip_rate_pct``; ``*_pct`` columns are percent
  already;
- **counts as integers** (``n_*``, ``round``, ``seed`` when every value is whole);
- **gas as integers with thousands separators** (any column with ``gas`` in its name);
- other numbers **rounded** to ``digits`` decimals; numeric columns that arrived as ``object`` (e.g. after
  ``pd.concat`` with an empty frame) are made numeric again first, so rounding applies to them.

The returned frame is for display only (gas cells are strings); the numbers on disk keep their raw
names and units.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.layout import METHODS, REFERENCE_SPLITS, checkout_root

#: Display order of the settings that commonly occur; others follow alphabetically.
SETTING_ORDER: tuple[str, ...] = ("quality", "noniid", "iid", "labelflip")

METHOD_LABELS = {
    "exact": "Exact (canonical)",
    "ddval": "DDVal",
    "or": "OR",
    "mr": "MR",
    "lambda_mr": "λ-MR",
    "gtg": "GTG-Shapley",
    "safe": "SaFE",
    "equal_split": "Equal split",
    "size_split": "Size split",
    "positives_split": "Positives split",
    "noise_ceiling": "Noise ceiling",
}
SETTING_LABELS = {"quality": "quality", "noniid": "non-IID", "iid": "IID", "labelflip": "label flip"}
INSTITUTION_LABELS = {"nih": "NIH", "chexpert": "CheXpert", "mimic": "MIMIC-CXR"}
PAYOUT_LABELS = {"transfer_loop": "Transfer loop (push)", "merkle_claim": "Merkle claims (pull)"}

#: Which labels apply to the values of a column (or index level) of that name.
COLUMN_LABELS: dict[str, Mapping[str, str]] = {
    "method": {**METHOD_LABELS, **PAYOUT_LABELS},
    "setting": SETTING_LABELS,
    "institution": INSTITUTION_LABELS,
    "dataset": INSTITUTION_LABELS,
    "actor": INSTITUTION_LABELS,
}

#: Fractions shown in percent, as on the figures: column name -> displayed name (values × 100).
PERCENT_COLUMNS = {"cosine": "cosine_pct", "flip_rate": "flip_rate_pct"}

#: Count columns besides ``n_*`` (shown as integers when every value is whole).
COUNT_COLUMNS = frozenset({"round", "seed", "files", "members"})

#: Placeholder for a missing gas amount.
MISSING = "–"


def order_settings(settings: Iterable[str]) -> list[str]:
    """Settings in display order: :data:`SETTING_ORDER` first, then the others alphabetically."""
    settings = list(dict.fromkeys(settings))
    known = [s for s in SETTING_ORDER if s in settings]
    return known + sorted(s for s in settings if s not in SETTING_ORDER)


def order_methods(methods: Iterable[str]) -> list[str]:
    """Methods in display order: :data:`ddval.layout.METHODS` first, then the reference splits
    (:data:`ddval.layout.REFERENCE_SPLITS`), then the others alphabetically."""
    methods = list(dict.fromkeys(methods))
    known = (*METHODS, *REFERENCE_SPLITS)
    return [m for m in known if m in methods] + sorted(m for m in methods if m not in known)


def label(name: object, labels: Mapping[str, str]) -> str:
    """Display name of a method/setting/institution: the known label, else ``client3`` -> ``Client 3``."""
    name = str(name)
    if name in labels:
        return labels[name]
    head = name.rstrip("0123456789")
    return f"{head.capitalize()} {name[len(head) :]}" if head != name and head else name


def plus_minus(mean: float, half: float, digits: int) -> str:
    """``"mean ± half"`` with ``digits`` decimals (only the mean when ``half`` is NaN: a single seed)."""
    if math.isnan(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def location(path: str | os.PathLike) -> str:
    """Where ``path`` is, for a reader: relative to the repository root when it lies in the checkout the
    current directory is in (said so), else absolute."""
    path = Path(path).resolve()
    checkout = checkout_root()
    if checkout is not None and path.is_relative_to(checkout):
        return f"{path.relative_to(checkout).as_posix()} (relative to the repository root)"
    return str(path)


def table(frame: pd.DataFrame | pd.Series, digits: int = 4) -> pd.DataFrame | pd.Series:
    """``frame`` as a reader should see it (see the module docstring); the input is not modified.

    Args:
        frame: a result table, summary or pivot (a Series is shown like a one-column table).
        digits: decimals of the numbers that are neither counts nor gas.

    Returns:
        A new frame (or Series) for display.
    """
    if isinstance(frame, pd.Series):
        name = frame.name if frame.name is not None else 0
        shown = table(frame.to_frame(name), digits)
        return shown.iloc[:, 0]
    out = _sort_by_setting(frame.copy())
    for col in list(out.columns):
        out[col] = _numeric_again(out[col])
    out = _percent(out)
    for col in list(out.columns):
        out[col] = _format_column(str(col), out[col], digits)
    out.index = _label_axis(out.index)
    out.columns = _label_axis(out.columns)
    return out


# --------------------------------------------------------------------------------------------
# The steps of `table`
# --------------------------------------------------------------------------------------------


def _numeric_again(col: pd.Series) -> pd.Series:
    """An ``object`` column whose every value is a number (not a bool) as a numeric column."""
    if col.dtype != object:
        return col
    values = col.dropna()
    if values.empty or values.map(lambda v: isinstance(v, (bool, np.bool_))).any():
        return col
    parsed = pd.to_numeric(col, errors="coerce")
    return parsed if parsed.notna().sum() == len(values) else col


def _percent(frame: pd.DataFrame) -> pd.DataFrame:
    renames = {}
    for col, shown in PERCENT_COLUMNS.items():
        if col in frame.columns and shown not in frame.columns and pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col] * 100.0
            renames[col] = shown
    return frame.rename(columns=renames)


def _is_count(name: str) -> bool:
    return name.startswith("n_") or name in COUNT_COLUMNS


def _format_column(name: str, col: pd.Series, digits: int) -> pd.Series:
    if name in COLUMN_LABELS and not pd.api.types.is_numeric_dtype(col):
        return col.map(lambda v: v if pd.isna(v) else label(v, COLUMN_LABELS[name]))
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col
    values = col.to_numpy(dtype=float)
    if "gas" in name:
        return col.map(_thousands)
    if _is_count(name) and _whole(values):
        return col.astype("Int64")
    if pd.api.types.is_float_dtype(col):
        return col.round(digits)
    return col


def _whole(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))


def _thousands(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{round(float(value)):,}"


def _sort_by_setting(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the settings' display order (stable: the order within a setting stays)."""
    if "setting" in frame.columns:
        key = frame["setting"]
    elif "setting" in (frame.index.names or []):
        key = pd.Series(frame.index.get_level_values("setting"), index=frame.index)
    else:
        return frame
    rank = {s: i for i, s in enumerate(order_settings(key.dropna().astype(str)))}
    order = np.argsort(key.astype(str).map(rank).fillna(len(rank)).to_numpy(), kind="stable")
    out = frame.iloc[order]
    # a default row number means nothing to a reader: number the rows as they are shown
    return out.reset_index(drop=True) if isinstance(frame.index, pd.RangeIndex) else out


def _label_axis(axis: pd.Index) -> pd.Index:
    """Display names in the levels named setting/method/institution, and in a header of known keys
    (a pivot's columns: methods or settings)."""
    if isinstance(axis, pd.MultiIndex):
        levels = [_label_values(axis.get_level_values(i), axis.names[i]) for i in range(axis.nlevels)]
        return pd.MultiIndex.from_arrays(levels, names=axis.names)
    return pd.Index(_label_values(axis, axis.name), name=axis.name)


def _label_values(values: pd.Index, name: object) -> list:
    labels = COLUMN_LABELS.get(str(name)) if name is not None else None
    if labels is None:
        keys = [v for v in values if isinstance(v, str)]
        if keys and len(keys) == len(values):
            labels = next((m for m in (METHOD_LABELS, SETTING_LABELS) if all(k in m for k in keys)), None)
    if labels is None:
        return list(values)
    return [label(v, labels) if isinstance(v, str) else v for v in values]
