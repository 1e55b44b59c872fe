"""XrayDataset and its transforms."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import tiny_image
from PIL import Image

from ddval.config import LABELS, TrainConfig
from ddval.data.dataset import IMAGENET_MEAN, IMAGENET_STD, XrayDataset, affine, build_transforms
from ddval.data.images import CorruptImageError


@pytest.fixture
def frame(tmp_path) -> pd.DataFrame:
    rows = []
    for i in range(5):
        path = tiny_image(tmp_path / f"img{i}.png", value=30 * i, size=(16, 16))
        rows.append(
            {"path": str(path), "scan_id": f"x:{i}", **{lab: float((i + k) % 2) for k, lab in enumerate(LABELS)}}
        )
    return pd.DataFrame(rows)


def denormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


@pytest.mark.parametrize("cache", [True, False])
def test_item_shapes_values_and_labels(frame, cache):
    ds = XrayDataset(frame, 16, cache=cache)
    assert len(ds) == 5 and (ds.images is not None) == cache
    x, y = ds[2]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.float32 and y.tolist() == frame.loc[2, list(LABELS)].tolist()
    raw = torch.from_numpy(np.array(Image.open(frame.loc[2, "path"]))).float() / 255
    back = denormalise(x)
    for c in range(3):  # grayscale replicated, then normalised per channel
        assert torch.allclose(back[c], raw, atol=1e-5)


def test_resizes_when_needed(tmp_path):
    path = tiny_image(tmp_path / "big.png", size=(40, 30))
    frame = pd.DataFrame([{"path": str(path), **{lab: 0.0 for lab in LABELS}}])
    assert XrayDataset(frame, 8)[0][0].shape == (3, 8, 8)


def test_eval_is_deterministic_train_augments_reproducibly(frame):
    cfg = TrainConfig(rotation_degrees=15, translate=0.1, hflip=True)
    ev = XrayDataset(frame, 16, train=False, train_cfg=cfg)
    assert torch.equal(ev[1][0], ev[1][0])
    tr = XrayDataset(frame, 16, train=True, train_cfg=cfg)
    torch.manual_seed(0)
    a = torch.stack([tr[1][0] for _ in range(6)])
    torch.manual_seed(0)
    b = torch.stack([tr[1][0] for _ in range(6)])
    assert torch.equal(a, b)
    assert not all(torch.equal(a[0], a[k]) for k in range(1, 6))
    off = XrayDataset(frame, 16, train=True, train_cfg=TrainConfig(augment=False))
    assert torch.equal(off[1][0], ev[1][0])


def test_affine_moves_pixels_as_documented():
    x = torch.zeros(1, 8, 8)
    x[0, 2, 1] = 1.0  # row 2, column 1

    def where(y):
        return torch.nonzero(y[0] > 0.5).tolist()

    assert where(affine(x, False, 0, 1 / 8, 0)) == [[2, 2]]  # one pixel right
    assert where(affine(x, False, 0, 0, 2 / 8)) == [[4, 1]]  # two pixels down
    assert where(affine(x, True, 0, 0, 0)) == [[2, 6]]  # mirrored
    assert where(affine(x, True, 0, 1 / 8, 0)) == [[2, 7]]  # mirrored, then shifted
    assert where(affine(x, False, 90, 0, 0)) == [[6, 2]]  # quarter turn counter-clockwise on screen
    assert torch.equal(affine(x, False, 0, 0, 0), x)


def test_build_transforms_on_pil_and_arrays(frame):
    t = build_transforms(16, train=False)
    img = Image.open(frame.loc[0, "path"])
    assert torch.equal(t(img), t(np.asarray(img)))
    with pytest.raises(ValueError, match="grayscale"):
        t(np.zeros((3, 4, 4, 2)))


@pytest.mark.parametrize("cache", [True, False])
def test_missing_image_is_an_error_naming_it(frame, cache):
    victim = frame.loc[3, "path"]
    os.unlink(victim)
    with pytest.raises(CorruptImageError, match=victim):
        ds = XrayDataset(frame, 16, cache=cache)
        for i in range(len(ds)):
            ds[i]


def test_cache_policy_follows_the_budget(frame, monkeypatch):
    monkeypatch.setenv("DDVAL_IMAGE_CACHE_MB", "0")
    lazy = XrayDataset(frame, 16)
    monkeypatch.setenv("DDVAL_IMAGE_CACHE_MB", "1")
    cached = XrayDataset(frame, 16)
    assert lazy.images is None and cached.images is not None
    assert all(torch.equal(lazy[i][0], cached[i][0]) for i in range(len(frame)))


def test_dataloader_batches(frame):
    loader = torch.utils.data.DataLoader(XrayDataset(frame, 16, train=True), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 16, 16) and y.shape == (4, 8)


def test_missing_columns(frame):
    with pytest.raises(KeyError, match="edema"):
        XrayDataset(frame.drop(columns="edema"), 16)
