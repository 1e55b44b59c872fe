"""Per-label AUROC, the NaN rule for single-class labels, and the coalition utility."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import TensorDataset

from ddval.config import LABELS
from ddval.train.metrics import coalition_utility, evaluate, mean_auroc, per_label_auroc


def test_per_label_auroc_matches_sklearn_and_marks_single_class_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 3)) < 0.5).astype(float)
    y[:, 2] = 1.0  # a single class: no AUROC
    s = rng.random((50, 3))
    out = per_label_auroc(y, s)
    assert out[0] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert out[1] == pytest.approx(roc_auc_score(y[:, 1], s[:, 1]))
    assert math.isnan(out[2])
    assert mean_auroc(out) == pytest.approx((out[0] + out[1]) / 2)
    assert math.isnan(mean_auroc([math.nan, math.nan]))
    with pytest.raises(ValueError):
        per_label_auroc(y, s[:, :2])


class Echo(nn.Module):
    """Scores = the first 8 pixels of the image: a model whose AUROC we know."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.flatten(1)[:, :8] + 0 * self.dummy


def _set(y: torch.Tensor, scores: torch.Tensor) -> TensorDataset:
    return TensorDataset(scores.reshape(len(y), 1, 1, 8), y)


def test_evaluate_and_coalition_utility():
    y = torch.tensor([[0.0] * 8, [1.0] * 8, [0.0] * 8, [1.0] * 8])
    perfect = _set(y, y * 0.8 + 0.1)
    inverted = _set(y, 1 - y)
    half = _set(y, torch.tensor([[0.1] * 8, [0.9] * 8, [0.9] * 8, [0.1] * 8]))
    res = evaluate(Echo(), perfect, batch_size=3)
    assert list(res.index) == [*LABELS, "mean"] and (res == 1.0).all()
    u = coalition_utility(Echo(), {"a": perfect, "b": inverted, "c": half}, batch_size=2)
    assert u.per_set["mean"].tolist() == [1.0, 0.0, 0.5]
    assert u.value == pytest.approx(0.5)
    assert u.per_label.tolist() == pytest.approx([0.5] * 8)


def test_utility_leaves_out_labels_without_auroc():
    y = torch.tensor([[0.0] * 8, [1.0] * 8, [0.0] * 8, [1.0] * 8])
    y[:, 7] = 1.0  # pneumothorax single-class in this test set
    scores = y.clone()
    scores[:, 0] = 1 - y[:, 0]  # atelectasis inverted: 0.0
    u = coalition_utility(Echo(), {"a": _set(y, scores)})
    assert math.isnan(u.per_set.loc["a", "pneumothorax"])
    assert u.value == pytest.approx((0.0 + 6 * 1.0) / 7)
