"""The pooled DDVal problem: every institution's shared train features against balanced test sets.

* **Train set**: the train features of all institutions, concatenated in config order (the
  institution of every row is kept, so values are later summed by institution *id*, never by
  index slices).
* **Test sets, one per label** (the paper's ``get_loaded_deep_features``): each institution
  contributes, from its own test split and in partition order, its first ``test_per_class``
  scans with label ℓ = 0 and its first ``test_per_class`` with ℓ = 1 (fewer when a class is rarer).
  The pooled test points are the distinct scans of these sets (institutions in order, scans in
  partition order); scans of a test split that no label's set uses are not part of the problem
  (the paper's test splits are 20 % of each dataset, 22,000-75,000 scans, of which about 2,400 per
  institution are used).
  A scan that more than one institution contributes (``shared_test`` settings, where all
  institutions hold the same test pool) is used **once**: the original pooled six identical
  copies, which only reweights every test point by the same factor 6, so the values are the same
  and the distinct points cost a sixth of the work.
* **Sharding**: all labels share one sort per test point (the engine's ``test_mask``: test point
  ``t`` counts for label ℓ only when it is in ℓ's balanced set). A SLURM shard is a contiguous
  slice of the distinct test points; the engine keeps the un-averaged sums exactly
  (:class:`ddval.valuation.knn_shapley.KnnShapleySum`), so the shards add up to the unsharded
  result bit for bit.
* **Memory-mapped features** (:func:`ddval.valuation.features.read_features` with ``mmap=True``):
  the pooled train and test features are lazy row views (:mod:`ddval.valuation.mapped`) in the
  files' dtype, which the engine reads block by block; in-memory features are concatenated as
  ``dtype`` arrays. Both give the same values bit for bit (the engine works in float64).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ddval.config import LABELS
from ddval.valuation.features import InstitutionFeatures
from ddval.valuation.mapped import RowConcat, RowTake


@dataclass(frozen=True)
class PooledFeatures:
    """Train rows of all institutions and the distinct test rows with per-label balanced subsets."""

    train_x: np.ndarray | RowConcat  # (N, D)
    train_y: np.ndarray  # (N, L)
    institution: np.ndarray  # (N,) institution of each train row
    scan_id: np.ndarray
    patient_id: np.ndarray
    sex: np.ndarray
    age: np.ndarray
    test_x: np.ndarray | RowTake  # (M, D) distinct test scans of the balanced sets
    test_y: np.ndarray  # (M, L)
    test_ids: np.ndarray  # (M,)
    label_tests: tuple[np.ndarray, ...]  # per label: rows of test_x in its balanced test set
    institutions: tuple[str, ...]  # config order

    @property
    def n_train(self) -> int:
        return len(self.train_x)


def balanced_indices(y: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of the first ``per_class`` negatives and first ``per_class`` positives of the 0/1 vector
    ``y``, in their original order."""
    if per_class < 1:
        raise ValueError(f"valuation.test_per_class must be >= 1, got {per_class}")
    y = np.asarray(y)
    return np.sort(np.concatenate([np.flatnonzero(y == 0)[:per_class], np.flatnonzero(y == 1)[:per_class]]))


