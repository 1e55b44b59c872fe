"""Exact KNN-Shapley values (Jia et al., PVLDB 2019) on arrays: fast, memory-bounded, shardable.

The game
--------
For one test point ``t`` with label ``y_t`` and a coalition ``S`` of training points, the unweighted
KNN classifier utility is

    u_t(S) = (1/K) * sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} == y_t],    u_t(empty) = 0,

where ``alpha_k(S)`` is the k-th nearest member of ``S``. The utility of the test set is the mean of
``u_t`` over the test points, and so is its Shapley value. Multi-label data give one binary game per
label (column); all labels share the one sort per test point.

Order (the only place where floating point enters the game): training points are ordered by the
squared Euclidean distance of the float64-promoted features, computed exactly and rounded once to
float64, ties broken by training index (the stable rule). For distinct inputs this is the exact
order; only two exact distances closer than half a float64 ulp become a tie.

The recursion (0-based position i in that order, m_i = 1[label of the i-th nearest == y_t])
----------------------------------------------------------------------------------------------
    s_i = s_{i+1} + (m_i - m_{i+1}) * w_i,      w_i = min(K, i+1) / ((i+1) K),

with the sentinel m_N = 0 and s_N = 0, i.e. ``s = reverse_cumsum((m - m_next) * w)``.

Why the start is s_{N-1} = m_{N-1} * min(K, N) / (N K) and not the textbook m_{N-1} / N: the
farthest point alpha_N joins the K nearest of S + {alpha_N} exactly when |S| < K, and then adds
m/K; otherwise it adds nothing. Its Shapley value is the average over coalition sizes
s = 0..N-1 (each size has weight 1/N) of that marginal contribution:

    phi(alpha_N) = (1/N) * sum_{s=0}^{N-1} 1[s < K] * m / K = m * min(K, N) / (N K).

For N >= K this is m/N (Jia et al.'s start); for N < K it is m/K, and the textbook start would
break efficiency (e.g. N = 1, K = 3: u({j}) = m/3, but m/N = m). The difference formula
s_i - s_{i+1} = (m_i - m_{i+1}) min(K, i)/(i K) (1-based i; Jia et al., Theorem 1) holds for every
N, and with the sentinel m_N = 0 the start is the same formula at i = N, so one vectorised
reverse cumulative sum covers both cases.

Speed and memory (see ``benchmarks/bench_knn_shapley.py``)
------------------------------------------------------------
* Distances: blocked float64 GEMM, d = |t|^2 + |x|^2 - 2 t.x, test points in chunks whose size
  follows ``memory_budget_mb`` (never an N x M matrix), train rows converted block by block, so
  memory-mapped and float16 inputs work. BLAS writes each block's products straight into the
  distance matrix; the train block and every per-row buffer are allocated once and reused (fresh
  arrays of that size cost more in page faults than the arithmetic on them). Float64 rather than
  float32: the rigorous float32 error bound (gamma_D |t| |x|, about 6e-5 relative at D = 1024)
  exceeds the typical gap between neighbouring distances at N = 50k, so a float32 guard would send
  nearly every pair to the slow path, while the float64 GEMM costs only ~0.3 s more at N = 50k,
  M = 600 on 2 cores.
* Order: each distance is packed with its index into one int64 (order-preserving bits with the low
  ceil(log2 N) bits replaced by the index) and sorted with NumPy's SIMD sort; this gives the order
  and the index tie-break in one pass.
* Exactness guard: adjacent pairs whose float64 gap is within the rigorous bound (GEMM error
  gamma_{D+9} (|t| + max|x|)^2 plus the truncation of the packed key) are re-sorted by float64
  distance, and pairs still within the GEMM bound by the exactly computed distance (error-free
  transformations + ``math.fsum``). Runs of points whose label matches are all equal are skipped:
  their order does not change any value.
* Accumulation is exact: every per-test-point value is split into two limbs, multiples of 2**-31
  and 2**-63 (the split rounds once, by at most 2**-64, half to even by adding and subtracting a
  constant), whose float64 sums are exact. Results are therefore bit-identical for any chunk size,
  thread count or test-shard split (:class:`KnnShapleySum` adds exactly).
* Threads: on the host the GEMM runs on the BLAS thread pool (limited to ``threads`` with
  threadpoolctl) and sort + recursion on as many worker threads (NumPy releases the GIL); the
  default is torch's intra-op thread count when torch is loaded, else the usable cores. The host
  path needs no torch (its import alone is ~0.5 GB of RSS and seconds of start-up).
  ``device="cpu"/"cuda"`` runs the GEMM, sort and recursion as torch ops on that device instead
  (same values bit for bit on the CPU).
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from ddval.progress import progress

if TYPE_CHECKING:  # torch is imported only for the device path and torch inputs
    import torch

__all__ = ["KnnShapleySum", "knn_shapley", "knn_shapley_sum", "knn_shapley_loop"]

#: Units of the two exact accumulation limbs: value = hi * 2**-HI_BITS + lo * 2**-LO_BITS.
HI_BITS = 31
LO_BITS = 63
#: Largest number of test points one sum may hold with exact limb arithmetic (|hi| <= 2**31 each).
MAX_TEST_POINTS = 2**21
#: Default working-memory budget when neither the argument nor ``$DDVAL_MEMORY_BUDGET_MB`` is set
#: (same as ``ValuationConfig.memory_budget_mb``).
DEFAULT_MEMORY_BUDGET_MB = 512

_U64 = 2.0**-53  # unit roundoff of float64
_MAXPOS = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_ROW_ELEMS = 1 << 16  # elements per host row group: large enough to amortise Python, cache-sized


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnnShapleySum:
    """Un-averaged KNN-Shapley values of a set of test points, held exactly.

    ``hi`` and ``lo`` (int64, shape (L, N)) hold, per label and training point, the sum over test
    points of the per-test-point values in units of 2**-31 and 2**-63. ``n_test`` (int64, shape (L,))
    counts the test points per label. Sums of disjoint test shards add exactly with ``+``;
    :meth:`values` gives the mean (shape (N,) for single-label input, else (N, L)).
    """

    hi: np.ndarray
    lo: np.ndarray
    n_test: np.ndarray
    k: int
    multilabel: bool

    def __add__(self, other: KnnShapleySum) -> KnnShapleySum:
        if not isinstance(other, KnnShapleySum):
            return NotImplemented
        if (self.k, self.multilabel, self.hi.shape) != (other.k, other.multilabel, other.hi.shape):
            raise ValueError(
                "cannot add KNN-Shapley sums of different games: "
                f"k={self.k}/{other.k}, multilabel={self.multilabel}/{other.multilabel}, "
                f"shape={self.hi.shape}/{other.hi.shape}"
            )
        n_test = self.n_test + other.n_test
        if n_test.max(initial=0) > MAX_TEST_POINTS:
            raise ValueError(f"a sum may hold at most {MAX_TEST_POINTS} test points per label (exact limbs)")
        return KnnShapleySum(self.hi + other.hi, self.lo + other.lo, n_test, self.k, self.multilabel)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for an NPZ per SLURM shard); :meth:`from_arrays` restores the sum."""
        return {"hi": self.hi, "lo": self.lo, "n_test": self.n_test,
                "k": np.array(self.k), "multilabel": np.array(self.multilabel)}

    @classmethod
    def from_arrays(cls, arrays) -> KnnShapleySum:
        """Inverse of :meth:`as_arrays` (accepts a loaded ``np.load`` NPZ)."""
        missing = [key for key in ("hi", "lo", "n_test", "k", "multilabel") if key not in arrays]
        if missing:
            raise ValueError(f"not a KNN-Shapley sum: missing {missing}")
        hi, lo = np.asarray(arrays["hi"], np.int64), np.asarray(arrays["lo"], np.int64)
        n_test = np.asarray(arrays["n_test"], np.int64)
        if hi.ndim != 2 or hi.shape != lo.shape or n_test.shape != (hi.shape[0],):
            raise ValueError(f"inconsistent KNN-Shapley sum: hi {hi.shape}, lo {lo.shape}, n_test {n_test.shape}")
        return cls(hi, lo, n_test, int(arrays["k"]), bool(arrays["multilabel"]))

    def totals(self) -> np.ndarray:
        """Sum over test points (float64, rounded once), shape (N,) or (N, L)."""
        # Both products are exact (|hi|, |lo| < 2**53, power-of-two scales): one rounding in the sum.
        total = self.hi.astype(np.float64) * 2.0**-HI_BITS + self.lo.astype(np.float64) * 2.0**-LO_BITS
        return self._shape(total)

    def values(self) -> np.ndarray:
        """Mean over test points: the KNN-Shapley values. A label without test points gives NaN."""
        total = self.hi.astype(np.float64) * 2.0**-HI_BITS + self.lo.astype(np.float64) * 2.0**-LO_BITS
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / self.n_test[:, None].astype(np.float64)
        return self._shape(mean)

    def _shape(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr.T) if self.multilabel else arr[0].copy()


