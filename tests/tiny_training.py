"""The tiny DenseNet the training and valuation unit tests train: one place for its settings.

A few rounds of a DenseNet with one layer per block and 8 initial features on 32-pixel images train in
seconds on a CPU in one thread. ``tests/conftest.py`` puts this folder on ``sys.path`` (the suite runs
with ``--import-mode=importlib``), so test modules and conftests import it as ``tiny_training``.
"""

from __future__ import annotations

from ddval.config import TrainConfig

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
