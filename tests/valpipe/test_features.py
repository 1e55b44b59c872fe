"""Deep features: the hooked layer, pooling, shapes, determinism and the shared file format."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ddval.train.models import build_model, feature_layer
from ddval.valuation.features import (
    FEATURE_LAYER,
    capture,
    extract_features,
    hooked_layer,
    read_features,
    write_features,
)


def _model(train_cfg_factory):
    torch.manual_seed(0)
    return build_model(train_cfg_factory()).eval()


def _data(n=10, size=64):
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.zeros(n, 8))


def test_hook_captures_the_last_dense_block_before_norm5(train_cfg_factory):
    model = _model(train_cfg_factory)
    assert hooked_layer(model) is feature_layer(model) and FEATURE_LAYER == "features.denseblock4"
    x = _data(4)[:][0]
    with capture(hooked_layer(model)) as out:
        model(x)
    # the block's output is what the features stack yields before norm5 (no BN, no ReLU, no pooling)
    trunk = torch.nn.Sequential(*[m for name, m in model.features.named_children() if name != "norm5"])
    with torch.no_grad():
        expected = trunk(x)
    assert len(out) == 1 and torch.equal(out[0], expected)
    assert not torch.equal(out[0], model.features.norm5(expected))


def test_flatten_and_gap_shapes(train_cfg_factory):
    model = _model(train_cfg_factory)
    data = _data(10, size=64)  # 64 px -> a 2 x 2 map after the five halvings
    with capture(hooked_layer(model)) as out, torch.no_grad():
        model(data[:1][0])
    c, h, w = out[0].shape[1:]
    assert (h, w) == (2, 2)
    flat = extract_features(model, data, pooling="flatten", batch_size=4)
    gap = extract_features(model, data, pooling="gap", batch_size=4)
    assert flat.shape == (10, c * h * w) and gap.shape == (10, c) and flat.dtype == np.float32
    np.testing.assert_allclose(gap, flat.reshape(10, c, h * w).mean(axis=2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown pooling"):
        extract_features(model, data, pooling="max")


def test_features_are_deterministic_and_batch_independent(train_cfg_factory):
    model = _model(train_cfg_factory)
    data = _data(10, size=32)
    a = extract_features(model, data, batch_size=3)
    b = extract_features(model, data, batch_size=3)
    c = extract_features(model, data, batch_size=10)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)  # eval-mode BN: one image does not see another
    f16 = extract_features(model, data, dtype="float16")
    assert f16.dtype == np.float16 and model.training is False


def test_feature_file_round_trip_and_errors(tmp_path, features_factory):
    feats = features_factory()["a"]
    path = write_features(tmp_path / "a.npz", feats)
    back = read_features(path)
    assert back.institution == "a"
    for s in ("train", "test"):
        for k in ("x", "y", "ids", "patients", "sex", "age"):
            assert np.array_equal(getattr(getattr(back, s), k), getattr(getattr(feats, s), k))
    with np.load(path) as npz:
        assert {"train_x", "train_y", "train_ids", "test_x", "test_y", "test_ids"} <= set(npz.files)
        np.savez(tmp_path / "broken.npz", **{k: npz[k] for k in npz.files if k != "test_y"})
    with pytest.raises(KeyError, match=r"broken\.npz.*test_y"):
        read_features(tmp_path / "broken.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_features(tmp_path / "missing.npz")