def knn_shapley(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    k: int = 3,
    *,
    device: str | torch.device | None = None,
    chunk: int | None = None,
    test_mask: Any = None,
    memory_budget_mb: float | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Exact KNN-Shapley values of the training points, averaged over the test points.

    Parameters
    ----------
    train_x, test_x
        Features, shape (N, ...) and (M, ...) (flattened to (N, D)); float16/32/64 or integer
        arrays, NumPy memory maps (read block by block), or torch tensors.
    train_y, test_y
        Labels, shape (N,)/(M,) -> values of shape (N,); or (N, L)/(M, L) (multi-label) -> (N, L),
        one label-match game per column. Any integer-valued labels (multi-class works too).
    k
        K of the KNN classifier (paper: 3).
    device
        ``None`` or ``"host"``: the host path (BLAS GEMM + NumPy SIMD sort, worker threads). ``"cpu"``,
        ``"cuda"``, a ``torch.device``: sort and recursion as torch ops on that device.
        ``"auto"``: ``"cuda"`` when available, else the host path. All give the same values
        (bit-identical on the CPU).
    chunk
        Test points per chunk; default: as many as ``memory_budget_mb`` allows.
    test_mask
        Optional boolean (M, L) (or (M,)): test point t counts for label l only where True (the
        paper's balanced test set per label, sharing one sort per test point). Each label is averaged
        over its own count; a label without test points gives NaN.
    memory_budget_mb
        Working memory (excluding the inputs): distances of a chunk, converted train blocks and the
        per-thread buffers. Default ``$DDVAL_MEMORY_BUDGET_MB`` or 512.
    threads
        Threads on the host (BLAS and workers); default (``None`` or 0): torch's intra-op thread
        count when torch is loaded, else the usable cores.

    Returns
    -------
    numpy.ndarray (float64), shape (N,) or (N, L).
    """
    total = knn_shapley_sum(
        train_x, train_y, test_x, test_y, k,
        device=device, chunk=chunk, test_mask=test_mask,
        memory_budget_mb=memory_budget_mb, threads=threads,
    )
    if int(total.n_test.min(initial=1)) == 0 and test_mask is None:
        raise ValueError("test_x holds no test points: KNN-Shapley values are averages over test points")
    return total.values()


def knn_shapley_sum(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    k: int = 3,
    *,
    test_slice: slice | tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    chunk: int | None = None,
    test_mask: Any = None,
    memory_budget_mb: float | None = None,
    threads: int | None = None,
) -> KnnShapleySum:
    """Un-averaged KNN-Shapley values of the test points ``test_slice`` (a shard), held exactly.

    Same arguments as :func:`knn_shapley`, plus ``test_slice`` (``slice(start, stop)`` or
    ``(start, stop)``; default all test points): only those rows of ``test_x``/``test_y``/
    ``test_mask`` are read. Sums over disjoint shards added with ``+`` equal the sum over their union
    bit for bit, and ``.values()`` gives the averages.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    X = _as_features(train_x, "train_x")
    T = _as_features(test_x, "test_x")
    if X.shape[1] != T.shape[1]:
        raise ValueError(f"train_x has {X.shape[1]} features per row but test_x has {T.shape[1]}")
    n, m = X.shape[0], T.shape[0]
    ytr, yte, multilabel = _label_codes(train_y, test_y, n, m)
    mask = _as_mask(test_mask, m, ytr.shape[0])
    start, stop = _resolve_slice(test_slice, m)
    n_labels = ytr.shape[0]
    if stop - start > MAX_TEST_POINTS:
        raise ValueError(f"at most {MAX_TEST_POINTS} test points per call (exact limbs); shard with test_slice")
    hi = np.zeros((n_labels, n), np.int64)
    lo = np.zeros((n_labels, n), np.int64)
    if mask is None:
        n_test = np.full(n_labels, stop - start, np.int64)
    else:
        n_test = mask[start:stop].sum(axis=0).astype(np.int64)
    if n == 0 or stop == start:
        return KnnShapleySum(hi, lo, n_test, k, multilabel)

    ctx = _Context.build(X, T, ytr, yte, mask, k, device, chunk, memory_budget_mb, threads, stop - start)
    starts = range(start, stop, ctx.chunk)
    for c0 in progress(starts, desc="KNN-Shapley", unit="chunk", leave=False, disable=len(starts) < 2):
        c1 = min(c0 + ctx.chunk, stop)
        chunk_hi, chunk_lo = ctx.run_chunk(c0, c1)
        hi += chunk_hi
        lo += chunk_lo
    return KnnShapleySum(hi, lo, n_test, k, multilabel)


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
            s[order[i]] = s[order[i + 1]] + (
                float(ytr[order[i]] == y) - float(ytr[order[i + 1]] == y)
            ) / k * min(cur + 1, k) / (cur + 1)
        values += s
    return values / len(T)


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def _as_features(x: Any, name: str):
    """A 2-D array-like of features (no copy for arrays and memory maps)."""
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "reshape")):
        x = np.asarray(x)
    if len(x.shape) < 2:
        raise ValueError(f"{name} must have shape (n_points, n_features, ...), got shape {tuple(x.shape)}")
    kind = np.dtype(x.dtype).kind
    if kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers (float16/32/64 or integers), got dtype {x.dtype}")
    if len(x.shape) > 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(x.shape)})")
    return x


