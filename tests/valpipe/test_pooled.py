"""Pooling, per-label balanced test sets, work units and their shard-independent reduction."""

import numpy as np
import pytest

from ddval.config import LABELS
from ddval.valuation.knn_shapley import knn_shapley
from ddval.valuation.pooled import balanced_indices, knn_sum, label_values, pool_features, label_test_mask, shard_slice


def test_balanced_indices_take_the_first_of_each_class_in_order():
    y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    assert balanced_indices(y, 2).tolist() == [0, 1, 2, 3]
    assert balanced_indices(y, 10).tolist() == list(range(8))
    assert balanced_indices(np.zeros(5), 3).tolist() == [0, 1, 2]  # a rare class just gives fewer
    with pytest.raises(ValueError, match="test_per_class"):
        balanced_indices(y, 0)


def test_pool_keeps_institution_ids_and_builds_per_label_test_sets(features_factory):
    feats = features_factory()
    pooled = pool_features(feats, per_class=2)
    assert pooled.n_train == 12 + 9 + 15
    assert pooled.institution.tolist() == ["a"] * 12 + ["b"] * 9 + ["c"] * 15
    assert np.array_equal(pooled.train_x[12:21], feats["b"].train.x)
    assert len(pooled.label_tests) == len(LABELS)
    used = set()
    for ell, rows in enumerate(pooled.label_tests):
        expected = []
        for name, f in feats.items():
            expected += [f"{name}-test-{i}" for i in balanced_indices(f.test.y[:, ell], 2)]
        assert pooled.test_ids[rows].tolist() == expected
        used.update(expected)
    # the pooled test points are the distinct scans of the balanced sets, in institution and partition order
    order = [f"{name}-test-{i}" for name in feats for i in range(10)]
    assert pooled.test_ids.tolist() == [sid for sid in order if sid in used] and len(used) < 30


def test_shared_test_pool_is_used_once(features_factory):
    feats = features_factory(shared_test=True)
    pooled = pool_features(feats, per_class=3)
    # three institutions, one shared pool of 10 scans: each used scan once
    used = {i for ell in range(len(LABELS)) for i in balanced_indices(feats["a"].test.y[:, ell], 3)}
    assert pooled.test_ids.tolist() == [f"shared-{i}" for i in sorted(used)]
    for ell, rows in enumerate(pooled.label_tests):
        assert len(set(rows.tolist())) == len(rows)
        assert pooled.test_ids[rows].tolist() == [f"shared-{i}" for i in balanced_indices(feats["a"].test.y[:, ell], 3)]
    # duplicated test points only reweight uniformly: the values equal those on the distinct points
    ell, rows = 0, pooled.label_tests[0]
    once = knn_shapley(pooled.train_x, pooled.train_y[:, ell], pooled.test_x[rows], pooled.test_y[rows, ell], k=3)
    thrice = np.repeat(rows, 3)
    copies = knn_shapley(pooled.train_x, pooled.train_y[:, ell], pooled.test_x[thrice], pooled.test_y[thrice, ell], k=3)
    np.testing.assert_allclose(once, copies, rtol=0, atol=1e-12)


def test_mismatched_feature_widths_are_an_error(features_factory):
    feats = features_factory()
    other = features_factory(d=7)
    with pytest.raises(ValueError, match="different widths"):
        pool_features({"a": feats["a"], "b": other["b"]}, 2)


def test_shard_slices_partition_the_test_rows():
    for m in (0, 1, 7, 30):
        for n in (1, 2, 3, 7):
            slices = [shard_slice(m, i, n) for i in range(n)]
            assert slices[0][0] == 0 and slices[-1][1] == m
            assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    with pytest.raises(ValueError, match="shard must be"):
        shard_slice(10, 3, 3)


def test_masked_sums_are_the_per_label_games_and_shards_add_up_exactly(features_factory):
    pooled = pool_features(features_factory(), per_class=3)
    mask = label_test_mask(pooled)
    m = len(pooled.test_ids)
    assert (
        mask.shape == (m, len(LABELS))
        and mask.any(axis=1).all()
        and [mask[:, l].sum() for l in range(len(LABELS))] == [len(r) for r in pooled.label_tests]
    )
    whole = label_values(knn_sum(pooled, 3))
    # each label's value is its own binary game over its balanced test set
    for ell, rows in enumerate(pooled.label_tests):
        direct = knn_shapley(pooled.train_x, pooled.train_y[:, ell], pooled.test_x[rows], pooled.test_y[rows, ell], k=3)
        np.testing.assert_allclose(whole[:, ell], direct, rtol=0, atol=1e-15)
    for n in (2, 3, 7):
        parts = [knn_sum(pooled, 3, rows=shard_slice(m, i, n)) for i in range(n)]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        assert np.array_equal(label_values(total), whole)  # bit-identical
    with pytest.raises(ValueError, match="no test points"):
        label_values(knn_sum(pooled, 3, rows=(3, 3)))