def pool_features(feats: Mapping[str, InstitutionFeatures], per_class: int, dtype: type = np.float32) -> PooledFeatures:
    """Pool the institutions' features (in mapping order) and build the per-label test sets.

    In-memory features are concatenated as ``dtype`` arrays; memory-mapped ones (any institution's
    ``x`` not an ``ndarray``) become lazy row views in their own dtype."""
    if not feats:
        raise ValueError("pool_features needs at least one institution")
    names = tuple(feats)
    train = [feats[n].train for n in names]
    widths = {f.train.x.shape[1] for f in feats.values()}
    if len(widths) != 1:
        raise ValueError(
            f"institutions' features have different widths {sorted(widths)}; were they extracted with the same model and pooling?"
        )
    balanced = {n: [balanced_indices(feats[n].test.y[:, ell], per_class) for ell in range(len(LABELS))] for n in names}
    # distinct test scans of the balanced sets, first appearance wins (institutions in order, rows in partition order)
    test_rows: dict[str, tuple[str, int]] = {}
    for n in names:
        used = np.unique(np.concatenate(balanced[n])) if balanced[n] else np.empty(0, np.int64)
        for i in used:
            test_rows.setdefault(str(feats[n].test.ids[i]), (n, int(i)))
    test_ids = np.array(list(test_rows), dtype=str)
    position = {sid: j for j, sid in enumerate(test_ids)}
    label_tests = []
    for ell in range(len(LABELS)):
        chosen: dict[int, None] = {}  # ordered set of rows of test_x
        for n in names:
            for i in balanced[n][ell]:
                chosen.setdefault(position[str(feats[n].test.ids[i])], None)
        label_tests.append(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    lazy = not all(isinstance(feats[n].train.x, np.ndarray) and isinstance(feats[n].test.x, np.ndarray) for n in names)
    train_x, test_x = (_lazy_x if lazy else _in_memory_x)(feats, names, list(test_rows.values()), dtype)
    return PooledFeatures(
        train_x=train_x,
        train_y=np.concatenate([t.y for t in train]),
        institution=np.concatenate([np.full(len(t), n) for n, t in zip(names, train)]),
        scan_id=np.concatenate([t.ids for t in train]),
        patient_id=np.concatenate([t.patients for t in train]),
        sex=np.concatenate([t.sex for t in train]),
        age=np.concatenate([t.age for t in train]),
        test_x=test_x,
        test_y=_stack([feats[n].test.y[i] for n, i in test_rows.values()], (0, len(LABELS))),
        test_ids=test_ids,
        label_tests=tuple(label_tests),
        institutions=names,
    )


def _stack(rows: list, empty_shape: tuple[int, int], dtype=None) -> np.ndarray:
    return np.stack(rows).astype(dtype or rows[0].dtype, copy=False) if rows else np.empty(empty_shape, dtype)


def _in_memory_x(feats, names, test_rows, dtype):
    train_x = np.concatenate([feats[n].train.x for n in names]).astype(dtype, copy=False)
    return train_x, _stack([feats[n].test.x[i] for n, i in test_rows], (0, train_x.shape[1]), dtype)


def _lazy_x(feats, names, test_rows, dtype):
    tests = RowConcat([feats[n].test.x for n in names])
    start = dict(zip(names, tests.bounds[:-1]))
    return RowConcat([feats[n].train.x for n in names]), RowTake(tests, [start[n] + i for n, i in test_rows])


def label_test_mask(pooled: PooledFeatures) -> np.ndarray:
    """``(M, L)`` boolean: test point ``t`` is in label ℓ's balanced test set."""
    mask = np.zeros((len(pooled.test_ids), len(pooled.label_tests)), dtype=bool)
    for ell, rows in enumerate(pooled.label_tests):
        mask[rows, ell] = True
    return mask


def shard_slice(n_test: int, shard: int, n_shards: int) -> tuple[int, int]:
    """The contiguous test rows ``[start, stop)`` that shard ``shard`` (0-based) of ``n_shards`` computes."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0..{n_shards - 1} (n_shards={n_shards}), got {shard}")
    bounds = np.linspace(0, n_test, n_shards + 1).round().astype(int)
    return int(bounds[shard]), int(bounds[shard + 1])


def knn_sum(
    pooled: PooledFeatures,
    k: int,
    *,
    rows: tuple[int, int] | None = None,
    device: str | None = None,
    chunk: int | None = None,
    threads: int | None = None,
    memory_budget_mb: float | None = None,
):
    """Exact un-averaged KNN-Shapley sums (:class:`~ddval.valuation.knn_shapley.KnnShapleySum`,
    8 labels, each over its balanced test set) over the test rows ``rows`` (default: all)."""
    from ddval.valuation.knn_shapley import knn_shapley_sum

    return knn_shapley_sum(
        pooled.train_x,
        pooled.train_y,
        pooled.test_x,
        pooled.test_y,
        k,
        test_slice=rows,
        test_mask=label_test_mask(pooled),
        device=device,
        chunk=chunk,
        threads=threads,
        memory_budget_mb=memory_budget_mb,
    )


def label_values(total) -> np.ndarray:
    """``(N, L)`` per-label values (means over each label's test set) of a complete sum; a label
    without test points is an error."""
    if (total.n_test == 0).any():
        empty = [LABELS[i] for i in np.flatnonzero(total.n_test == 0)]
        raise ValueError(f"no test points for label(s) {empty}")
    return total.values()
