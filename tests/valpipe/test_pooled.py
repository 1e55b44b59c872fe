"""Pooling, per-label balanced test sets, work units and their shard-independent reduction."""

import numpy as np
import pytest

from ddval.config import LABELS
from ddval.valuation.knn_shapley import knn_shapley
from ddval.valuation.pooled import Unit, balanced_indices, pool_features, reduce_units, shard_units, unit_sums, work_units


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
    assert len(pooled.test_ids) == 30 and len(pooled.label_tests) == len(LABELS)
    for ell, rows in enumerate(pooled.label_tests):
        expected = []
        for name, f in feats.items():
            expected += [f"{name}-test-{i}" for i in balanced_indices(f.test.y[:, ell], 2)]
        assert pooled.test_ids[rows].tolist() == expected


def test_shared_test_pool_is_used_once(features_factory):
    feats = features_factory(shared_test=True)
    pooled = pool_features(feats, per_class=3)
    assert len(pooled.test_ids) == 10  # three institutions, one shared pool
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


def test_units_cover_every_test_point_once_and_shards_partition_them():
    tests = [np.arange(10), np.arange(3), np.arange(0)]
    units = work_units(tests, block=4)
    assert units == [Unit(0, 0, 4), Unit(0, 4, 8), Unit(0, 8, 10), Unit(1, 0, 3)]
    for n in (1, 2, 3, 4, 7):
        parts = [shard_units(units, i, n) for i in range(n)]
        assert [u for p in parts for u in p] == units
    with pytest.raises(ValueError, match="shard must be"):
        shard_units(units, 3, 3)


def test_sharded_sums_reduce_to_exactly_the_unsharded_values(features_factory):
    pooled = pool_features(features_factory(), per_class=3)
    units = work_units(pooled.label_tests, block=4)
    whole = reduce_units(units, unit_sums(pooled, units, 3), pooled.label_tests, 4)
    for n in (2, 3, 5):
        sums = np.concatenate([unit_sums(pooled, shard_units(units, i, n), 3) for i in range(n)])
        assert np.array_equal(reduce_units(units, sums, pooled.label_tests, 4), whole)  # bit-identical
    # and the reduction is the mean over each label's test set of the engine's values
    for ell, rows in enumerate(pooled.label_tests):
        direct = knn_shapley(pooled.train_x, pooled.train_y[:, ell], pooled.test_x[rows], pooled.test_y[rows, ell], k=3)
        np.testing.assert_allclose(whole[:, ell], direct, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="exactly once"):
        reduce_units(units[:-1], np.zeros((len(units) - 1, pooled.n_train)), pooled.label_tests, 4)
