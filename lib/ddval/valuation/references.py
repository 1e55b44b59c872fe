"""Reference allocations: what an institution would get from a rule that looks at no model at all.

Each splits the same total as DDVal (the grand coalition's gain ``U(grand) − 0.5``) among the
institutions in proportion to

* ``equal_split``: 1 (every institution the same share);
* ``size_split``: its number of training scans;
* ``positives_split``: its number of positive training labels (over the 8 findings, as trained on,
  i.e. after any label flips).

They are rows of ``institution_values.csv`` and ``similarity.csv`` like any method. A valuation method
is informative only where it beats the best of them (seed by seed): with institutions that differ only
in size, the size split is the exact values' main signal, and a method that merely counts scans
scores high without valuing anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ddval.config import LABELS
from ddval.layout import EQUAL_SPLIT, REFERENCE_SPLITS


def reference_weights(partition: pd.DataFrame, players: Sequence[str]) -> dict[str, pd.Series]:
    """Per reference allocation, the unnormalised weight of every institution (player order)."""
    train = partition[partition["split"] == "train"]
    by = train.groupby("institution", sort=False)
    sizes = by.size().reindex(list(players), fill_value=0).astype(float)
    positives = by[list(LABELS)].sum().sum(axis=1).reindex(list(players), fill_value=0.0).astype(float)
    weights = {EQUAL_SPLIT: pd.Series(1.0, index=list(players)), "size_split": sizes, "positives_split": positives}
    return {name: weights[name] for name in REFERENCE_SPLITS}


def reference_allocations(partition: pd.DataFrame, players: Sequence[str], total: float) -> dict[str, pd.Series]:
    """Every reference allocation of ``total`` among ``players`` (values named ``value``, player order).
    A reference whose weights are all zero (e.g. no positive label at all) is an error."""
    out = {}
    for name, w in reference_weights(partition, players).items():
        if w.sum() <= 0:
            raise ValueError(f"{name}: the institutions' weights sum to {w.sum()}; cannot split the total")
        out[name] = (total * w / w.sum()).rename("value")
    return out
