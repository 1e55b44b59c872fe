"""Result tables of a preset, gathered over seeds, and the numbers behind every figure.

The stages write one tidy table per seed and setting (``docs/tables.md``). This module finds them
(``<root>/<preset>/seed-<s>/<setting>/<stage>/<file>``), checks their columns, stacks them with
``seed`` and ``setting`` columns, and reduces them to *summaries*: mean and half-width of the 95 %
Student-t confidence interval over seeds (the paper's ``mean_confidence_stats``). ``ddval.plots``
and ``ddval.plots_economy`` draw each summary; notebook 06 prints them.

Units in the summaries are the units on the figures: Shapley values and cosine similarities in
percent (``*_pct``), times in seconds, gas in gas units.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ddval.display import SETTING_ORDER, order_methods, order_settings  # noqa: F401 (summary's public names)
from ddval.layout import METHODS, NOISE_CEILING, TABLES, checkout_results  # noqa: F401 (METHODS: summary's public name)
from ddval.result_tables import ResultTables, check_table, shipped_results_root  # noqa: F401 (summary's public names)
from ddval import scorecard
from ddval.valuation import compare

#: The paper's headline numbers (abstract): cosine similarity [%] of the institutional values to the
#: exact ones. The IID / non-IID order of the baseline numbers is inferred from the abstract's wording.
PAPER_HEADLINE_PCT: dict[tuple[str, str], float] = {
    ("ddval", "iid"): 99.969,
    ("ddval", "noniid"): 99.969,
    ("best_baseline", "iid"): 99.301,
    ("best_baseline", "noniid"): 97.250,
}


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and 95 % Student-t half-width over seeds (:func:`ddval.valuation.compare.mean_ci`),
    ignoring NaNs (a seed whose metric is undefined); no values at all give ``(nan, nan)``."""
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan
    return compare.mean_ci(x, confidence)


def summarize(
    frame: pd.DataFrame, by: Sequence[str], value: str, scale: float = 1.0, name: str | None = None
) -> pd.DataFrame:
    """Mean ± 95 % t-CI of ``value`` (× ``scale``) over the rows of each ``by`` group.

    Returns the ``by`` columns (in order of first appearance), ``n_seeds`` (rows per group), ``<name>``
    and ``<name>_ci95`` (``name`` defaults to ``value``).
    """
    name = name or value
    rows = []
    for key, grp in frame.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        m, h = mean_ci(grp[value].to_numpy(dtype=float) * scale)
        rows.append((*key, len(grp), m, h))
    return pd.DataFrame(rows, columns=[*by, "n_seeds", name, f"{name}_ci95"])


# --------------------------------------------------------------------------------------------
# The numbers behind each figure (one function per figure; same names as in ddval.plots / plots_economy)
# --------------------------------------------------------------------------------------------


def accuracy_settings(values: pd.DataFrame) -> list[str]:
    """Settings of ``institution_values`` that have exact values (the SV-accuracy experiments); all
    settings when none has."""
    with_exact = values.loc[values["method"] == "exact", "setting"].unique()
    return order_settings(with_exact if len(with_exact) else values["setting"].unique())


def institution_values(values: pd.DataFrame) -> pd.DataFrame:
    """Institution Shapley value [% macro-AUROC] per setting, method and institution: mean ± 95 % CI."""
    values = values[values["setting"].isin(accuracy_settings(values))]
    out = summarize(values, ["setting", "method", "institution"], "value", 100.0, "value_pct")
    return _sort(out, settings=True, methods=True)


def similarity(sim: pd.DataFrame) -> pd.DataFrame:
    """Per setting and row of ``similarity.csv`` (noise ceiling, methods, reference splits): mean cosine
    similarity [%], Spearman and L1 share distance over seeds with percentile-bootstrap intervals
    (:func:`ddval.scorecard.similarity_summary`; they stay inside each metric's range)."""
    return scorecard.similarity_summary(sim)


