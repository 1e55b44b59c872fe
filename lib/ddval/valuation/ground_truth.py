"""The ground truth from replicated training, and the noise ceiling that bounds every comparison with it.

Each coalition of a setting is trained ``R = train.replicates`` times on the same partition with
independent training randomness (initial weights, batch order, augmentation; replicate 0 is the run
the federation does, whose grand model DDVal and the baselines use). With ``v_r(S)`` the utility of
coalition ``S`` in replicate ``r``:

* **ground truth**: the exact Shapley values of the mean utilities ``v̄(S) = (1/R) Σ_r v_r(S)``
  (``v(∅) = 0.5``). Shapley values are linear in the utilities, so this is also the mean of the
  replicates' exact values;
* **noise ceiling**: how well the ground truth agrees with *itself*: the exact values of the mean
  utilities of one half ``A`` of the replicates against those of a disjoint half ``B``
  (``|A| = |B| = ⌊R/2⌋``), every metric of :func:`ddval.valuation.compare.similarity`, averaged over
  all unordered pairs of disjoint halves (``R = 2``: replicate 0 vs 1; ``R = 3``: the three pairs of
  single replicates; ``R = 4``: the three ways to split into two pairs). A method is scored against the
  mean of all ``R`` replicates, which is less noisy than a half, so a method can land slightly above the
  ceiling; far below it, the method misses something the retrained models agree on. ``R = 1`` has no
  ceiling (NaN).

:func:`stop_reason` says whether a training ended by early stopping (``patience``) or because it reached
``train.max_rounds`` (``round_cap``): a ground truth whose models mostly hit the cap measures the cap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ddval.valuation.compare import similarity
from ddval.valuation.shapley import exact_shapley

Utilities = Mapping[frozenset, float]

#: Metrics of the ceiling row (those of :func:`ddval.valuation.compare.similarity`).
METRICS = ("cosine", "pearson", "spearman", "l1_share", "max_abs_error")


def mean_utilities(replicates: Mapping[int, Utilities], which: Sequence[int] | None = None) -> dict[frozenset, float]:
    """``S ↦ mean_r v_r(S)`` over the replicates ``which`` (default all); every replicate must list the
    same coalitions."""
    keys = list(replicates) if which is None else list(which)
    if not keys:
        raise ValueError("no replicates to average")
    coalitions = set(replicates[keys[0]])
    for r in keys[1:]:
        if set(replicates[r]) != coalitions:
            differ = sorted("+".join(sorted(c)) for c in coalitions ^ set(replicates[r]))
            raise ValueError(f"replicate {r} lists other coalitions than replicate {keys[0]}: {differ}")
    return {c: float(np.mean([replicates[r][c] for r in keys])) for c in coalitions}


def exact_values(
    replicates: Mapping[int, Utilities], players: Sequence[str], which: Sequence[int] | None = None
) -> pd.Series:
    """Exact Shapley values of the mean utilities of replicates ``which`` (default all), in player order."""
    values = exact_shapley(mean_utilities(replicates, which), list(players))
    return pd.Series([float(values[p]) for p in players], index=list(players), name="value")


def half_splits(replicates: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every unordered pair of disjoint halves of size ``⌊R/2⌋`` (empty for fewer than 2 replicates)."""
    reps = sorted(replicates)
    half = len(reps) // 2
    if half == 0:
        return []
    out = []
    for a in itertools.combinations(reps, half):
        rest = [r for r in reps if r not in a]
        out.extend((a, b) for b in itertools.combinations(rest, half) if a < b)
    return out


def noise_ceiling(replicates: Mapping[int, Utilities], players: Sequence[str]) -> dict[str, float]:
    """Mean over :func:`half_splits` of the similarity of the two halves' exact values (NaN metrics when
    there is no pair of halves; a metric undefined in some splits is averaged over the others)."""
    splits = half_splits(list(replicates))
    if not splits:
        return {k: math.nan for k in METRICS}
    rows = [similarity(exact_values(replicates, players, a), exact_values(replicates, players, b)) for a, b in splits]
    out = {}
    for k in METRICS:
        x = np.array([r[k] for r in rows], dtype=float)
        out[k] = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
    return out


def stop_reason(val_losses: Sequence[float], patience: int, max_rounds: int) -> str:
    """``"patience"`` when the best round of ``val_losses`` is ``patience`` rounds old at the end (the
    early-stopping rule fired, also when that happens exactly at the cap), else ``"round_cap"``."""
    if not len(val_losses):
        raise ValueError("no rounds")
    best = int(np.argmin(np.asarray(val_losses, dtype=float)))
    if len(val_losses) - 1 - best >= patience:
        return "patience"
    if len(val_losses) >= max_rounds:
        return "round_cap"
    raise ValueError(
        f"training of {len(val_losses)} rounds ended by neither rule (patience {patience}, cap {max_rounds})"
    )
