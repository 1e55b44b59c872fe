"""exact_shapley: hand-computed games and the Shapley axioms."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddval.valuation.shapley import exact_shapley


def table(players, worth):
    return {
        frozenset(c): worth(frozenset(c)) for r in range(len(players) + 1) for c in itertools.combinations(players, r)
    }


def test_glove_game():
    # one left glove (L), two right gloves (R1, R2); a pair is worth 1. Textbook: (2/3, 1/6, 1/6).
    players = ["L", "R1", "R2"]
    phi = exact_shapley(table(players, lambda s: float("L" in s and bool(s & {"R1", "R2"}))), players)
    assert phi == pytest.approx({"L": 2 / 3, "R1": 1 / 6, "R2": 1 / 6}, abs=1e-15)


def test_airport_game():
    # runway costs 1, 2, 3: v(S) = max cost in S. Shapley: (1/3, 1/3 + 1/2, 1/3 + 1/2 + 1).
    players = ["a", "b", "c"]
    cost = {"a": 1.0, "b": 2.0, "c": 3.0}
    phi = exact_shapley(table(players, lambda s: max((cost[p] for p in s), default=0.0)), players)
    assert phi == pytest.approx({"a": 1 / 3, "b": 5 / 6, "c": 11 / 6}, abs=1e-15)


def test_weighted_majority_game():
    # weights 2, 1, 1, quota 3: player A is pivotal in 4 of 6 orders -> (2/3, 1/6, 1/6).
    w = {"A": 2, "B": 1, "C": 1}
    phi = exact_shapley(table(list(w), lambda s: float(sum(w[p] for p in s) >= 3)), list(w))
    assert phi == pytest.approx({"A": 2 / 3, "B": 1 / 6, "C": 1 / 6}, abs=1e-15)


def test_nonzero_empty_coalition_as_in_the_paper():
    # v(empty) = 0.5 (a random classifier's AUROC): values share v(N) - v(empty), not v(N).
    players = ["nih", "chexpert"]
    v = {frozenset(): 0.5, frozenset({"nih"}): 0.7, frozenset({"chexpert"}): 0.6, frozenset(players): 0.8}
    phi = exact_shapley(v, players)
    assert phi == pytest.approx({"nih": 0.5 * (0.2 + 0.2), "chexpert": 0.5 * (0.1 + 0.1)}, abs=1e-15)
    assert sum(phi.values()) == pytest.approx(0.3, abs=1e-15)


def test_callable_utility_and_order_of_result():
    phi = exact_shapley(lambda s: float(len(s)) ** 2, ["x", "y", "z"])
    assert list(phi) == ["x", "y", "z"]
    assert phi == pytest.approx({"x": 3.0, "y": 3.0, "z": 3.0})


def test_missing_coalitions_are_named():
    v = {frozenset(): 0.0, frozenset({"a"}): 1.0, frozenset({"a", "b"}): 2.0}
    with pytest.raises(ValueError, match=r"lacks 1 of the 4 coalitions: \{b\}"):
        exact_shapley(v, ["a", "b"])
    with pytest.raises(ValueError, match=r"empty coalition"):
        exact_shapley({frozenset({"a"}): 1.0}, ["a"])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="not in players"):
        exact_shapley({frozenset(): 0, frozenset({"a"}): 1, frozenset({"zz"}): 1}, ["a"])
    with pytest.raises(ValueError, match="unique"):
        exact_shapley({}, ["a", "a"])
    with pytest.raises(ValueError, match="not finite"):
        exact_shapley({frozenset(): 0, frozenset({"a"}): float("nan")}, ["a"])


def test_no_players():
    assert exact_shapley({frozenset(): 0.3}, []) == {}


# -- axioms -------------------------------------------------------------------------------------

worths = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@st.composite
def games(draw, min_players=1, max_players=6):
    n = draw(st.integers(min_players, max_players))
    players = list(range(n))
    values = draw(st.lists(worths, min_size=2**n, max_size=2**n))
    coalitions = [frozenset(c) for r in range(n + 1) for c in itertools.combinations(players, r)]
    return players, dict(zip(coalitions, values))


@given(games())
def test_efficiency(game):
    players, v = game
    phi = exact_shapley(v, players)
    assert sum(phi.values()) == pytest.approx(v[frozenset(players)] - v[frozenset()], abs=1e-9)


@given(games(min_players=2), st.data())
def test_symmetry(game, data):
    players, v = game
    i, j = data.draw(st.sampled_from(list(itertools.combinations(players, 2))))
    # make i and j interchangeable: v(S + i) := v(S + j) for every S without both
    for s in list(v):
        if i in s and j not in s:
            v[s] = v[(s - {i}) | {j}]
    phi = exact_shapley(v, players)
    assert phi[i] == pytest.approx(phi[j], abs=1e-9)


@given(games(), st.data())
def test_null_player(game, data):
    players, v = game
    i = data.draw(st.sampled_from(players))
    for s in list(v):
        if i in s:
            v[s] = v[s - {i}]
    assert exact_shapley(v, players)[i] == pytest.approx(0.0, abs=1e-9)


@given(games(max_players=5), st.data(), worths)
def test_additivity_and_linearity(game, data, scale):
    players, v = game
    w = dict(zip(v, data.draw(st.lists(worths, min_size=len(v), max_size=len(v)))))
    phi_v, phi_w = exact_shapley(v, players), exact_shapley(w, players)
    phi_sum = exact_shapley({s: v[s] + w[s] for s in v}, players)
    phi_scaled = exact_shapley({s: scale * v[s] for s in v}, players)
    for p in players:
        assert phi_sum[p] == pytest.approx(phi_v[p] + phi_w[p], abs=1e-9)
        assert phi_scaled[p] == pytest.approx(scale * phi_v[p], abs=1e-8)
