"""How close a valuation is to the ground truth, and intervals over seeds that stay in a metric's range.

Metrics (:func:`similarity`, per setting and seed, aligned by institution name):

* ``cosine``: the paper's cosine similarity, ``1 - scipy.spatial.distance.cosine`` (in [-1, 1]);
* ``pearson``, ``spearman``: correlation and rank correlation (scipy; NaN when undefined);
* ``l1_share``: L1 distance of the normalised value shares, ``Σ_i |a_i / Σ|a| − b_i / Σ|b||`` (in
  [0, 2]; 0 = the same split of the total). Shares are taken of the absolute sum so that methods with
  negative values (λ-MR, GTG) still give a bounded number;
* ``max_abs_error``: the largest absolute difference of the raw values.

Over seeds (:func:`bootstrap_mean`): the mean with a **percentile bootstrap** interval, which lies
inside the range of the per-seed values and therefore inside the metric's range (a Student-t
interval of a bounded metric does not: the old λ-MR row read 18.3 ± 229.9 %). :func:`paired`
compares two rows seed by seed: wins out of seeds and the mean paired difference with its bootstrap
interval. :func:`mean_ci` (Student t) stays for unbounded quantities and the paper's formula.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from ddval import layout

__all__ = ["HIGHER_IS_BETTER", "bootstrap_mean", "mean_ci", "paired", "shares", "similarity", "similarity_frame"]

#: Direction of every metric of :func:`similarity`: True when a larger value is closer to the truth.
HIGHER_IS_BETTER: dict[str, bool] = {
    "cosine": True,
    "pearson": True,
    "spearman": True,
    "l1_share": False,
    "max_abs_error": False,
}


def shares(values: np.ndarray) -> np.ndarray:
    """``values / Σ|values|`` (NaN everywhere when all values are 0)."""
    v = np.asarray(values, dtype=np.float64)
    total = np.abs(v).sum()
    return v / total if total > 0 else np.full_like(v, math.nan)


def similarity(reference: pd.Series, estimate: pd.Series) -> dict[str, float]:
    """Cosine similarity, Pearson, Spearman, L1 distance of the shares and max abs error of
    ``estimate`` against ``reference`` (see the module docstring).

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
        "l1_share": float(np.abs(shares(a) - shares(b)).sum()),
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


def bootstrap_mean(x, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``x`` (NaNs left out) and its percentile-bootstrap interval ``(mean, low, high)``
    (``scipy.stats.bootstrap``, seeded: the same input gives the same interval). The bounds are
    means of resamples, so they stay within ``[min(x), max(x)]``. One value gives NaN bounds,
    none at all NaN everywhere; identical values give a zero-width interval."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, math.nan, math.nan
    if np.all(arr == arr[0]):
        return mean, mean, mean
    res = stats.bootstrap(
        (arr,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return mean, max(low, float(arr.min())), min(high, float(arr.max()))


def paired(a, b, higher_is_better: bool = True, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``a`` against ``b`` seed by seed (equal-length sequences; pairs with a NaN are left out):
    ``wins`` (seeds where ``a`` is strictly better), ``n`` (pairs compared), and the mean paired
    difference ``a − b`` with its bootstrap interval (``diff``, ``diff_low``, ``diff_high``)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired: {x.shape} values against {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    better = d > 0 if higher_is_better else d < 0
    mean, low, high = bootstrap_mean(d, confidence, seed=seed)
    return {"wins": int(better.sum()), "n": int(ok.sum()), "diff": mean, "diff_low": low, "diff_high": high}


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
