"""Every row of ``similarity.csv``: the methods and the reference splits scored against the ground truth,
beside the ground truth's own noise ceiling; and the table of the replicated trainings behind it.

* The ground truth (method ``exact``) is the exact Shapley value of the mean utilities over the training
  replicates of every coalition (:mod:`ddval.valuation.ground_truth`; the training stage makes one).
* The reference splits (:mod:`ddval.valuation.references`) are written as ``methods/<reference>.csv``
  and enter ``institution_values.csv`` and ``similarity.csv`` like any method.
* The ``noise_ceiling`` row scores exact values from disjoint halves of the replicates against each
  other (NaN with one replicate).
* ``replicates.csv``: one row per replicate and coalition with its utility, its number of rounds, its
  best round and why it stopped (``patience`` or ``round_cap``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ddval import layout
from ddval.layout import NOISE_CEILING, SIMILARITY_ROWS
from ddval.valuation import ground_truth
from ddval.valuation.baselines import MethodResult
from ddval.valuation.compare import similarity_frame
from ddval.valuation.context import SettingInputs
from ddval.valuation.references import reference_allocations


def reference_results(ctx: SettingInputs) -> list[MethodResult]:
    """The reference splits of the ground truth's total ``v̄(grand) − 0.5`` (the grand coalition's utility
    averaged over the training replicates; no model, no utility evaluation)."""
    total = ground_truth.mean_utilities(ctx.replicate_utilities)[frozenset(ctx.players)] - 0.5
    allocations = reference_allocations(ctx.partition, ctx.players, total)
    return [MethodResult(name, values, 0.0, 0) for name, values in allocations.items()]


def exact_result(ctx: SettingInputs, train_time_s: float) -> MethodResult:
    """The ground truth: exact Shapley values of the replicates' mean utilities; its cost is the
    training of every coalition in every replicate (``train_time_s``)."""
    values = ground_truth.exact_values(ctx.replicate_utilities, ctx.players)
    n_models = len(ctx.replicate_utilities) * (2 ** len(ctx.players) - 1)
    return MethodResult("exact", values, train_time_s, n_models)


def ceiling(ctx: SettingInputs) -> dict[str, float]:
    """The noise ceiling's metrics (:func:`ddval.valuation.ground_truth.noise_ceiling`)."""
    return ground_truth.noise_ceiling(ctx.replicate_utilities, ctx.players)


def similarity_table(
    values: pd.DataFrame, setting: str, seed: int, ceiling_metrics: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """``similarity.csv``: the noise ceiling (when given and defined, i.e. with 2 or more replicates), then
    every method and reference split (≠ exact) against the exact values, aligned by institution name, in
    :data:`ddval.layout.SIMILARITY_ROWS` order; empty when the setting has no exact values."""
    exact = values[values["method"] == "exact"].set_index("institution")["value"]
    others = values[values["method"] != "exact"].groupby("method", sort=False)
    estimates = {m: f.set_index("institution")["value"] for m, f in others}
    table = similarity_frame(exact, estimates, setting, seed)
    has_ceiling = ceiling_metrics is not None and any(np.isfinite(v) for v in ceiling_metrics.values())
    if has_ceiling and not exact.empty:
        row = {"setting": setting, "seed": seed, "method": NOISE_CEILING, **dict(ceiling_metrics)}
        table = pd.concat([pd.DataFrame([row], columns=table.columns), table], ignore_index=True)
    rank = {m: i for i, m in enumerate(SIMILARITY_ROWS)}
    order = np.argsort([rank.get(m, len(rank)) for m in table["method"]], kind="stable")
    return table.iloc[order].reset_index(drop=True)


def replicates_table(ctx: SettingInputs) -> pd.DataFrame:
    """``replicates.csv`` (see the module docstring)."""
    t = ctx.cfg.train
    rows = []
    for (replicate, coalition), curve in ctx.replicate_curves().groupby(["replicate", "coalition"], sort=False):
        losses = curve.sort_values("round")["val_loss"].to_numpy(dtype=float)
        rows.append(
            {
                "setting": ctx.setting,
                "seed": ctx.seed,
                "replicate": int(replicate),
                "coalition": coalition,
                "n_members": len(str(coalition).split("+")),
                "utility": ctx.replicate_utilities[int(replicate)][frozenset(str(coalition).split("+"))],
                "rounds": len(losses),
                "best_round": int(np.argmin(losses)) + 1,
                "stop": ground_truth.stop_reason(losses, t.patience, t.max_rounds),
            }
        )
    return pd.DataFrame(rows, columns=layout.columns("replicates.csv"))
