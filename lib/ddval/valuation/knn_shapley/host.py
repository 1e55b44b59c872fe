"""The host path: NumPy SIMD sort and vectorised recursion, one worker thread per part of a chunk.

The GEMM (in :mod:`.engine`) leaves ``-2 t.x``; each worker finishes the distances of a group of rows
in cache, sorts them by packed keys (distance bits with the index in the low bits: one SIMD sort
gives the order and the index tie-break), hands near ties to the guard (:mod:`.guard`), and turns
the label matches into values by the integer recursion and splits them into exact limbs
(:mod:`.limbs`). NumPy releases the GIL, so the workers run in
parallel. No torch is needed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ddval.valuation.knn_shapley.guard import _resolve_near_ties
from ddval.valuation.knn_shapley.limbs import LO_SCALE, split_units

if TYPE_CHECKING:
    from ddval.valuation.knn_shapley.chunk import _ChunkRows

_MAXPOS = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _host_chunk(dist: np.ndarray, rows: _ChunkRows) -> tuple[np.ndarray, np.ndarray]:
    ctx = rows.ctx
    c = dist.shape[0]
    parts = min(ctx.threads, -(-c // ctx.group))
    bounds = np.linspace(0, c, parts + 1).astype(int)
    if parts == 1:
        results = [_host_part(dist, rows, 0, c)]
    else:
        with ThreadPoolExecutor(max_workers=parts) as pool:
            futures = [pool.submit(_host_part, dist, rows, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
            results = [f.result() for f in futures]
    hi = np.zeros((ctx.n_labels, ctx.n), np.int64)
    lo = np.zeros((ctx.n_labels, ctx.n), np.int64)
    for part_hi, part_lo in results:  # integer-valued float64 sums below 2**53: exact
        hi += part_hi.astype(np.int64)
        lo += part_lo.astype(np.int64) * LO_SCALE
    return hi, lo


def _host_part(dist: np.ndarray, rows: _ChunkRows, r_start: int, r_stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact limb sums of test rows r_start:r_stop: (L, N) integer-valued float64, ``hi`` in units of
    2**-31 and ``lo`` in units of 2**-62 (exact sums, see :mod:`.limbs`). Every step writes into
    buffers reused by each group of rows: a fresh array of a group's size costs more in page faults
    than the step."""
    ctx = rows.ctx
    n, n_labels = ctx.n, ctx.n_labels
    acc_hi = np.zeros((n_labels, n))
    acc_lo = np.zeros((n_labels, n))
    labels, active = rows.labels(), rows.active()
    buf = _HostBuffers.allocate(ctx.group, n, ctx.ytr.dtype)
    for r0 in range(r_start, r_stop, ctx.group):
        r1 = min(r0 + ctx.group, r_stop)
        d = dist[r0:r1]
        # finish the distances in cache: |t|^2 + |x|^2 - 2 t.x (the GEMM gave -2 t.x)
        d += ctx.norms
        d += rows.sq_test[r0:r1, None]
        order, near = _sorted_order(d, rows.thr1[r0:r1], ctx.low_bits, buf)
        for i in np.flatnonzero(near.any(axis=1)):
            _resolve_near_ties(order[i], d[i], near[i], rows, r0 + i)
        for lab in range(n_labels):
            sel = None if active is None else active[r0:r1, lab]
            if sel is None or sel.all():
                ord_l, y_t = order, labels[r0:r1, lab]
            elif sel.any():
                ord_l, y_t = order[sel], labels[r0:r1, lab][sel]
            else:
                continue
            hi, lo = _position_limbs(ord_l, ctx.ytr[lab], y_t, ctx.weights, buf)
            flat = ord_l.ravel()
            acc_hi[lab] += np.bincount(flat, weights=hi.ravel(), minlength=n)
            acc_lo[lab] += np.bincount(flat, weights=lo.ravel(), minlength=n)
    return acc_hi, acc_lo


