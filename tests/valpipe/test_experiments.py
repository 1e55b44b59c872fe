"""Experiments: flip detection on a planted example, DP noise, scalability helpers."""

import numpy as np
import pandas as pd

from ddval.valuation.experiments import add_feature_noise, flip_detection, noisy_features, repeat_pooled
from ddval.valuation.pooled import pool_features
from ddval.valuation.views import crossover


def test_flip_detection_auroc_on_a_planted_example():
    rng = np.random.default_rng(0)
    n_flipped = rng.integers(0, 3, 200) * (rng.random(200) < 0.3)
    value = rng.normal(0.01, 0.001, 200) - 0.004 * (n_flipped > 0)  # flipped scans are worth less
    points = pd.DataFrame({"value": value, "n_flipped": n_flipped})
    det = flip_detection(points)
    assert det["n_flipped"] == (n_flipped > 0).sum() and det["n_clean"] == (n_flipped == 0).sum()
    assert det["auroc"] > 0.95
    # the score is -value: a perfect separation gives 1, the reversed one 0, no flips NaN
    perfect = pd.DataFrame({"value": [0.1, 0.2, -0.1, -0.3], "n_flipped": [0, 0, 1, 8]})
    assert flip_detection(perfect)["auroc"] == 1.0
    assert flip_detection(perfect.assign(value=-perfect["value"]))["auroc"] == 0.0
    assert np.isnan(flip_detection(perfect.assign(n_flipped=0))["auroc"])


def test_feature_noise_scales_with_each_institutions_std_and_is_seeded(features_factory):
    x = np.random.default_rng(1).normal(size=(4000, 3)) * np.array([1.0, 10.0, 0.1])
    noisy = add_feature_noise(x, 2.0, np.random.default_rng(0))
    np.testing.assert_allclose((noisy - x).std(axis=0), 2.0 * x.std(axis=0), rtol=0.05)
    assert np.array_equal(add_feature_noise(x, 0.0, np.random.default_rng(0)), x.astype(np.float32))
    feats = features_factory()
    a, b = noisy_features(feats, 1.0, seed=3, scale_index=1), noisy_features(feats, 1.0, seed=3, scale_index=1)
    assert all(np.array_equal(a[n].train.x, b[n].train.x) for n in feats)
    assert all(np.array_equal(a[n].test.x, feats[n].test.x) for n in feats)  # test features stay clean
    assert not np.array_equal(a["a"].train.x, noisy_features(feats, 1.0, seed=4, scale_index=1)["a"].train.x)


def test_repeated_points_keep_rows_and_break_exact_ties(features_factory):
    pooled = pool_features(features_factory(), 3)
    big = repeat_pooled(pooled, 80, seed=0)
    assert big.n_train == 80 and np.array_equal(big.train_x[:36], pooled.train_x)
    assert np.array_equal(big.train_y[36:72], pooled.train_y) and big.institution[40] == pooled.institution[4]
    diff = np.abs(big.train_x[36:72] - pooled.train_x)
    assert (diff > 0).all() and (diff < 0.01 * pooled.train_x.std(axis=0) * 10).all()
    assert repeat_pooled(pooled, 10).n_train == 10


def test_crossover():
    scal = pd.DataFrame(
        [
            ("ddval", 2, 1.0, True),
            ("ddval", 4, 1.2, True),
            ("or", 2, 0.5, True),
            ("or", 4, 3.0, False),
            ("safe", 2, 0.1, True),
            ("safe", 4, 0.2, True),
        ],
        columns=["method", "n_clients", "wall_time_s", "measured"],
    )
    out = crossover(scal).set_index("method")
    assert out.at["or", "ddval_faster_from_n"] == 4 and not out.at["or", "measured"]
    assert pd.isna(out.at["safe", "ddval_faster_from_n"])
    assert crossover(scal.iloc[0:0]).empty
