"""The reference loop: the original per-test-point KNN-Shapley, transcribed from its formula.

A test oracle and benchmark peer (slow by design), not for production use.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def knn_shapley_loop(train_x: Any, train_y: Any, test_x: Any, test_y: Any, k: int = 3) -> np.ndarray:
    """Reference: the original per-test-point loop, transcribed from its formula (paper §2.2).

    For each test point: squared Euclidean distances ``einsum`` over row differences (in the input
    dtype, as the original), ``argsort`` (stable here, so ties follow the training order), the
    textbook start ``s_N = m_N / N`` and a Python loop over the N points. Single label (shape (N,)).
    Valid only for N >= K (the textbook start). Slow by design: a test oracle and benchmark peer,
    not for production use.
    """
    X = np.asarray(train_x)
    X = X.reshape(X.shape[0], -1)
    T = np.asarray(test_x)
    T = T.reshape(T.shape[0], -1)
    ytr = np.asarray(train_y)
    yte = np.asarray(test_y)
    n = X.shape[0]
    values = np.zeros(n)
    for x, y in zip(T, yte):
        diff = X - x
        dist = np.einsum("ij,ij->i", diff, diff)
        order = np.argsort(dist, kind="stable")
        s = np.zeros(n)
        s[order[n - 1]] = float(ytr[order[n - 1]] == y) / n
        for i in range(n - 2, -1, -1):
            cur = i  # 0-based position; the formula's 1-based index is cur + 1
            s[order[i]] = s[order[i + 1]] + (float(ytr[order[i]] == y) - float(ytr[order[i + 1]] == y)) / k * min(
                cur + 1, k
            ) / (cur + 1)
        values += s
    return values / len(T)
