"""The pooled DDVal problem: every institution's shared train features against balanced test sets.

* **Train set**: the train features of all institutions, concatenated in config order (the
  institution of every row is kept, so values are later summed by institution *id*, never by
  index slices).
* **Test sets, one per label** (the paper's ``get_loaded_deep_features``): each institution
  contributes, from its own test split and in partition order, its first ``test_per_class``
  scans with label ℓ = 0 and its first ``test_per_class`` with ℓ = 1 (fewer when a class is rarer).
  A scan that more than one institution contributes (``shared_test`` settings, where all
  institutions hold the same test pool) is used **once**: the original pooled six identical
  copies, which only reweights every test point by the same factor 6, so the values are the same
  and the distinct points cost a sixth of the work.
* **Work units**: the KNN-Shapley sums are computed in fixed blocks of ``valuation.test_block``
  test points of one label. A unit's result is the *sum* over its test points of the per-test-
  point values; the value of label ℓ is the sum of its units, in unit order, divided by the number
  of its test points. Because the blocks do not depend on how the units are spread over SLURM
  shards, sharded and unsharded runs add the same numbers in the same order: bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ddval.config import LABELS
from ddval.progress import progress
from ddval.valuation.features import InstitutionFeatures


@dataclass(frozen=True)
class PooledFeatures:
    """Train rows of all institutions and the distinct test rows with per-label balanced subsets."""

    train_x: np.ndarray  # (N, D)
    train_y: np.ndarray  # (N, L)
    institution: np.ndarray  # (N,) institution of each train row
    scan_id: np.ndarray
    patient_id: np.ndarray
    sex: np.ndarray
    age: np.ndarray
    test_x: np.ndarray  # (M, D) distinct test scans
    test_y: np.ndarray  # (M, L)
    test_ids: np.ndarray  # (M,)
    label_tests: tuple[np.ndarray, ...]  # per label: rows of test_x in its balanced test set
    institutions: tuple[str, ...]  # config order

    @property
    def n_train(self) -> int:
        return len(self.train_x)


@dataclass(frozen=True)
class Unit:
    """One block of the work: test points ``label_tests[label][start:stop]``."""

    label: int
    start: int
    stop: int


def balanced_indices(y: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of the first ``per_class`` negatives and first ``per_class`` positives of the 0/1 vector
    ``y``, in their original order."""
    if per_class < 1:
        raise ValueError(f"valuation.test_per_class must be >= 1, got {per_class}")
    y = np.asarray(y)
    return np.sort(np.concatenate([np.flatnonzero(y == 0)[:per_class], np.flatnonzero(y == 1)[:per_class]]))


def pool_features(feats: Mapping[str, InstitutionFeatures], per_class: int, dtype: type = np.float32) -> PooledFeatures:
    """Pool the institutions' features (in mapping order) and build the per-label test sets."""
    if not feats:
        raise ValueError("pool_features needs at least one institution")
    names = tuple(feats)
    train = [feats[n].train for n in names]
    widths = {f.train.x.shape[1] for f in feats.values()}
    if len(widths) != 1:
        raise ValueError(f"institutions' features have different widths {sorted(widths)}; were they extracted with the same model and pooling?")
    # distinct test scans, first appearance wins (institutions in order, rows in partition order)
    test_rows: dict[str, tuple[str, int]] = {}
    for n in names:
        for i, sid in enumerate(feats[n].test.ids):
            test_rows.setdefault(str(sid), (n, i))
    test_ids = np.array(list(test_rows), dtype=str)
    position = {sid: j for j, sid in enumerate(test_ids)}
    test_x = np.stack([feats[n].test.x[i] for n, i in test_rows.values()]).astype(dtype, copy=False)
    test_y = np.stack([feats[n].test.y[i] for n, i in test_rows.values()])
    label_tests = []
    for ell in range(len(LABELS)):
        chosen: dict[int, None] = {}  # ordered set of rows of test_x
        for n in names:
            for i in balanced_indices(feats[n].test.y[:, ell], per_class):
                chosen.setdefault(position[str(feats[n].test.ids[i])], None)
        label_tests.append(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    return PooledFeatures(
        train_x=np.concatenate([t.x for t in train]).astype(dtype, copy=False),
        train_y=np.concatenate([t.y for t in train]),
        institution=np.concatenate([np.full(len(t), n) for n, t in zip(names, train)]),
        scan_id=np.concatenate([t.ids for t in train]),
        patient_id=np.concatenate([t.patients for t in train]),
        sex=np.concatenate([t.sex for t in train]),
        age=np.concatenate([t.age for t in train]),
        test_x=test_x,
        test_y=test_y,
        test_ids=test_ids,
        label_tests=tuple(label_tests),
        institutions=names,
    )


def work_units(label_tests: Sequence[np.ndarray], block: int) -> list[Unit]:
    """All units: per label (in label order), consecutive blocks of ``block`` test points."""
    if block < 1:
        raise ValueError(f"valuation.test_block must be >= 1, got {block}")
    return [Unit(ell, s, min(s + block, len(t))) for ell, t in enumerate(label_tests) for s in range(0, len(t), block)]


def shard_units(units: Sequence[Unit], shard: int, n_shards: int) -> list[Unit]:
    """The contiguous share of ``units`` that shard ``shard`` (0-based) of ``n_shards`` computes."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0..{n_shards - 1} (n_shards={n_shards}), got {shard}")
    bounds = np.linspace(0, len(units), n_shards + 1).round().astype(int)
    return list(units[bounds[shard]:bounds[shard + 1]])


def unit_sums(pooled: PooledFeatures, units: Sequence[Unit], k: int, *, device: str | None = None, chunk: int | None = None, desc: str = "KNN-Shapley") -> np.ndarray:
    """``(len(units), N)`` float64: for every unit, the sum over its test points of the exact
    KNN-Shapley values of the train points in that label's binary game."""
    from ddval.valuation.knn_shapley import knn_shapley

    out = np.zeros((len(units), pooled.n_train), dtype=np.float64)
    for j, u in enumerate(progress(units, desc=desc, leave=False, unit="block")):
        rows = pooled.label_tests[u.label][u.start:u.stop]
        values = knn_shapley(pooled.train_x, pooled.train_y[:, u.label], pooled.test_x[rows], pooled.test_y[rows, u.label], k=k, device=device, chunk=chunk)
        out[j] = np.asarray(values, dtype=np.float64) * len(rows)  # mean over the block -> sum
    return out


def reduce_units(units: Sequence[Unit], sums: np.ndarray, label_tests: Sequence[np.ndarray], block: int) -> np.ndarray:
    """``(N, L)`` per-label values (mean over each label's test points) from the unit sums; the
    units must be exactly :func:`work_units` ``(label_tests, block)`` (the sums are added in that order)."""
    if list(units) != work_units(label_tests, block) or len(sums) != len(units):
        raise ValueError("reduce_units needs the sums of every work unit exactly once, in order")
    n_labels = len(label_tests)
    totals = np.zeros((sums.shape[1], n_labels), dtype=np.float64)
    for j, u in enumerate(units):
        totals[:, u.label] += sums[j]
    sizes = np.array([len(t) for t in label_tests], dtype=np.float64)
    if (sizes == 0).any():
        empty = [LABELS[i] for i in np.flatnonzero(sizes == 0)]
        raise ValueError(f"no test points for label(s) {empty}")
    return totals / sizes
