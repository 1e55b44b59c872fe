"""How close a valuation is to the ground truth, and confidence intervals over seeds."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from ddval import layout

__all__ = ["similarity", "similarity_frame", "mean_ci"]


def similarity(reference: pd.Series, estimate: pd.Series) -> dict[str, float]:
    """Cosine similarity, Pearson, Spearman and max abs error of ``estimate`` against ``reference``.

    Both series are indexed by institution name and aligned **by name** (the original code aligned by
    row order). Different or duplicated names, or missing values, are an error. Cosine is
    ``1 - scipy.spatial.distance.cosine`` (the paper's metric); a correlation that is undefined
    (fewer than 2 institutions, or a constant series) is NaN.
    """
    ref = _check_series(reference, "reference")
    est = _check_series(estimate, "estimate")
    if set(ref.index) != set(est.index):
        only_ref = sorted(map(str, set(ref.index) - set(est.index)))
        only_est = sorted(map(str, set(est.index) - set(ref.index)))
        raise ValueError(f"institutions differ: only in reference {only_ref}, only in estimate {only_est}")
    est = est.reindex(ref.index)
    a = ref.to_numpy(dtype=np.float64)
    b = est.to_numpy(dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cosine = 1.0 - distance.cosine(a, b) if np.any(a) and np.any(b) else math.nan
    return {
        "cosine": float(cosine),
        "pearson": _correlation(stats.pearsonr, a, b),
        "spearman": _correlation(stats.spearmanr, a, b),
        "max_abs_error": float(np.max(np.abs(a - b))),
    }


def similarity_frame(exact: pd.Series, estimates: Mapping[str, pd.Series], setting: str, seed: int) -> pd.DataFrame:
    """Rows of ``similarity.csv``: :func:`similarity` of every estimate (method → values by
    institution) to ``exact``; no rows when ``exact`` is empty (a setting without exact values)."""
    columns = layout.columns("similarity.csv")
    rows = []
    if not exact.empty:
        for method, estimate in estimates.items():
            sim = similarity(exact, estimate)
            rows.append({"setting": setting, "seed": seed, "method": method, **{k: float(sim[k]) for k in columns[3:]}})
    # typed even when empty: an untyped empty frame turns every column of a concatenation into `object`
    dtypes = {"setting": "str", "seed": "int64", "method": "str", **dict.fromkeys(columns[3:], "float64")}
    return pd.DataFrame(rows, columns=columns).astype(dtypes)


def mean_ci(x, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval (as the paper: sem * t.ppf).

    ``h = sem(x) * t.ppf((1 + confidence) / 2, n - 1)``; with one value the half-width is NaN.
    """
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"mean_ci got non-finite values: {arr[~np.isfinite(arr)].tolist()}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, math.nan
    half = float(stats.sem(arr) * stats.t.ppf((1.0 + confidence) / 2.0, arr.size - 1))
    return mean, half


def _check_series(s: pd.Series, name: str) -> pd.Series:
    if not isinstance(s, pd.Series):
        raise ValueError(f"{name} must be a pandas Series indexed by institution name, got {type(s).__name__}")
    if s.index.has_duplicates:
        dup = sorted(map(str, s.index[s.index.duplicated()].unique()))
        raise ValueError(f"{name} has duplicated institution names: {dup}")
    if s.empty:
        raise ValueError(f"{name} is empty")
    values = pd.to_numeric(s, errors="coerce")
    if values.isna().any():
        bad = sorted(map(str, s.index[values.isna()]))
        raise ValueError(f"{name} has missing or non-numeric values for: {bad}")
    return values.astype(np.float64)


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(fn(a, b)[0])