def _label_codes(train_y: Any, test_y: Any, n: int, m: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Labels as small integer codes: train (L, N), test (M, L); equal codes <=> equal labels."""
    ty = _as_numpy(train_y)
    sy = _as_numpy(test_y)
    if ty.ndim not in (1, 2):
        raise ValueError(f"train_y must have shape (N,) or (N, L), got {ty.shape}")
    if sy.ndim != ty.ndim:
        raise ValueError(f"train_y has shape {ty.shape} but test_y has shape {sy.shape}: both (N,)/(M,) or (N, L)/(M, L)")
    if ty.shape[0] != n:
        raise ValueError(f"train_y has {ty.shape[0]} rows but train_x has {n}")
    if sy.shape[0] != m:
        raise ValueError(f"test_y has {sy.shape[0]} rows but test_x has {m}")
    multilabel = ty.ndim == 2
    ty = ty.reshape(n, ty.shape[1] if multilabel else 1)
    sy = sy.reshape(m, sy.shape[1] if multilabel else 1)
    if ty.shape[1] != sy.shape[1]:
        raise ValueError(f"train_y has {ty.shape[1]} labels per row but test_y has {sy.shape[1]}")
    if ty.shape[1] == 0:
        raise ValueError("train_y/test_y have no label columns")
    for name, arr in (("train_y", ty), ("test_y", sy)):
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold integer-valued labels, got dtype {arr.dtype}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
            if bad.any():
                row, col = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"{name} row {row}, label {col}: {arr[row, col].item()!r} is not an integer-valued label")
    n_labels = ty.shape[1]
    train_codes = np.empty((n_labels, n), np.int32)
    test_codes = np.empty((m, n_labels), np.int32)
    for col in range(n_labels):
        both = np.concatenate([ty[:, col], sy[:, col]])
        _, inverse = np.unique(both, return_inverse=True)
        train_codes[col] = inverse[:n]
        test_codes[:, col] = inverse[n:]
    small = np.int8 if max(int(train_codes.max(initial=0)), int(test_codes.max(initial=0))) < 127 else np.int32
    return np.ascontiguousarray(train_codes.astype(small)), np.ascontiguousarray(test_codes.astype(small)), multilabel


def _as_mask(test_mask: Any, m: int, n_labels: int) -> np.ndarray | None:
    if test_mask is None:
        return None
    mask = _as_numpy(test_mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"test_mask must be boolean, got dtype {mask.dtype}")
    mask = mask.reshape(m, 1) if mask.ndim == 1 else mask
    if mask.shape != (m, n_labels):
        raise ValueError(f"test_mask must have shape ({m}, {n_labels}) (test points x labels), got {mask.shape}")
    return np.ascontiguousarray(mask)


def _as_numpy(a: Any) -> np.ndarray:
    if _is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _resolve_slice(test_slice: slice | tuple[int, int] | None, m: int) -> tuple[int, int]:
    if test_slice is None:
        return 0, m
    if isinstance(test_slice, tuple):
        test_slice = slice(*test_slice)
    if not isinstance(test_slice, slice):
        raise ValueError(f"test_slice must be a slice or (start, stop), got {test_slice!r}")
    start, stop, step = test_slice.indices(m)
    if step != 1:
        raise ValueError(f"test_slice must be contiguous (step 1), got step {step}")
    return start, max(start, stop)


def _rows_f64(x, r0: int, r1: int, name: str, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows r0:r1 as float64 (in ``out[:r1 - r0]`` when given) and their squared norms; a clear
    error for non-finite or too-large values."""
    block = _f64_rows(x, r0, r1, out)
    sq = np.einsum("ij,ij->i", block, block)
    bad = ~(sq < 1e200)  # catches NaN, inf and values whose squares would overflow differences
    if bad.any():
        row = r0 + int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} row {row}: features must be finite with squared norm < 1e200")
    return block, sq


