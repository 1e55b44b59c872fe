"""The exactness guard: the exact order of near-tied training points (rare path, NumPy, one test row).

Adjacent positions whose computed distances are within the rigorous error bound (set per test row
in :mod:`.engine`) are re-sorted by float64 distance, and those still within the GEMM bound by the
exactly computed distance (error-free transformations and ``math.fsum``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ddval.valuation.knn_shapley.engine import _ChunkRows


def _resolve_near_ties(order: np.ndarray, dist: np.ndarray, near: np.ndarray, rows: _ChunkRows, i: int) -> None:
    """Put runs of near-tied positions of one test row into the exact order, in place.

    ``dist`` holds the row's float64 distances by training index; ``near[p]`` says positions p and
    p+1 are within the level-1 bound. Every misordered pair lies
    inside one such run (all gaps between them are within the bound), so re-sorting each run by
    (float64 distance, index), then each sub-run still within the GEMM bound by (exact distance,
    index), gives the exact order. Runs whose label matches are all equal are left alone: any order
    of them yields the same values.
    """
    ctx = rows.ctx
    labels = rows.labels()[i]
    active = rows.active()
    use = slice(None) if active is None else active[i]
    for a, b in _runs(near):
        members = order[a : b + 1]
        if _same_matches(ctx.ytr[use][:, members], labels[use]):
            continue
        by_d = np.lexsort((members, dist[members]))
        members = members[by_d]
        dists = dist[members]
        for a2, b2 in _runs(np.diff(dists) <= rows.thr2[i]):
            sub = members[a2 : b2 + 1]
            if _same_matches(ctx.ytr[use][:, sub], labels[use]):
                continue
            exact = _exact_sq_distances(rows.tests[i], ctx.X, sub)
            members[a2 : b2 + 1] = sub[np.lexsort((sub, exact))]
        order[a : b + 1] = members


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Position ranges [a, b] covered by runs of True in ``flags`` (flag p links p and p+1)."""
    if not flags.any():
        return []
    padded = np.concatenate([[False], flags, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _same_matches(member_labels: np.ndarray, test_labels: np.ndarray) -> bool:
    match = member_labels == test_labels[:, None]
    return bool((match == match[:, :1]).all())


def _exact_sq_distances(x: np.ndarray, X: Any, members: np.ndarray) -> np.ndarray:
    """Squared distances from x to rows X[members], computed exactly and rounded once.

    (a - b) = s + e exactly (TwoSum); (s + e)^2 = s^2 + 2se + e^2 with every product split exactly
    (Dekker's TwoProduct); ``math.fsum`` rounds the exact sum of all those terms once. Identical
    rows share one computation. Exact for the validated range (squared norms < 1e200) apart from
    products below the float64 subnormal range.
    """
    rows = np.asarray(X[members], dtype=np.float64)
    out = np.empty(len(members))
    cache: dict[bytes, float] = {}
    for j, row in enumerate(rows):
        key = row.tobytes()
        if key not in cache:
            s, e = _two_sum(row, -x)
            terms = [*_two_prod(s, s), *_two_prod(2.0 * s, e), *_two_prod(e, e)]
            cache[key] = math.fsum(np.concatenate(terms).tolist())
        out[j] = cache[key]
    return out


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = 134217729.0 * a  # 2**27 + 1 (Veltkamp)
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
