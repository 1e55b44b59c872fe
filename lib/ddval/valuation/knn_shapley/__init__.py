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
  transformations + an exact sum rounded once). Runs of points whose label matches are all equal
  are skipped: their order does not change any value.
* Integer recursion and exact accumulation (:mod:`.limbs`): the weights w_i = 1 / max(K, i+1) are
  rounded once to multiples of 2**-62 and the reverse cumulative sum runs in int64, so every
  per-test-point value is exact for those weights (within N 2**-63 of the true value) and does not
  depend on the order of any floating-point operation. Each value is split exactly into two limbs
  (multiples of 2**-31 and 2**-62) whose sums are exact. Results are therefore bit-identical for any
  chunk size, thread count, backend or test-shard split (:class:`KnnShapleySum` adds exactly), and
  two players that are symmetric in every test point's game get bit-identical values (their exact
  difference is a sum of terms of equal weight that cancel in pairs; see :mod:`.limbs`). Players
  symmetric only on average over the test points agree to within N 2**-63, not bit for bit.
* Threads: on the host the GEMM runs on the BLAS thread pool (limited to ``threads`` with
  threadpoolctl) and sort + recursion on as many worker threads (NumPy releases the GIL); the
  default is torch's intra-op thread count when torch is loaded, else the usable cores. The host
  path needs no torch (its import alone is ~0.5 GB of RSS and seconds of start-up).
  ``device="cpu"/"cuda"`` runs the GEMM, sort and recursion as torch ops on that device instead
  (same values bit for bit on the CPU).

Layout of the package (one concern per module)
-----------------------------------------------
``__init__`` (this module): the public API and the maths above; :mod:`.validation`: input checks and
conversion to float64 rows; :mod:`.engine`: the chunk plan, the blocked GEMM and the guard's error
bounds; :mod:`.host`: the NumPy host path (packed-key sort, recursion); :mod:`.torch_path`: the
same steps as torch ops on any device; :mod:`.guard`: the exactness guard (exact order of near
ties); :mod:`.limbs`: the exact two-limb accumulation; :mod:`.reference`: the original per-test-point
loop (a test oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ddval.progress import progress
from ddval.valuation.knn_shapley.engine import DEFAULT_MEMORY_BUDGET_MB, _EngineCall  # noqa: F401 (re-exported)
from ddval.valuation.knn_shapley.limbs import HI_BITS, LO_BITS, MAX_TEST_POINTS
from ddval.valuation.knn_shapley.reference import knn_shapley_loop
from ddval.valuation.knn_shapley.validation import _as_features, _as_mask, _label_codes, _resolve_slice

if TYPE_CHECKING:  # torch is imported only for the device path and torch inputs
    import torch

__all__ = ["KnnShapleySum", "knn_shapley", "knn_shapley_sum", "knn_shapley_loop"]


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
        return {
            "hi": self.hi,
            "lo": self.lo,
            "n_test": self.n_test,
            "k": np.array(self.k),
            "multilabel": np.array(self.multilabel),
        }

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

    Args:
        train_x: Training features, shape (N, ...) (flattened to (N, D)); float16/32/64 or integer
            arrays, NumPy memory maps (read block by block), or torch tensors.
        train_y: Training labels, shape (N,) -> values of shape (N,); or (N, L) (multi-label) -> (N, L),
            one label-match game per column. Any integer-valued labels (multi-class works too).
        test_x: Test features, shape (M, ...), of the same kinds as ``train_x``.
        test_y: Test labels, shape (M,) or (M, L), matching ``train_y``.
        k: K of the KNN classifier (paper: 3).
        device: ``None`` or ``"host"``: the host path (BLAS GEMM + NumPy SIMD sort, worker threads).
            ``"cpu"``, ``"cuda"``, a ``torch.device``: sort and recursion as torch ops on that device.
            ``"auto"``: ``"cuda"`` when available, else the host path. All give the same values
            (bit-identical on the CPU).
        chunk: Test points per chunk; default: as many as ``memory_budget_mb`` allows.
        test_mask: Optional boolean (M, L) (or (M,)): test point t counts for label l only where True
            (the paper's balanced test set per label, sharing one sort per test point). Each label is
            averaged over its own count; a label without test points gives NaN.
        memory_budget_mb: Working memory (excluding the inputs): distances of a chunk, converted train
            blocks and the per-thread buffers. Default ``$DDVAL_MEMORY_BUDGET_MB`` or 512.
        threads: Threads on the host (BLAS and workers); default (``None`` or 0): torch's intra-op
            thread count when torch is loaded, else the usable cores.

    Returns:
        The values as ``numpy.ndarray`` (float64), shape (N,) or (N, L).
    """
    total = knn_shapley_sum(
        train_x,
        train_y,
        test_x,
        test_y,
        k,
        device=device,
        chunk=chunk,
        test_mask=test_mask,
        memory_budget_mb=memory_budget_mb,
        threads=threads,
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

    ctx = _EngineCall.build(X, T, ytr, yte, mask, k, device, chunk, memory_budget_mb, threads, stop - start)
    starts = range(start, stop, ctx.chunk)
    for c0 in progress(starts, desc="KNN-Shapley", unit="chunk", leave=False, disable=len(starts) < 2):
        c1 = min(c0 + ctx.chunk, stop)
        chunk_hi, chunk_lo = ctx.run_chunk(c0, c1)
        hi += chunk_hi
        lo += chunk_lo
    return KnnShapleySum(hi, lo, n_test, k, multilabel)
