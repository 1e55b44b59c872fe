"""One call of the engine: the chunk plan, the blocked float64 GEMM and the guard's error bounds.

:class:`_EngineCall` holds the inputs, the train norms, the memory plan (test points per chunk, train
rows per GEMM block, rows per host worker group) and the backend; :meth:`_EngineCall.run_chunk`
computes the distances of one chunk of test points and hands them to the host path
(:mod:`.host`) or the torch path (:mod:`.torch_path`) with the bounds of the exactness guard.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from ddval.valuation.knn_shapley.chunk import _ChunkRows
from ddval.valuation.knn_shapley.host import _host_chunk
from ddval.valuation.knn_shapley.limbs import weight_units
from ddval.valuation.knn_shapley.torch_path import _torch_chunk
from ddval.valuation.knn_shapley.validation import _f64_rows, _rows_f64

if TYPE_CHECKING:
    import torch

#: Default working-memory budget when neither the argument nor ``$DDVAL_MEMORY_BUDGET_MB`` is set
#: (same as ``ValuationConfig.memory_budget_mb``).
DEFAULT_MEMORY_BUDGET_MB = 512

_U64 = 2.0**-53  # unit roundoff of float64
_ROW_ELEMS = 1 << 16  # elements per host row group: large enough to amortise Python, cache-sized


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): bound on the relative error of an n-term float64 sum."""
    return n * _U64 / (1.0 - n * _U64)


@dataclass
class _EngineCall:
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
    weights: np.ndarray  # (N,) int64 recursion weights w_i in units of 2**-62
    low_bits: int

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def n_labels(self) -> int:
        return self.ytr.shape[0]

    @staticmethod
    def build(X, T, ytr, yte, mask, k, device, chunk, memory_budget_mb, threads, n_rows) -> _EngineCall:
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
        weights = weight_units(n, k)
        low_bits = max(1, (n - 1).bit_length())
        return _EngineCall(
            X,
            T,
            ytr,
            yte,
            mask,
            k,
            dev,
            chunk,
            train_block,
            group,
            threads,
            np.empty(n, np.float64),
            False,
            weights,
            low_bits,
        )

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
            # Scaling by -2 is exact, so the GEMM gives -2 t.x. On the engine's own converted rows it is
            # done in place and undone (exactly: the scaled values are representable) rather than on a
            # copy as large as the chunk's features; rows that are a view of the caller's array are copied.
            if not tests.flags.owndata:
                return self._dots_host(-2.0 * tests)
            tests *= -2.0
            try:
                return self._dots_host(tests)
            finally:
                tests *= -0.5
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
