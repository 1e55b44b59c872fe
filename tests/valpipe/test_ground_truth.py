"""Ground truth from replicates and its noise ceiling; reference splits; bounded statistics over seeds."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddval.layout import REFERENCE_SPLITS
from ddval.valuation import ground_truth
from ddval.valuation.compare import bootstrap_mean, paired, shares, similarity
from ddval.valuation.references import reference_allocations
from ddval.valuation.shapley import exact_shapley

PLAYERS = ["a", "b", "c"]


def _utilities(rng, noise=0.02):
    """Replicate utilities of a 3-player game: a fixed game plus training noise (v(∅) = 0.5 in all)."""
    base = {
        frozenset(c): 0.5 + 0.05 * len(c) + 0.03 * ("a" in c)
        for k in range(4)
        for c in itertools.combinations(PLAYERS, k)
    }
    return {c: (u if not c else u + rng.normal(0, noise)) for c, u in base.items()}


def test_half_splits_are_disjoint_equal_and_complete():
    for r in range(1, 7):
        splits = ground_truth.half_splits(list(range(r)))
        half = r // 2
        for a, b in splits:
            assert len(a) == len(b) == half and not set(a) & set(b)
        # every unordered pair of disjoint halves once
        expected = (
            {
                frozenset((a, b))
                for a in itertools.combinations(range(r), half)
                for b in itertools.combinations([x for x in range(r) if x not in a], half)
            }
            if half
            else set()
        )
        assert {frozenset(p) for p in splits} == expected and len(splits) == len(expected)
    assert ground_truth.half_splits([0]) == [] and len(ground_truth.half_splits([0, 1, 2, 3])) == 3


def test_ground_truth_is_the_mean_of_the_replicates_exact_values():
    rng = np.random.default_rng(0)
    reps = {r: _utilities(rng) for r in range(4)}
    truth = ground_truth.exact_values(reps, PLAYERS)
    per_rep = np.mean([[exact_shapley(reps[r], PLAYERS)[p] for p in PLAYERS] for r in reps], axis=0)
    np.testing.assert_allclose(truth.to_numpy(), per_rep, atol=1e-14)  # Shapley is linear in the utilities


def test_noise_ceiling_is_the_mean_agreement_of_disjoint_halves_brute_force():
    rng = np.random.default_rng(1)
    reps = {r: _utilities(rng) for r in range(4)}
    got = ground_truth.noise_ceiling(reps, PLAYERS)
    brute = []
    for a, b in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        va = pd.Series(exact_shapley({c: np.mean([reps[r][c] for r in a]) for c in reps[0]}, PLAYERS))
        vb = pd.Series(exact_shapley({c: np.mean([reps[r][c] for r in b]) for c in reps[0]}, PLAYERS))
        brute.append(similarity(va, vb)["cosine"])
    assert got["cosine"] == pytest.approx(np.mean(brute), abs=1e-12)
    assert all(math.isnan(v) for v in ground_truth.noise_ceiling({0: reps[0]}, PLAYERS).values())
    # noiseless replicates agree perfectly; noisier ones less
    quiet = {r: _utilities(np.random.default_rng(9), noise=0.0) for r in range(3)}
    assert ground_truth.noise_ceiling(quiet, PLAYERS)["cosine"] == pytest.approx(1.0)
    loud = {r: _utilities(np.random.default_rng(r), noise=0.2) for r in range(3)}
    assert ground_truth.noise_ceiling(loud, PLAYERS)["cosine"] < got["cosine"]


def test_replicates_must_list_the_same_coalitions():
    rng = np.random.default_rng(2)
    a, b = _utilities(rng), _utilities(rng)
    b.pop(frozenset({"a", "b"}))
    with pytest.raises(ValueError, match=r"replicate 1 lists other coalitions.*a\+b"):
        ground_truth.exact_values({0: a, 1: b}, PLAYERS)


def test_stop_reason():
    assert ground_truth.stop_reason([1.0, 0.8, 0.9, 0.95], patience=2, max_rounds=10) == "patience"
    assert ground_truth.stop_reason([1.0, 0.9, 0.8, 0.7], patience=2, max_rounds=4) == "round_cap"
    assert (
        ground_truth.stop_reason([1.0, 0.8, 0.9, 0.95], patience=2, max_rounds=4) == "patience"
    )  # both: the rule fired
    with pytest.raises(ValueError, match="neither rule"):
        ground_truth.stop_reason([1.0, 0.9], patience=2, max_rounds=4)


def test_reference_splits_share_the_total_by_count_size_and_positives():
    part = pd.DataFrame(
        {
            "institution": ["a", "a", "a", "b", "c", "c", "a"],
            "split": ["train"] * 6 + ["test"],
            "atelectasis": [1, 0, 0, 1, 1, 1, 1],
            "cardiomegaly": [0, 0, 0, 0, 1, 0, 1],
        }
    )
    for label in ("consolidation", "edema", "no_finding", "pleural_effusion", "pneumonia", "pneumothorax"):
        part[label] = 0
    refs = reference_allocations(part, PLAYERS, total=0.3)
    assert list(refs) == list(REFERENCE_SPLITS)
    np.testing.assert_allclose(refs["equal_split"], [0.1, 0.1, 0.1])
    np.testing.assert_allclose(refs["size_split"], [0.15, 0.05, 0.1])  # 3, 1, 2 training scans (test rows ignored)
    np.testing.assert_allclose(refs["positives_split"], [0.06, 0.06, 0.18])  # 1, 1, 3 positive labels
    with pytest.raises(ValueError, match="positives_split"):
        reference_allocations(part.assign(atelectasis=0, cardiomegaly=0), PLAYERS, 0.3)


def test_l1_share_distance():
    same = similarity(pd.Series({"a": 1.0, "b": 3.0}), pd.Series({"a": 2.0, "b": 6.0}))
    assert same["l1_share"] == pytest.approx(0.0)
    opposite = similarity(pd.Series({"a": 1.0, "b": 0.0}), pd.Series({"a": 0.0, "b": 1.0}))
    assert opposite["l1_share"] == pytest.approx(2.0)
    np.testing.assert_allclose(shares([1.0, -1.0, 2.0]), [0.25, -0.25, 0.5])
    assert np.isnan(shares([0.0, 0.0])).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2, max_size=12))
def test_bootstrap_interval_stays_inside_the_values(x):
    mean, low, high = bootstrap_mean(x)
    assert min(x) - 1e-12 <= low <= mean + 1e-12 and mean - 1e-12 <= high <= max(x) + 1e-12
    assert bootstrap_mean(x) == (mean, low, high)  # seeded: the same interval every time


def test_bootstrap_degenerate_inputs():
    assert bootstrap_mean([0.3])[0] == 0.3 and math.isnan(bootstrap_mean([0.3])[1])
    assert all(math.isnan(v) for v in bootstrap_mean([]))
    assert bootstrap_mean([0.5, 0.5, np.nan]) == (0.5, 0.5, 0.5)


def test_paired_counts_wins_in_the_metric_direction():
    out = paired([0.9, 0.95, 0.8], [0.85, 0.97, 0.7])
    assert out["wins"] == 2 and out["n"] == 3 and out["diff"] == pytest.approx(np.mean([0.05, -0.02, 0.1]))
    assert out["diff_low"] <= out["diff"] <= out["diff_high"]
    lower = paired([0.1, 0.3], [0.2, 0.2], higher_is_better=False)  # a distance: smaller wins
    assert lower["wins"] == 1
    assert paired([0.5, np.nan], [0.4, 0.1])["n"] == 1