@dataclass
class _HostBuffers:
    """One worker's scratch arrays for a group of ``g`` rows of N positions (about 67 bytes each)."""

    key: np.ndarray  # int64 packed sort keys
    order: np.ndarray  # int64 training index per position
    sign: np.ndarray  # int64 scratch of _flip_negative
    gap: np.ndarray  # float64 gaps between neighbouring truncated distances
    near: np.ndarray  # bool near-tie flags
    codes: np.ndarray  # int8/int32 label codes in sorted order
    match: np.ndarray  # bool label matches in sorted order
    terms: np.ndarray  # int64 recursion terms, then the values s, then their low limbs
    high_units: np.ndarray  # int64 high limbs
    high: np.ndarray  # float64 high limbs (bincount weights)
    low: np.ndarray  # float64 low limbs (bincount weights)

    @classmethod
    def allocate(cls, g: int, n: int, code_dtype: np.dtype) -> _HostBuffers:
        i64, f64 = np.empty((g, n), np.int64), np.empty((g, n))
        return cls(
            i64,
            np.empty_like(i64),
            np.empty_like(i64),
            f64,
            np.empty((g, max(0, n - 1)), bool),
            np.empty((g, n), code_dtype),
            np.empty((g, n), bool),
            np.empty_like(i64),
            np.empty_like(i64),
            np.empty_like(f64),
            np.empty_like(f64),
        )


def _sorted_order(d: np.ndarray, thr1: np.ndarray, low_bits: int, buf: _HostBuffers) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a group of rows of float64 distances ``d`` (ties by index) and the near-tie
    flags of the guard (``near[r, p]``: positions p and p+1 of row r within ``thr1[r]``).

    Each distance is packed with its index into one int64 (order-preserving bits, the low
    ``low_bits`` bits replaced by the index), so one SIMD sort gives the order and the tie-break.
    The guard compares the sorted keys without their index bits, as float64."""
    g = d.shape[0]
    key, order, sign = buf.key[:g], buf.order[:g], buf.sign[:g]
    low_mask = np.int64((1 << low_bits) - 1)
    high_mask = ~low_mask
    bits = d.view(np.int64)
    negative = bits.min() < 0  # distances are non-negative but for rounding near zero
    if negative:
        _flip_negative(bits, sign, out=key)
        np.bitwise_and(key, high_mask, out=key)
    else:  # non-negative float64 bits are already ordered as int64
        np.bitwise_and(bits, high_mask, out=key)
    np.bitwise_or(key, np.arange(d.shape[1], dtype=np.int64), out=key)
    key.sort(axis=1)
    np.bitwise_and(key, low_mask, out=order)
    np.bitwise_and(key, high_mask, out=key)
    if negative:
        _flip_negative(key, sign, out=key)
    truncated = key.view(np.float64)
    gap, near = buf.gap[:g, : d.shape[1] - 1], buf.near[:g]
    np.subtract(truncated[:, 1:], truncated[:, :-1], out=gap)
    np.less_equal(gap, thr1[:, None], out=near)
    return order, near


def _position_limbs(
    order: np.ndarray, train_codes: np.ndarray, test_codes: np.ndarray, weights: np.ndarray, buf: _HostBuffers
) -> tuple[np.ndarray, np.ndarray]:
    """Limbs of the values at each sorted position of some rows (one label): matches, integer
    recursion (``weights`` in units of 2**-62, :func:`.limbs.weight_units`), exact split, all in
    ``buf``. Returns float64 (hi in units of 2**-31, lo in units of 2**-62), integer-valued."""
    rows = len(order)
    codes = np.take(train_codes, order, out=buf.codes[:rows], mode="clip")  # "clip": unbuffered
    match = np.equal(codes, test_codes[:, None], out=buf.match[:rows])
    hi, lo = split_units(_recursion_np(match, weights, buf.terms[:rows]), buf.high_units[:rows])
    high, low = buf.high[:rows], buf.low[:rows]
    np.copyto(high, hi)  # |hi| <= 2**31, |lo| <= 2**30: exact in float64
    np.copyto(low, lo)
    return high, low


def _flip_negative(bits: np.ndarray, sign: np.ndarray, out: np.ndarray) -> np.ndarray:
    """bits ^ ((bits >> 63) & 0x7FF..F): float64 bits <-> order-preserving int64 (an involution)."""
    np.right_shift(bits, 63, out=sign)
    np.bitwise_and(sign, _MAXPOS, out=sign)
    return np.bitwise_xor(bits, sign, out=out)


def _recursion_np(match: np.ndarray, weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-position values s = reverse_cumsum((m - m_next) * w), m_next of the last position = 0;
    with int64 ``weights`` (units of 2**-62) every step is exact."""
    m = match.view(np.int8)
    step = np.empty(m.shape, np.int8)
    np.subtract(m[:, :-1], m[:, 1:], out=step[:, :-1])
    step[:, -1] = m[:, -1]
    terms = np.multiply(step, weights, out=out)
    np.cumsum(terms[:, ::-1], axis=1, out=terms[:, ::-1])
    return terms
