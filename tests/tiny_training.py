"""The tiny DenseNet the training and valuation unit tests train, and its tiny data: one place for both.

A few rounds of a DenseNet with one layer per block and 8 initial features on 32-pixel images train in
seconds on a CPU in one thread. ``tests/conftest.py`` puts this folder on ``sys.path`` (the suite runs
with ``--import-mode=importlib``), so test modules and conftests import it as ``tiny_training``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ddval.config import TrainConfig
from ddval.train.setting_data import SettingData

IMAGE = 32  # the smallest input a DenseNet's five halvings accept

#: ``train:`` overrides (as a preset's YAML would write them) of the tiny DenseNet on a CPU.
TINY_TRAIN: dict = {
    "max_rounds": 3,
    "patience": 3,
    "batch_size": 8,
    "eval_batch_size": 16,
    "lr": 0.05,
    "small_growth_rate": 4,
    "small_block_config": [1, 1, 1, 1],
    "small_init_features": 8,
    "threads": 1,
    "device": "cpu",
}


def tiny_train_config(**changes) -> TrainConfig:
    """The tiny DenseNet's training settings, built directly (not pretrained), with ``changes`` applied.

    Args:
        **changes: ``TrainConfig`` fields that replace the tiny settings.

    Returns:
        The ``TrainConfig``.
    """
    base = {**TINY_TRAIN, "small_block_config": (1, 1, 1, 1), "model": "densenet_small", "pretrained": False}
    return TrainConfig(**{**base, **changes})


def tensor_dataset(n: int, seed: int, shift: float = 0.0) -> TensorDataset:
    """Images whose mean brightness carries the labels, so a few steps learn something."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, 8, generator=g) < 0.4).float()
    x = torch.randn(n, 3, IMAGE, IMAGE, generator=g) * 0.5
    x[:, 0] += (y[:, :4] @ torch.tensor([1.0, -1.0, 0.5, 0.25]))[:, None, None] + shift
    return TensorDataset(x, y)


def tiny_setting_data(names: Sequence[str]) -> SettingData:
    """A setting of tiny institutions: 16 train, 6 validation and 10 test scans each (:func:`tensor_dataset`
    with seeds ``i``, ``10 + i``, ``20 + i`` for the ``i``-th name).

    Args:
        names: The institutions, in the setting's order.

    Returns:
        The partition and the datasets of every institution.
    """
    frame = pd.DataFrame(
        [
            {"institution": n, "split": s, "scan_id": f"{n}-{s}-{i}"}
            for n in names
            for s, k in [("train", 16), ("val", 6), ("test", 10)]
            for i in range(k)
        ]
    )
    return SettingData(
        partition=frame,
        train={n: tensor_dataset(16, seed=i) for i, n in enumerate(names)},
        val={n: tensor_dataset(6, seed=10 + i) for i, n in enumerate(names)},
        test={n: tensor_dataset(10, seed=20 + i) for i, n in enumerate(names)},
    )