def _f64_rows(x, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows r0:r1 as a float64, C-contiguous, writable array (torch refuses read-only memory maps).

    With ``out`` the rows are converted into ``out[:r1 - r0]``: a buffer reused block after block
    costs no fresh pages (a new 80 MB array per train block cost more than the GEMM's 10 %)."""
    if out is None:
        block = np.asarray(x[r0:r1], dtype=np.float64)
        if not (block.flags.writeable and block.flags.c_contiguous):
            block = np.array(block, dtype=np.float64, order="C")
        return block
    block = out[: r1 - r0]
    np.copyto(block, np.asarray(x[r0:r1]), casting="unsafe")  # real dtypes only (_as_features)
    return block


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): bound on the relative error of an n-term float64 sum."""
    return n * _U64 / (1.0 - n * _U64)


@dataclass
class _Context:
    """Everything one call needs: inputs, train norms, the chunk plan and the backend."""

    X: Any
    T: Any
    ytr: np.ndarray  # (L, N) codes
    yte: np.ndarray  # (M, L) codes
    mask: np.ndarray | None  # (M, L) or None
    k: int
    device: torch.device | None  # None: host path
    chunk: int
    train_block: int
    group: int
    threads: int
    norms: np.ndarray  # (N,) float64 squared norms of the train rows (filled by the first GEMM pass)
    norms_done: bool
    weights: np.ndarray  # (N,) float64 recursion weights w_i
    low_bits: int

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def n_labels(self) -> int:
        return self.ytr.shape[0]

    @staticmethod
    def build(X, T, ytr, yte, mask, k, device, chunk, memory_budget_mb, threads, n_rows) -> _Context:
        n, dim = X.shape
        dev = _resolve_device(device)
        threads = int(threads or _default_threads())
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        budget = _budget_bytes(memory_budget_mb)
        n_labels = ytr.shape[0]
        # Host: each worker holds a group of sorted rows (~92 bytes per element: packed keys,
        # order, gathered distances, flags, and one label's match/terms/values/limbs at a time) and
        # two float64 accumulators per label. Device: the whole chunk at once (~160 bytes/element).
        if dev is None:
            fixed = threads * 16 * n_labels * n
            group = max(1, min(-(-_ROW_ELEMS // n), int(0.25 * budget - fixed) // max(1, threads * 92 * n)))
            per_test = 8 * n + 8 * dim  # the chunk's distance matrix + its test features
            worker_bytes = fixed + threads * 92 * n
        else:
            group = 1
            per_test = 8 * dim + 160 * n
            worker_bytes = 16 * n_labels * n
        max_chunk = int(0.5 * budget) // per_test
        if max_chunk < 1 or worker_bytes > 0.25 * budget:
            need = (2 * per_test + 4 * worker_bytes) / 2**20
            raise ValueError(
                f"memory_budget_mb={budget / 2**20:.0f} is too small for N={n}, D={dim}, L={n_labels}: "
                f"need at least about {need:.0f} MB"
            )
        if chunk is not None:
            if isinstance(chunk, bool) or int(chunk) < 1:
                raise ValueError(f"chunk must be a positive number of test points, got {chunk!r}")
            chunk = int(chunk)
        else:
            chunk = max_chunk
        chunk = max(1, min(chunk, n_rows))
        train_block = max(1, min(n, int(0.25 * budget) // (8 * (dim + chunk))))
        pos = np.arange(1, n + 1, dtype=np.float64)
        weights = np.minimum(float(k), pos) / (pos * k)
        low_bits = max(1, (n - 1).bit_length())
        return _Context(X, T, ytr, yte, mask, k, dev, chunk, train_block, group, threads,
                        np.empty(n, np.float64), False, weights, low_bits)

    @property
    def bound_b(self) -> float:
        """Upper bound on the largest train norm: sqrt(computed |x|^2 (1 + gamma_D)), plus the
        rounding of the square root."""
        return math.sqrt(float(self.norms.max()) * (1.0 + _gamma(self.X.shape[1]))) * (1.0 + 4 * _U64)

    def _train_block(self, j0: int, j1: int, out: np.ndarray) -> np.ndarray:
        """Train rows j0:j1 as float64 in ``out``; the first pass also validates them and keeps
        their norms (so the train features are converted once per chunk, never in a separate pass)."""
        if self.norms_done:
            return _f64_rows(self.X, j0, j1, out)
        block, sq = _rows_f64(self.X, j0, j1, "train_x", out)
        self.norms[j0:j1] = sq
        self.norms_done = j1 == self.n
        return block

    def _train_buffer(self) -> np.ndarray:
        """One float64 buffer of ``train_block`` rows, reused by every block of a chunk."""
        return np.empty((min(self.train_block, self.n), self.X.shape[1]))

    # -- one chunk ------------------------------------------------------------------------------

    def run_chunk(self, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact limb sums (int64, (L, N)) of test rows c0:c1."""
        tests, sq_test = _rows_f64(self.T, c0, c1, "test_x")
        dist = self._distances(tests, sq_test)  # also fills the train norms on the first chunk
        # Rigorous bound on |computed - correctly rounded| distance per test row (see module doc).
        reach = (np.sqrt(sq_test * (1.0 + _gamma(tests.shape[1]))) * (1.0 + 4 * _U64) + self.bound_b) ** 2
        err = _gamma(tests.shape[1] + 9) * reach
        # The packed sort key drops `low_bits` bits of each distance: < 2**(low_bits - 52) |d|.
        trunc = 2.0 ** (self.low_bits - 51) * reach
        # A misordered pair a..b has truncated(b) - truncated(a) <= 2 err + trunc, and so has every
        # adjacent pair between them: flag those runs (level 1), then re-sort them.
        thr1 = (2.0 * err + trunc) * (1.0 + 1e-6)
        thr2 = 2.0 * err * (1.0 + 1e-6)
        rows = _ChunkRows(self, c0, c1, tests, sq_test, thr1, thr2)
        if self.device is None:
            return _host_chunk(dist, rows)
        return _torch_chunk(dist, rows)

    def _distances(self, tests: np.ndarray, sq_test: np.ndarray):
        """Squared distances (c, N) float64 by blocked GEMM: |t|^2 + |x|^2 - 2 t.x.

        On the host only the products -2 t.x are computed here; :func:`_host_part` finishes the
        distances row group by row group, in cache."""
        if self.device is None:
            return self._dots_host(-2.0 * tests)  # scaling by -2 is exact: the GEMM gives -2 t.x
        import torch

        dev = self.device
        t = torch.from_numpy(tests).to(dev)
        n = self.n
        out = torch.empty((tests.shape[0], n), dtype=torch.float64, device=dev)
        buffer = self._train_buffer()
        for j0 in range(0, n, self.train_block):
            j1 = min(j0 + self.train_block, n)
            # .to() copies synchronously (or aliases on the CPU): addmm reads it before the refill
            xb = torch.from_numpy(self._train_block(j0, j1, buffer)).to(dev)
            norms = torch.from_numpy(self.norms[j0:j1]).to(dev)
            if j0 == 0 and j1 == n:
                torch.addmm(norms, t, xb.T, beta=1.0, alpha=-2.0, out=out)
            else:
                out[:, j0:j1] = torch.addmm(norms, t, xb.T, beta=1.0, alpha=-2.0)
            del xb
        out += torch.from_numpy(sq_test).to(dev)[:, None]
        return out

    def _dots_host(self, tests: np.ndarray) -> np.ndarray:
        n = self.n
        out = np.empty((tests.shape[0], n))
        buffer = self._train_buffer()
        with threadpool_limits(limits=self.threads, user_api="blas"):
            for j0 in range(0, n, self.train_block):
                j1 = min(j0 + self.train_block, n)
                # BLAS writes straight into the column block of `out` (no temporary)
                np.matmul(tests, self._train_block(j0, j1, buffer).T, out=out[:, j0:j1])
        return out


@dataclass
class _ChunkRows:
    """Per-chunk row data shared by both backends."""

    ctx: _Context
    c0: int
    c1: int
    tests: np.ndarray  # (c, D) float64
    sq_test: np.ndarray  # (c,) squared norms of the test rows
    thr1: np.ndarray  # (c,) level-1 near-tie threshold (packed-key order)
    thr2: np.ndarray  # (c,) level-2 threshold (float64 order)

    def labels(self) -> np.ndarray:
        return self.ctx.yte[self.c0:self.c1]

    def active(self) -> np.ndarray | None:
        return None if self.ctx.mask is None else self.ctx.mask[self.c0:self.c1]


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _default_threads() -> int:
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    if device is None or (isinstance(device, str) and device == "host"):
        return None
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
    return dev


def _budget_bytes(memory_budget_mb: float | None) -> float:
    if memory_budget_mb is None:
        memory_budget_mb = float(os.environ.get("DDVAL_MEMORY_BUDGET_MB", DEFAULT_MEMORY_BUDGET_MB))
    if not memory_budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be > 0, got {memory_budget_mb!r}")
    return float(memory_budget_mb) * 2**20


# ---------------------------------------------------------------------------------------------
# Host backend: NumPy SIMD sort + vectorised recursion, one worker thread per part of the chunk
# ---------------------------------------------------------------------------------------------


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
    for part_hi, part_lo in results:  # exact: power-of-two scaling of sums that are exact
        hi += (part_hi * 2.0**HI_BITS).astype(np.int64)
        lo += (part_lo * 2.0**LO_BITS).astype(np.int64)
    return hi, lo


def _host_part(dist: np.ndarray, rows: _ChunkRows, r_start: int, r_stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact limb sums of test rows r_start:r_stop, in units: (L, N) float64 multiples of 2**-31 and
    2**-63 (exact sums, see :func:`_limbs_np`). Every step writes into buffers reused by each
    group of rows: a fresh array of a group's size costs more in page faults than the step."""
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
    """One worker's scratch arrays for a group of ``g`` rows of N positions (about 52 bytes each)."""

    key: np.ndarray  # int64 packed sort keys
    order: np.ndarray  # int64 training index per position
    sign: np.ndarray  # int64 scratch of _flip_negative
    gap: np.ndarray  # float64 gaps between neighbouring truncated distances
    near: np.ndarray  # bool near-tie flags
    codes: np.ndarray  # int8/int32 label codes in sorted order
    match: np.ndarray  # bool label matches in sorted order
    terms: np.ndarray  # float64 recursion terms, then the values s
    high: np.ndarray  # float64 high limbs

    @classmethod
    def allocate(cls, g: int, n: int, code_dtype: np.dtype) -> _HostBuffers:
        i64, f64 = np.empty((g, n), np.int64), np.empty((g, n))
        return cls(i64, np.empty_like(i64), np.empty_like(i64), f64, np.empty((g, max(0, n - 1)), bool),
                   np.empty((g, n), code_dtype), np.empty((g, n), bool), np.empty_like(f64), np.empty_like(f64))


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


def _position_limbs(order: np.ndarray, train_codes: np.ndarray, test_codes: np.ndarray, weights: np.ndarray,
                    buf: _HostBuffers) -> tuple[np.ndarray, np.ndarray]:
    """Limbs of the values at each sorted position of some rows (one label): matches, recursion,
    split, all in ``buf``."""
    rows = len(order)
    codes = np.take(train_codes, order, out=buf.codes[:rows], mode="clip")  # "clip": unbuffered
    match = np.equal(codes, test_codes[:, None], out=buf.match[:rows])
    return _limbs_np(_recursion_np(match, weights, buf.terms[:rows]), buf.high[:rows])


def _flip_negative(bits: np.ndarray, sign: np.ndarray, out: np.ndarray) -> np.ndarray:
    """bits ^ ((bits >> 63) & 0x7FF..F): float64 bits <-> order-preserving int64 (an involution)."""
    np.right_shift(bits, 63, out=sign)
    np.bitwise_and(sign, _MAXPOS, out=sign)
    return np.bitwise_xor(bits, sign, out=out)


def _recursion_np(match: np.ndarray, weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-position values s = reverse_cumsum((m - m_next) * w), m_next of the last position = 0."""
    m = match.view(np.int8)
    step = np.empty(m.shape, np.int8)
    np.subtract(m[:, :-1], m[:, 1:], out=step[:, :-1])
    step[:, -1] = m[:, -1]
    terms = np.multiply(step, weights, out=out)
    np.cumsum(terms[:, ::-1], axis=1, out=terms[:, ::-1])
    return terms


#: Adding then subtracting 1.5 * 2**(52 - b) rounds |s| < 2**(51 - b) to a multiple of 2**-b, half to
#: even, exactly as rint(s * 2**b) * 2**-b (the constant is an even multiple of 2**-b).
_ROUND_HI = 1.5 * 2.0 ** (52 - HI_BITS)
_ROUND_LO = 1.5 * 2.0 ** (52 - LO_BITS)


def _limbs_np(s: np.ndarray, high: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split values |s| <= 1 into two limbs, in place: s ~ hi + lo with hi a multiple of 2**-31
    (exact split) and lo = the rest rounded once to a multiple of 2**-63 (|lo| <= 2**-32).

    Returns (hi, lo); ``lo`` overwrites ``s``. Sums of such limbs are exact in float64 while
    |sum hi| < 2**22 and |sum lo| < 2**-10, i.e. for up to 2**21 test points.
    """
    hi = np.add(s, _ROUND_HI, out=high)
    hi -= _ROUND_HI
    s -= hi  # exact (Sterbenz): |rest| <= 2**-32
    s += _ROUND_LO
    s -= _ROUND_LO
    return hi, s


# ---------------------------------------------------------------------------------------------
# Torch backend: the same steps as tensor ops on any device (whole chunk at once)
# ---------------------------------------------------------------------------------------------


def _torch_chunk(dist: torch.Tensor, rows: _ChunkRows) -> tuple[np.ndarray, np.ndarray]:
    import torch

    ctx = rows.ctx
    dev = dist.device
    n, n_labels = ctx.n, ctx.n_labels
    low_mask = (1 << ctx.low_bits) - 1
    index = torch.arange(n, device=dev, dtype=torch.int64)
    bits = dist.view(torch.int64)
    key = bits ^ ((bits >> 63) & int(_MAXPOS))
    key = (key & ~low_mask) | index
    key = torch.sort(key, dim=1).values
    order = key & low_mask
    trunc = key & ~low_mask
    trunc = (trunc ^ ((trunc >> 63) & int(_MAXPOS))).view(torch.float64)
    thr1 = torch.from_numpy(rows.thr1).to(dev)
    near = (trunc[:, 1:] - trunc[:, :-1]) <= thr1[:, None]
    fix = torch.nonzero(near.any(dim=1)).flatten().tolist()
    if fix:
        order_np = order[fix].cpu().numpy()
        d_np, near_np = dist[fix].cpu().numpy(), near[fix].cpu().numpy()
        for j, i in enumerate(fix):
            _resolve_near_ties(order_np[j], d_np[j], near_np[j], rows, i)
        order[fix] = torch.from_numpy(order_np).to(dev)
    # Inverse permutation by a second sort: deterministic on every device (no scatter/atomics).
    rank = torch.argsort(order, dim=1)
    weights = torch.from_numpy(ctx.weights).to(dev)
    ytr = torch.from_numpy(ctx.ytr).to(dev)
    labels = torch.from_numpy(rows.labels()).to(dev)
    active = rows.active()
    hi = torch.zeros((n_labels, n), dtype=torch.float64, device=dev)
    lo = torch.zeros((n_labels, n), dtype=torch.float64, device=dev)
    for lab in range(n_labels):
        match = (ytr[lab][order] == labels[:, lab : lab + 1]).to(torch.int8)
        diff = match.clone()
        diff[:, :-1] -= match[:, 1:]
        s = (diff.to(torch.float64) * weights).flip(1).cumsum(1).flip(1)
        h = torch.round(s * 2.0**HI_BITS)
        low = torch.round((s - h * 2.0**-HI_BITS) * 2.0**LO_BITS)
        if active is not None:
            keep = torch.from_numpy(active[:, lab]).to(dev).to(torch.float64)[:, None]
            h, low = h * keep, low * keep
        hi[lab] = h.gather(1, rank).sum(0)  # integer-valued float64 < 2**53: exact in any order
        lo[lab] = low.gather(1, rank).sum(0)
    return hi.cpu().numpy().astype(np.int64), lo.cpu().numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Exactness guard (rare path, NumPy, one test row)
# ---------------------------------------------------------------------------------------------


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
