"""compare.similarity / mean_ci: alignment by name, metric values, the paper's CI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ddval.valuation.compare import mean_ci, similarity


def test_alignment_by_institution_name_not_row_order():
    ref = pd.Series({"nih": 0.1, "chexpert": 0.2, "mimic": 0.3})
    est = pd.Series({"mimic": 0.3, "nih": 0.1, "chexpert": 0.2})  # same values, other row order
    out = similarity(ref, est)
    assert out["cosine"] == pytest.approx(1.0, abs=1e-15)
    assert out["pearson"] == pytest.approx(1.0)
    assert out["spearman"] == pytest.approx(1.0)
    assert out["max_abs_error"] == 0.0
    # the original's row-order comparison would have given a different cosine
    assert 1 - np.dot(ref.values, est.values) / np.linalg.norm(ref.values) ** 2 > 1e-3


def test_metric_values():
    ref = pd.Series({"a": 1.0, "b": 2.0, "c": 4.0})
    est = pd.Series({"a": 1.5, "b": 1.0, "c": 3.0})
    out = similarity(ref, est)
    a, b = ref.values, est.values
    assert out["cosine"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), abs=1e-15)
    assert out["pearson"] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert out["spearman"] == pytest.approx(0.5)
    assert out["max_abs_error"] == pytest.approx(1.0)
    assert out["l1_share"] == pytest.approx(np.abs(a / a.sum() - b / b.sum()).sum())
    assert list(out) == ["cosine", "pearson", "spearman", "l1_share", "max_abs_error"]


def test_name_mismatch_and_bad_values_are_errors():
    with pytest.raises(ValueError, match=r"only in reference \['c'\], only in estimate \['d'\]"):
        similarity(pd.Series({"a": 1.0, "c": 2.0}), pd.Series({"a": 1.0, "d": 2.0}))
    with pytest.raises(ValueError, match="duplicated"):
        similarity(pd.Series([1.0, 2.0], index=["a", "a"]), pd.Series([1.0, 2.0], index=["a", "b"]))
    with pytest.raises(ValueError, match="missing or non-numeric.*'b'"):
        similarity(pd.Series({"a": 1.0, "b": np.nan}), pd.Series({"a": 1.0, "b": 2.0}))


def test_undefined_correlations_are_nan():
    out = similarity(pd.Series({"a": 1.0}), pd.Series({"a": 2.0}))
    assert out["cosine"] == pytest.approx(1.0) and math.isnan(out["pearson"]) and math.isnan(out["spearman"])
    out = similarity(pd.Series({"a": 1.0, "b": 1.0}), pd.Series({"a": 2.0, "b": 3.0}))
    assert math.isnan(out["pearson"])


def test_mean_ci_matches_the_papers_formula():
    x = [0.91, 0.95, 0.93, 0.97]
    m, h = mean_ci(x)
    assert m == pytest.approx(np.mean(x))
    assert h == pytest.approx(stats.sem(x) * stats.t.ppf(0.975, len(x) - 1))
    assert h == pytest.approx(np.std(x, ddof=1) / 2 * 3.182446305284263, rel=1e-9)  # t_{0.975, 3}
    m1, h1 = mean_ci([0.5])
    assert m1 == 0.5 and math.isnan(h1)
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1.0, np.nan])
