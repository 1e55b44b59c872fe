"""Points -> patients -> institutions: sums by id and the efficiency scaling to U(grand) - 0.5."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ddval.config import LABELS
from ddval.valuation.hierarchy import efficiency_scale, institution_values, patient_table, point_table


def _points(label_values, institution, patient, utility=0.8, flipped=None):
    n = len(label_values)
    return point_table(
        label_values,
        institution=institution,
        scan_id=[f"s{i}" for i in range(n)],
        patient_id=patient,
        sex=["F"] * n,
        age=np.full(n, 50.0),
        n_flipped=flipped,
        grand_utility=utility,
    )


def test_tables_have_the_contract_columns():
    rng = np.random.default_rng(0)
    points = _points(
        rng.random((6, 8)), ["a", "b"] * 3, ["p1", "p2", "p1", "p3", "p4", "p3"], flipped=[0, 1, 0, 0, 2, 0]
    )
    assert list(points.columns) == [
        "institution",
        "scan_id",
        "patient_id",
        "sex",
        "age",
        "n_flipped",
        "value",
        *[f"value_{l}" for l in LABELS],
    ]
    assert points["n_flipped"].tolist() == [0, 1, 0, 0, 2, 0]
    np.testing.assert_allclose(points["value"], points[[f"value_{l}" for l in LABELS]].mean(axis=1))
    patients = patient_table(points)
    assert list(patients.columns) == ["institution", "patient_id", "n_scans", "value"]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**31 - 1), st.floats(0.3, 1.0))
def test_hierarchy_sums_and_efficiency(n, n_inst, seed, utility):
    rng = np.random.default_rng(seed)
    values = rng.random((n, 8)) + 0.01
    institution = rng.choice([f"i{k}" for k in range(n_inst)], n)  # interleaved: sums must go by id
    patient = [f"{inst}-p{rng.integers(3)}" for inst in institution]
    points = _points(values, institution, patient, utility)
    patients = patient_table(points)
    names = [f"i{k}" for k in range(n_inst)]
    inst = institution_values(points, names)
    assert np.isclose(points["value"].sum(), utility - 0.5)
    assert np.isclose(patients["value"].sum(), utility - 0.5) and patients["n_scans"].sum() == n
    assert np.isclose(inst.sum(), utility - 0.5)
    # by id, not by slices: each institution's value is the sum over its own points / patients
    for name in names:
        mask = institution == name
        share = values[mask].mean(axis=1).sum() / values.mean(axis=1).sum()
        assert np.isclose(inst[name], share * (utility - 0.5))
        assert np.isclose(patients.loc[patients["institution"] == name, "value"].sum(), inst[name])
    for (i, p), group in points.groupby(["institution", "patient_id"]):
        row = patients[(patients["institution"] == i) & (patients["patient_id"] == p)]
        assert (
            len(row) == 1
            and np.isclose(row["value"].iloc[0], group["value"].sum())
            and row["n_scans"].iloc[0] == len(group)
        )


def test_scaling_errors_and_unknown_institutions():
    with pytest.raises(ValueError, match="sum to"):
        efficiency_scale(np.zeros(3), 0.8)
    with pytest.raises(ValueError, match="utility"):
        efficiency_scale(np.ones(3), float("nan"))
    points = _points(np.ones((2, 8)), ["a", "x"], ["p", "q"])
    with pytest.raises(ValueError, match="unknown institution"):
        institution_values(points, ["a", "b"])
    assert institution_values(points, ["a", "x", "b"]).tolist() == pytest.approx([0.15, 0.15, 0.0])
