"""From data-point values up to patients and institutions (DDVal's hierarchy).

* A data point's value is the mean over the 8 labels of its KNN-Shapley values (one binary game
  per label): ``v̄_j = (1/8) Σ_ℓ s^ℓ_j``.
* The values are scaled as the paper's institution values, so that the whole hierarchy shares
  the grand coalition's gain over a random classifier: with ``U`` the grand coalition's utility
  (mean AUROC, from the training stage) and ``c = (U − 0.5) / Σ_j v̄_j``, the stored value of point
  ``j`` is ``c · v̄_j`` (and ``c · s^ℓ_j`` per label). Then
  ``Σ points = Σ patients = Σ institutions = U − 0.5``; an institution's value is
  ``(U − 0.5) · Σ_{j∈D_c} v̄_j / Σ_j v̄_j`` (paper §2.3). Cosine similarity does not see ``c``.
* A patient's value is the sum of its scans' values, an institution's the sum of its patients'.
  Everything is grouped by institution and patient *id* (the original sliced fixed index ranges,
  which dropped points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ddval.config import LABELS

if TYPE_CHECKING:
    from ddval.valuation.pooled import PooledFeatures

#: The utility of a random classifier (the empty coalition's worth).
BASELINE_UTILITY = 0.5


def efficiency_scale(point_means: np.ndarray, grand_utility: float, baseline: float = BASELINE_UTILITY) -> float:
    """``(U − baseline) / Σ_j v̄_j``: the factor that makes the point values add up to the grand
    coalition's gain. The KNN values sum to the pooled KNN accuracy, which is positive whenever any
    test point has a same-label neighbour; a non-positive sum cannot be rescaled and is an error."""
    total = float(np.sum(point_means, dtype=np.float64))
    if not np.isfinite(grand_utility):
        raise ValueError(f"grand coalition utility is {grand_utility}; cannot scale the values")
    if total <= 0:
        raise ValueError(f"the data-point values sum to {total} (<= 0); cannot scale them to U(grand) - {baseline}")
    return (float(grand_utility) - baseline) / total


def point_table(
    label_values: np.ndarray,
    *,
    institution: Sequence[str],
    scan_id: Sequence[str],
    patient_id: Sequence[str],
    sex: Sequence[str],
    age: Sequence[float],
    n_flipped: Sequence[int] | None,
    grand_utility: float,
) -> pd.DataFrame:
    """One row per training scan (``docs/tables.md``, ``point_values.parquet``): ``institution,
    scan_id, patient_id, sex, age, n_flipped, value, value_<label>`` with the scaled values."""
    label_values = np.asarray(label_values, dtype=np.float64)
    if label_values.ndim != 2 or label_values.shape[1] != len(LABELS):
        raise ValueError(f"label_values must be (N, {len(LABELS)}), got {label_values.shape}")
    scale = efficiency_scale(label_values.mean(axis=1), grand_utility)
    scaled = label_values * scale
    n = len(scaled)
    frame = pd.DataFrame(
        {
            "institution": np.asarray(institution, dtype=str),
            "scan_id": np.asarray(scan_id, dtype=str),
            "patient_id": np.asarray(patient_id, dtype=str),
            "sex": np.asarray(sex, dtype=str),
            "age": np.asarray(age, dtype=np.float64),
            "n_flipped": np.zeros(n, dtype=np.int64) if n_flipped is None else np.asarray(n_flipped, dtype=np.int64),
            "value": scaled.mean(axis=1),
        }
    )
    if len(frame) != n:
        raise ValueError("point_table: every column needs one entry per train point")
    for k, label in enumerate(LABELS):
        frame[f"value_{label}"] = scaled[:, k]
    return frame


def pooled_point_table(
    label_values: np.ndarray, pooled: PooledFeatures, grand_utility: float, n_flipped: Sequence[int] | None = None
) -> pd.DataFrame:
    """:func:`point_table` of the pooled training scans, with their institution, ids, sex and age.

    Args:
        label_values: ``(N, 8)`` values of the pooled training scans, in ``pooled``'s row order.
        pooled: The pooled features the values were computed from.
        grand_utility: The grand coalition's utility (the efficiency scale's target).
        n_flipped: Flipped labels per scan; None for none.

    Returns:
        The ``point_values.parquet`` table.
    """
    return point_table(
        label_values,
        institution=pooled.institution,
        scan_id=pooled.scan_id,
        patient_id=pooled.patient_id,
        sex=pooled.sex,
        age=pooled.age,
        n_flipped=n_flipped,
        grand_utility=grand_utility,
    )


def patient_table(points: pd.DataFrame) -> pd.DataFrame:
    """``institution, patient_id, n_scans, value`` (sum over the patient's scans), in order of first
    appearance (partition order)."""
    grouped = points.groupby(["institution", "patient_id"], sort=False)
    return grouped["value"].agg(n_scans="size", value="sum").reset_index()


def institution_values(points: pd.DataFrame, institutions: Sequence[str]) -> pd.Series:
    """Value per institution (sum over its points), indexed by ``institutions`` (0 for one without
    points); a point of an unknown institution is an error."""
    unknown = sorted(set(points["institution"]) - set(institutions))
    if unknown:
        raise ValueError(f"points of unknown institution(s) {unknown}; known: {list(institutions)}")
    sums = points.groupby("institution", sort=False)["value"].sum()
    return sums.reindex(list(institutions), fill_value=0.0).rename("value")
