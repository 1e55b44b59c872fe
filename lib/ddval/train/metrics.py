"""Evaluation: per-label AUROC (scikit-learn) and the coalition utility of the paper.

Rules, stated once:

* A label whose test set holds a single class has no AUROC: it is ``NaN``, never 0.5 or 0.
* A test set's mean AUROC is the mean over its labels that have an AUROC (``NaN`` labels are
  left out); it is ``NaN`` only when no label has one.
* A model's utility on several test sets (the paper's coalition utility) is the mean over the test
  sets of each set's mean AUROC; test sets without any AUROC are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ddval.config import LABELS


def per_label_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUROC of each column of ``y_score`` against the 0/1 column of ``y_true``; ``NaN`` where that
    column holds a single class. Shapes ``(N, L)`` → ``(L,)``."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be (N, L)")
    out = np.full(y_true.shape[1], np.nan)
    for j in range(y_true.shape[1]):
        if np.unique(y_true[:, j]).size == 2:
            out[j] = roc_auc_score(y_true[:, j], y_score[:, j])
    return out


def mean_auroc(aurocs: Sequence[float] | np.ndarray) -> float:
    """Mean over the labels that have an AUROC; ``NaN`` when none has one."""
    values = np.asarray(aurocs, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


@torch.no_grad()
def predict(
    model: nn.Module, data: Dataset | DataLoader, *, batch_size: int = 64, device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_score)`` of ``model`` (in eval mode) over ``data`` (a Dataset of ``(x, y)`` or a
    DataLoader yielding batches of them), in data order."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    scores, truths = [], []
    try:
        for x, y in loader:
            scores.append(model(x.to(device)).float().cpu())
            truths.append(torch.as_tensor(y).float())
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("cannot evaluate on an empty test set")
    return torch.cat(truths).numpy(), torch.cat(scores).numpy()


def evaluate(model: nn.Module, data: Dataset | DataLoader, *, labels: Sequence[str] = LABELS, **kwargs) -> pd.Series:
    """Per-label AUROC of ``model`` on ``data`` plus their ``mean`` (see the module rules)."""
    y_true, y_score = predict(model, data, **kwargs)
    if y_true.shape[1] != len(labels):
        raise ValueError(f"model/data have {y_true.shape[1]} labels, expected {len(labels)} ({', '.join(labels)})")
    aurocs = per_label_auroc(y_true, y_score)
    return pd.Series([*aurocs, mean_auroc(aurocs)], index=[*labels, "mean"], name="auroc")


@dataclass(frozen=True)
class Utility:
    """A model scored on several test sets: ``per_set`` (test set × labels + ``mean``), ``per_label``
    (mean over the test sets of each label's AUROC, ``NaN`` sets left out) and ``value``, the utility
    (mean over the test sets of their mean AUROC)."""

    per_set: pd.DataFrame
    per_label: pd.Series
    value: float


def coalition_utility(model: nn.Module, test_sets: Mapping[str, Dataset | DataLoader], **kwargs) -> Utility:
    """The paper's coalition utility: macro-AUROC over the 8 labels on every institution's test set,
    averaged over the test sets (``test_sets`` maps institution name → Dataset/DataLoader)."""
    if not test_sets:
        raise ValueError("coalition_utility needs at least one test set")
    return utility_of_sets({name: evaluate(model, data, **kwargs) for name, data in test_sets.items()})


def utility_of_sets(rows: Mapping[str, pd.Series]) -> Utility:
    """The coalition utility from each test set's :func:`evaluate` row (institution → per-label AUROC
    plus ``mean``), wherever those rows were computed (in process, or at each site of a federation)."""
    per_set = pd.DataFrame(rows).T
    per_set.index.name = "test_set"
    per_label = per_set.drop(columns="mean").mean(axis=0, skipna=True)
    return Utility(per_set=per_set, per_label=per_label, value=mean_auroc(per_set["mean"].to_numpy()))