def similarity_table(sim: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The paper's table: one row per method (and the ceiling and reference splits beside them), one
    column per setting, ``"mean [low, high]"`` cosine similarity in percent (``digits`` decimals, the
    paper's 3; bootstrap interval over seeds)."""
    s = similarity(sim)
    cell = [
        scorecard.interval_text(m, lo, hi, digits)
        for m, lo, hi in zip(s["cosine_pct"], s["cosine_pct_low"], s["cosine_pct_high"])
    ]
    table = s.assign(cell=cell).pivot(index="method", columns="setting", values="cell")
    table = table.reindex(index=scorecard.order_rows(table.index), columns=order_settings(table.columns))
    table.index.name, table.columns.name = "method", None
    return table


def paper_comparison(sim: pd.DataFrame) -> pd.DataFrame:
    """Our cosine similarity [%] next to the paper's headline numbers: DDVal and the best baseline
    (highest mean among the methods other than exact and ddval; reference splits and the ceiling are
    not methods), per IID / non-IID setting, with the bootstrap interval."""
    s = similarity(sim)
    rows = []
    for setting in [x for x in ("iid", "noniid") if x in set(s["setting"])]:
        here = s[(s["setting"] == setting) & (s["kind"] == "method")]
        ddval = here[here["method"] == "ddval"]
        base = here[here["method"] != "ddval"].sort_values("cosine_pct", ascending=False, kind="stable")
        for who, frame in (("ddval", ddval), ("best_baseline", base)):
            if len(frame):
                r = frame.iloc[0]
                rows.append(
                    (
                        setting,
                        who,
                        r["method"],
                        r["cosine_pct"],
                        r["cosine_pct_low"],
                        r["cosine_pct_high"],
                        PAPER_HEADLINE_PCT[(who, setting)],
                    )
                )
    return pd.DataFrame(
        rows, columns=["setting", "row", "method", "cosine_pct", "cosine_pct_low", "cosine_pct_high", "paper_pct"]
    )


def labelflip_values(flip: pd.DataFrame) -> pd.DataFrame:
    """DDVal institution value [%] per label-flip setting and flip rate [%]: mean ± 95 % CI."""
    flip = flip.assign(flip_rate_pct=flip["flip_rate"] * 100.0)
    out = summarize(flip, ["setting", "institution", "flip_rate_pct"], "value", 100.0, "value_pct")
    return _sort(out.sort_values(["flip_rate_pct"], kind="stable"), settings=True)


def point_scale(values: Iterable[float]) -> int:
    """Power of ten ``e`` such that ``max |v| / 10**e`` lies in [1, 10) (0 for all-zero input): per-point
    values shrink as 1/N, so their unit follows the data."""
    x = np.abs(np.asarray(list(values), dtype=float))
    x = x[np.isfinite(x) & (x > 0)]
    return int(math.floor(math.log10(x.max()))) if x.size else 0


def flipped_points(points: pd.DataFrame) -> pd.DataFrame:
    """Mean per-image value by number of flipped labels, per setting: each seed's mean first, then
    mean ± 95 % CI over seeds. ``value``/``value_ci95`` are in units of ``unit`` (a power of ten chosen by
    :func:`point_scale`, e.g. ``"1e-04"``); ``n_points`` counts the images over all seeds."""
    per_seed = points.groupby(["setting", "n_flipped", "seed"], sort=True)["value"].agg(["mean", "size"]).reset_index()
    e = point_scale(per_seed["mean"])
    out = summarize(per_seed, ["setting", "n_flipped"], "mean", 10.0**-e, "value")
    counts = per_seed.groupby(["setting", "n_flipped"], sort=False)["size"].sum().rename("n_points").reset_index()
    out = out.merge(counts, on=["setting", "n_flipped"], how="left")
    out["n_flipped"] = out["n_flipped"].astype(int)
    out["unit"] = f"1e{e:+03d}"
    return _sort(out, settings=True)


def flip_detection(det: pd.DataFrame) -> pd.DataFrame:
    """Flip-detection AUROC per setting (mean ± 95 % CI) with the mean counts of flipped and clean images."""
    out = summarize(det, ["setting"], "auroc")
    counts = det.groupby("setting", sort=False)[["n_flipped", "n_clean"]].mean().reset_index()
    return _sort(out.merge(counts, on="setting", how="left"), settings=True)


def scalability(scal: pd.DataFrame) -> pd.DataFrame:
    """Wall time [s] per setting, method and client count (mean ± 95 % CI over seeds when there are
    several), with the mean number of data points and of utility evaluations, and whether the time was
    ``measured`` (False: extrapolated in every seed) with its ``basis`` (how it was obtained). Tables
    without those columns count as measured, basis ``"not recorded"``."""
    keys = ["setting", "method", "n_clients"]
    scal = scal.assign(
        measured=scal["measured"].map(_truthy) if "measured" in scal.columns else True,
        basis=scal["basis"].fillna("") if "basis" in scal.columns else "not recorded",
    )
    out = summarize(scal, keys, "wall_time_s")
    extra = (
        scal.groupby(keys, sort=False)
        .agg(
            n_points=("n_points", "mean"),
            n_utility_evals=("n_utility_evals", "mean"),
            measured=("measured", "any"),
            basis=("basis", lambda b: "; ".join(dict.fromkeys(b))),
        )
        .reset_index()
    )
    out = out.merge(extra, on=keys, how="left").sort_values(["n_clients"], kind="stable")
    return _sort(out, settings=True, methods=True)


def _truthy(value: object) -> bool:
    """A ``measured`` cell as read from CSV (bool, or text ``True``/``False``)."""
    return str(value).strip().lower() in ("true", "1", "yes")


def dp_noise(dp: pd.DataFrame) -> pd.DataFrame:
    """Cosine similarity [%] of DDVal under Gaussian feature noise, per setting and noise scale
    (mean ± 95 % CI), with the mean Pearson and Spearman correlations."""
    out = summarize(dp, ["setting", "noise_scale"], "cosine", 100.0, "cosine_pct")
    extra = dp.groupby(["setting", "noise_scale"], sort=False)[["pearson", "spearman"]].mean().reset_index()
    out = out.merge(extra, on=["setting", "noise_scale"], how="left").sort_values("noise_scale", kind="stable")
    return _sort(out, settings=True)


def gas(gas_table: pd.DataFrame) -> pd.DataFrame:
    """Gas per operation and actor: transactions per run, mean / min / max gas per transaction and gas
    per run (a run is one seed and setting), in the table's order of first appearance."""
    runs = gas_table[["seed", "setting"]].drop_duplicates().shape[0]
    g = gas_table.groupby(["operation", "actor"], sort=False)["gas_used"]
    out = g.agg(n_tx="size", gas_mean="mean", gas_min="min", gas_max="max", gas_sum="sum").reset_index()
    out["n_tx"] = out["n_tx"] / runs
    out["gas_per_run"] = out.pop("gas_sum") / runs
    return out


def payout_scaling(payout: pd.DataFrame) -> pd.DataFrame:
    """Gas of paying ``n_recipients`` per payout method (mean over seeds when there are several).

    Large counts are measured on a sample of the recipients (``n_measured`` of them; the writer leaves
    their ``total_gas`` empty rather than extrapolating). Here ``total_gas`` is completed as
    ``setup_gas + n_recipients × gas_per_recipient`` (the sample's mean) for those rows, which is what a
    fully measured row adds up to, and ``measured`` says whether every recipient was measured."""
    payout = payout.copy()
    if "n_measured" not in payout.columns:
        payout["n_measured"] = np.where(payout["total_gas"].notna(), payout["n_recipients"], np.nan)
    setup = payout["setup_gas"].fillna(0.0) if "setup_gas" in payout.columns else 0.0
    payout["measured"] = payout["n_measured"] >= payout["n_recipients"]
    payout["total_gas"] = payout["total_gas"].fillna(setup + payout["n_recipients"] * payout["gas_per_recipient"])
    if "gas_per_recipient_min" not in payout.columns:
        payout["gas_per_recipient_min"] = payout["gas_per_recipient_max"] = payout["gas_per_recipient"]
    cols = [
        "n_transactions",
        "n_measured",
        "total_gas",
        "gas_per_recipient",
        "gas_per_recipient_min",
        "gas_per_recipient_max",
    ]
    g = payout.groupby(["method", "n_recipients"], sort=False)
    out = g[cols].mean().join(g["measured"].all()).reset_index()
    rank = out["method"].map({m: i for i, m in enumerate(pd.unique(out["method"]))})
    order = np.lexsort([out["n_recipients"].to_numpy(), rank.to_numpy()])  # methods as they come, counts rising
    return out.iloc[order].reset_index(drop=True)


def grand_coalitions(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows of the largest coalition of each setting (the model whose features DDVal uses)."""
    size = curves["coalition"].astype(str).str.count(r"\+") + 1
    largest = size.groupby(curves["setting"]).transform("max")
    return curves[size == largest]


def training_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Grand-coalition training and validation loss per setting and round: mean ± 95 % CI over seeds
    (seeds that stopped earlier drop out of later rounds; ``n_seeds`` says how many remain)."""
    grand = grand_coalitions(curves)
    val = summarize(grand, ["setting", "round"], "val_loss")
    train = summarize(grand, ["setting", "round"], "train_loss").drop(columns="n_seeds")
    out = val.merge(train, on=["setting", "round"]).sort_values(["round"], kind="stable")
    out["round"] = out["round"].astype(int)
    return _sort(out, settings=True)[
        ["setting", "round", "n_seeds", "train_loss", "train_loss_ci95", "val_loss", "val_loss_ci95"]
    ]


def headline(results_root: str | os.PathLike | None, preset: str) -> pd.DataFrame | None:
    """The table ``ddval reproduce`` ends with (:func:`ddval.scorecard.headline`): per setting with exact
    values, the noise ceiling, every method and every reference split: cosine similarity [%] to the
    exact values with its interval and per-seed values, Spearman, L1 share distance, wins against the
    best reference split seed by seed, distance to the ceiling. None when the preset has no
    ``similarity.csv`` rows yet. ``results_root`` None: the shipped tables."""
    sim = ResultTables.open(results_root, preset).load("similarity.csv")
    return None if sim is None or sim.empty else scorecard.headline(sim)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _sort(frame: pd.DataFrame, settings: bool = False, methods: bool = False) -> pd.DataFrame:
    """Stable sort by display order of setting and/or method, keeping the order within groups."""
    keys = []
    if settings:
        rank = {s: i for i, s in enumerate(order_settings(frame["setting"]))}
        keys.append(frame["setting"].map(rank))
    if methods:
        rank = {m: i for i, m in enumerate(order_methods(frame["method"]))}
        keys.append(frame["method"].map(rank))
    if not keys:
        return frame.reset_index(drop=True)
    order = np.lexsort([k.to_numpy() for k in reversed(keys)])
    return frame.iloc[order].reset_index(drop=True)
