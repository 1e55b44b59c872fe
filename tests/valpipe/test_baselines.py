"""Baselines on toy games with known values: λ-MR, GTG-Shapley (convergence, truncation, guidance),
SaFE's ensemble (members averaged, not the first member) and exact Shapley."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from ddval.train.metrics import mean_auroc, per_label_auroc
from ddval.valuation.baselines import (
    GTGOptions,
    coalitions,
    ensemble_utility,
    fit_local_model,
    gtg_round,
    gtg_shapley,
    lambda_mr,
    safe_values,
    shapley,
)

P = ["a", "b", "c"]


def game(base, a, pair=0.0, players=P):
    """``base + Σ_{i∈S} a_i + pair · 1[{p0, p1} ⊆ S]``: Shapley values ``a_i (+ pair/2 for p0, p1)``."""
    return {
        s: base + sum(a[players.index(p)] for p in s) + (pair if {players[0], players[1]} <= s else 0.0)
        for s in coalitions(players)
    }


def brute_force(v, players):
    n = len(players)
    out = {}
    for p in players:
        out[p] = sum(
            (v[frozenset(s) | {p}] - v[frozenset(s)])
            * math.factorial(len(s))
            * math.factorial(n - len(s) - 1)
            / math.factorial(n)
            for r in range(n)
            for s in itertools.combinations([q for q in players if q != p], r)
        )
    return pd.Series(out)


def test_exact_shapley_wrapper_matches_the_known_values():
    v = game(0.5, [0.1, 0.02, 0.05], pair=0.04)
    np.testing.assert_allclose(shapley(v, P).to_numpy(), [0.12, 0.04, 0.05])
    np.testing.assert_allclose(shapley(v, P).to_numpy(), brute_force(v, P).to_numpy())


def test_lambda_mr_is_the_discounted_sum_of_round_shapley_values():
    g1 = game(0.50, [0.10, 0.02, 0.05], pair=0.04)  # φ¹ = (0.12, 0.04, 0.05)
    g2 = game(0.67, [0.01, 0.03, -0.01])  # φ² = (0.01, 0.03, -0.01)
    np.testing.assert_allclose(lambda_mr([g1, g2], P, 1.0).to_numpy(), [0.13, 0.07, 0.04])  # MR
    np.testing.assert_allclose(lambda_mr([g1, g2], P, 0.5).to_numpy(), [0.125, 0.055, 0.045])
    # with λ = 1 the values add up to the total gain over rounds (here the rounds chain)
    assert lambda_mr([g1, g2], P, 1.0).sum() == pytest.approx(
        (g1[frozenset(P)] - g1[frozenset()]) + (g2[frozenset(P)] - g2[frozenset()])
    )
    with pytest.raises(ValueError, match="lambda_mr"):
        lambda_mr([g1], P, 0.0)


def _spy(v):
    calls = []

    def utility(s):
        calls.append(s)
        return v[s]

    return utility, calls


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-0.1, 0.3), min_size=4, max_size=4), st.floats(-0.1, 0.1), st.integers(0, 1000))
def test_gtg_without_truncation_converges_to_the_exact_values(a, pair, seed):
    players = ["a", "b", "c", "d"]
    v = game(0.5, a, pair, players)
    opts = GTGOptions(eps=0.0, round_trunc=-1.0, max_permutations=2000, min_permutations=2000)
    values, n_evals, n_perms = gtg_round(lambda s: v[s], players, opts, np.random.default_rng(seed))
    assert n_perms == 2000 and n_evals <= 16
    # additive part exact in every permutation; the pair term is split by a fair coin per permutation
    np.testing.assert_allclose(values.to_numpy(), brute_force(v, players).to_numpy(), atol=0.08 * abs(pair) + 1e-12)


def test_gtg_with_all_permutations_guided_is_exact_on_two_players():
    v = game(0.5, [0.2, 0.05], pair=0.1, players=["a", "b"])
    values, _, n = gtg_round(
        lambda s: v[s],
        ["a", "b"],
        GTGOptions(eps=0.0, round_trunc=-1.0, max_permutations=2, min_permutations=50),
        np.random.default_rng(0),
    )
    assert n == 2  # each player led once: both orders, i.e. the exact Shapley value
    np.testing.assert_allclose(values.to_numpy(), brute_force(v, ["a", "b"]).to_numpy(), atol=1e-15)


def test_between_round_truncation_skips_a_round_without_gain():
    v = game(0.5, [0.003, -0.001, 0.002])  # gain 0.004 <= 0.01
    utility, calls = _spy(v)
    values, n_evals, n_perms = gtg_round(utility, P, GTGOptions(round_trunc=0.01), np.random.default_rng(0))
    assert (values == 0).all() and n_perms == 0 and n_evals == 2 and set(calls) == {frozenset(), frozenset(P)}


def test_within_round_truncation_stops_a_permutation_when_the_remaining_gain_is_below_eps():
    # every single institution already reaches the full utility: nothing after the first is scored
    v = {s: (0.8 if s else 0.5) for s in coalitions(P)}
    utility, calls = _spy(v)
    opts = GTGOptions(eps=0.001, round_trunc=0.01, max_permutations=30, min_permutations=30)
    values, n_evals, n_perms = gtg_round(utility, P, opts, np.random.default_rng(0))
    assert n_perms == 30 and n_evals == 5 and all(len(s) in (0, 1, 3) for s in calls)
    np.testing.assert_allclose(values.to_numpy(), [0.1, 0.1, 0.1])  # guided: each leads 10 times


def test_guided_permutations_let_every_player_lead_in_turn():
    v = game(0.5, [0.1, 0.2, 0.3])
    utility, calls = _spy(v)
    gtg_round(
        utility,
        P,
        GTGOptions(eps=0.0, round_trunc=0.0, max_permutations=3, min_permutations=3),
        np.random.default_rng(0),
    )
    singletons = [s for s in calls if len(s) == 1]
    assert singletons[:3] == [frozenset({"a"}), frozenset({"b"}), frozenset({"c"})]


def test_gtg_converges_early_on_a_deterministic_game_and_is_seeded():
    v = game(0.5, [0.1, 0.2, 0.3])  # additive: every permutation gives the same marginals
    opts = GTGOptions(eps=0.0, round_trunc=0.0, max_permutations=500, min_permutations=12, converge_window=5)
    values, _, n = gtg_round(lambda s: v[s], P, opts, np.random.default_rng(0))
    assert n == 12
    np.testing.assert_allclose(values.to_numpy(), [0.1, 0.2, 0.3])
    g2 = game(0.5, [0.3, -0.1, 0.2], pair=0.2)
    r1 = gtg_shapley(
        [lambda s: v[s], lambda s: g2[s]], P, GTGOptions(eps=0, round_trunc=0, max_permutations=40), seed=3
    )
    r2 = gtg_shapley(
        [lambda s: v[s], lambda s: g2[s]], P, GTGOptions(eps=0, round_trunc=0, max_permutations=40), seed=3
    )
    assert r1[0].equals(r2[0]) and len(r1[2]) == 2
    np.testing.assert_allclose(r1[0].to_numpy(), (r1[2][0] + r1[2][1]).to_numpy())


def test_safe_ensemble_averages_all_members_not_the_first():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 8)) < 0.5).astype(float)
    good = y + rng.normal(0, 0.8, y.shape)  # informative
    other = -y + rng.normal(0, 0.8, y.shape)  # anti-informative
    preds = {"a": [good], "b": [other]}
    both = ensemble_utility(preds, ["a", "b"], [y])
    assert both == pytest.approx(mean_auroc(per_label_auroc(y, (good + other) / 2)))
    assert both != pytest.approx(ensemble_utility(preds, ["a"], [y]))  # the original's bug: the first member only
    assert both == ensemble_utility(preds, ["b", "a"], [y])
    # several test sets: their mean, a repeated set counted as often as it occurs
    u1, u2 = ensemble_utility(preds, ["a"], [y]), ensemble_utility({"a": [good[:30]]}, ["a"], [y[:30]])
    assert ensemble_utility({"a": [good, good[:30]]}, ["a"], [y, y[:30]], [2, 1]) == pytest.approx((2 * u1 + u2) / 3)


def test_safe_values_use_fitted_members_and_the_real_grand_utility(features_factory):
    feats = features_factory(d=40, n_train=(12, 9, 15))  # fewer scans than features: still well-posed
    names = list(feats)
    result = safe_values(feats, names, grand_utility=0.77, alphas=(0.1, 1.0, 10.0))
    util = result.details["utilities"]
    assert util[frozenset(names)] == 0.77 and util[frozenset()] == 0.5 and result.n_utility_evals == 6
    models = {n: fit_local_model(feats[n].train.x, feats[n].train.y, (0.1, 1.0, 10.0)) for n in names}
    tests = [(feats[n].test.x, feats[n].test.y) for n in names]
    preds = {n: [models[n].predict(x.astype(float)) for x, _ in tests] for n in names}
    assert util[frozenset({"a", "c"})] == pytest.approx(ensemble_utility(preds, ["a", "c"], [y for _, y in tests]))
    np.testing.assert_allclose(result.values.to_numpy(), brute_force(util, names).to_numpy())
    assert np.isclose(result.values.sum(), 0.77 - 0.5)
