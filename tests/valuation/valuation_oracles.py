"""Independent oracles for the valuation tests: brute-force games and exact-arithmetic orders.

Nothing here shares code with ``ddval.valuation.knn_shapley``: distances are exact rationals
(``fractions.Fraction``) rounded once to float64, the order is ``sorted`` by (distance, index) and the
Shapley values come from enumerating coalitions (``ddval.valuation.shapley.exact_shapley``, itself
tested against hand-computed games).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

from ddval.valuation.shapley import exact_shapley


def exact_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Squared Euclidean distance of two float vectors in exact arithmetic, rounded once."""
    return float(sum((Fraction(float(p)) - Fraction(float(q))) ** 2 for p, q in zip(a, b)))


def exact_order(train_x: np.ndarray, x: np.ndarray) -> list[int]:
    """Training indices by (correctly rounded exact distance to x, index)."""
    d = [exact_distance(row, x) for row in train_x]
    return sorted(range(len(train_x)), key=lambda j: (d[j], j))


def knn_utility(coalition, order: list[int], train_y: np.ndarray, y_t, k: int) -> float:
    """u_t(S) = (1/K) * #label matches among the min(K, |S|) nearest members of S."""
    nearest = [j for j in order if j in coalition][:k]
    return sum(float(train_y[j] == y_t) for j in nearest) / k


def brute_force_knn_shapley(train_x, train_y, test_x, test_y, k: int) -> np.ndarray:
    """Shapley values of the mean KNN utility by enumerating all 2^N coalitions (single label)."""
    n = len(train_x)
    players = list(range(n))
    coalitions = [frozenset(c) for r in range(n + 1) for c in itertools.combinations(players, r)]
    total = np.zeros(n)
    for x, y_t in zip(test_x, test_y):
        order = exact_order(train_x, x)
        utility = {c: knn_utility(c, order, train_y, y_t, k) for c in coalitions}
        phi = exact_shapley(utility, players)
        total += np.array([phi[p] for p in players])
    return total / len(test_x)


def exact_order_knn_shapley(train_x, train_y, test_x, test_y, k: int) -> np.ndarray:
    """The recursion, one Python loop per test point, on the exact-arithmetic order (any N >= 1).

    Start s_N = m_N * min(K, N) / (N K) (correct for N < K too); single label.
    """
    n = len(train_x)
    values = np.zeros(n)
    for x, y_t in zip(test_x, test_y):
        order = exact_order(train_x, x)
        match = [float(train_y[j] == y_t) for j in order]
        s = np.zeros(n)
        s[order[-1]] = match[-1] * min(k, n) / (n * k)
        for i in range(n - 2, -1, -1):
            s[order[i]] = s[order[i + 1]] + (match[i] - match[i + 1]) / k * min(k, i + 1) / (i + 1)
        values += s
    return values / len(test_x)


def rounded_weight_knn_shapley_units(train_x, train_y, x, y_t, k: int) -> list[int]:
    """One test point's values in exact integers, in units of 2**-62: the recursion on the exact
    order with each weight min(K, i) / (i K) rounded once to the nearest multiple of 2**-62 (ties
    up), summed exactly (Python integers). What the engine promises bit for bit; single label."""
    return _exact_recursion(train_x, train_y, x, y_t, k, lambda w: math.floor(w * 2**62 + Fraction(1, 2)))


def exact_knn_shapley_fractions(train_x, train_y, x, y_t, k: int) -> list[Fraction]:
    """One test point's KNN-Shapley values as exact rationals (exact order, exact weights)."""
    return _exact_recursion(train_x, train_y, x, y_t, k, lambda w: w)


def _exact_recursion(train_x, train_y, x, y_t, k: int, weight_of):
    """s_i = s_{i+1} + (m_i - m_{i+1}) * weight_of(min(K, i) / (i K)) on the exact order, summed exactly."""
    n = len(train_x)
    order = exact_order(train_x, x)
    match = [int(train_y[j] == y_t) for j in order] + [0]
    values = [0] * n
    s = 0
    for i in range(n - 1, -1, -1):
        s += (match[i] - match[i + 1]) * weight_of(Fraction(min(k, i + 1), (i + 1) * k))
        values[order[i]] = s
    return values


def full_utility(train_x, train_y, test_x, test_y, k: int) -> float:
    """U(all training points), the mean over test points (U(empty) = 0)."""
    players = frozenset(range(len(train_x)))
    return float(
        np.mean([knn_utility(players, exact_order(train_x, x), train_y, y_t, k) for x, y_t in zip(test_x, test_y)])
    )


def marginals_equal(train_x, train_y, test_x, test_y, k: int, i: int, j: int) -> bool:
    """True when players i and j are symmetric: u(S + i) == u(S + j) for every S without both."""
    n = len(train_x)
    others = [p for p in range(n) if p not in (i, j)]
    orders = [exact_order(train_x, x) for x in test_x]
    for r in range(len(others) + 1):
        for c in itertools.combinations(others, r):
            s = set(c)
            for order, y_t in zip(orders, test_y):
                if knn_utility(s | {i}, order, train_y, y_t, k) != knn_utility(s | {j}, order, train_y, y_t, k):
                    return False
    return True


def is_null_player(train_x, train_y, test_x, test_y, k: int, i: int) -> bool:
    """True when adding player i never changes any test point's utility."""
    n = len(train_x)
    others = [p for p in range(n) if p != i]
    orders = [exact_order(train_x, x) for x in test_x]
    for r in range(len(others) + 1):
        for c in itertools.combinations(others, r):
            s = set(c)
            for order, y_t in zip(orders, test_y):
                if knn_utility(s | {i}, order, train_y, y_t, k) != knn_utility(s, order, train_y, y_t, k):
                    return False
    return True
