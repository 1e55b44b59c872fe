"""The exactness guard: the exact order of near-tied training points (rare path, NumPy, one test row).

Adjacent positions whose computed distances are within the rigorous error bound (set per test row
in :mod:`.engine`) are re-sorted by float64 distance, and those still within the GEMM bound by the
exactly computed distance (error-free transformations and an exact, vectorised sum).
"""

from __future__ import annotations

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
    (Dekker's TwoProduct); :func:`_exact_sum` rounds the exact sum of all those terms once. Identical
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
            cache[key] = _exact_sum(np.concatenate(terms))
        out[j] = cache[key]
    return out


def _exact_sum(terms: np.ndarray) -> float:
    """The sum of finite float64 ``terms`` computed exactly and rounded once, half to even (the same
    bits as ``math.fsum``, vectorised: ~5x faster on the 6 D terms of a distance at D = 65,536).

    Each term is m 2**(e - 53) with an integer |m| < 2**53 (``frexp``); m is split into 26-bit halves,
    which are summed per exponent e in float64 (sums of integers below 2**53: exact for up to 2**26
    terms), and the per-exponent sums are combined in Python integers; the one rounding is Python's
    correctly rounded integer division."""
    frac, exp = np.frexp(terms[terms != 0])
    if frac.size == 0:
        return 0.0
    mantissa = (frac * 2.0**53).astype(np.int64)  # exact: |frac| in [0.5, 1) has 53 bits
    base = int(exp.min())
    slot = exp - base
    high = np.bincount(slot, weights=(mantissa >> 26).astype(np.float64))
    low = np.bincount(slot, weights=(mantissa & ((1 << 26) - 1)).astype(np.float64))
    total = sum(((int(h) << 26) + int(lo)) << k for k, (h, lo) in enumerate(zip(high, low)) if h or lo)
    shift = base - 53
    return float(total << shift) if shift >= 0 else total / (1 << -shift)


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
