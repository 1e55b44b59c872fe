"""The benchmark's scorecard over seeds: every row of ``similarity.csv`` judged against the references
and the noise ceiling, seed by seed, with intervals that stay inside each metric's range.

Input: ``similarity.csv`` of every seed and setting (:meth:`ddval.summary.ResultTables.load`), whose rows
are the methods, the reference splits (``equal_split``, ``size_split``, ``positives_split``) and the
``noise_ceiling`` (exact values of disjoint halves of the training replicates against each other).

* :func:`similarity_summary`: per setting and row, the mean of each metric over seeds with its
  percentile-bootstrap interval (:func:`ddval.valuation.compare.bootstrap_mean`): cosine in percent,
  Spearman, L1 distance of the value shares;
* :func:`per_seed`: the per-seed values of one metric, side by side;
* :func:`versus`: one row against others, paired by seed: wins out of seeds and the mean paired
  difference with its interval; ``best_reference`` is, in every seed, the best of the reference
  splits in that seed (a method is credited only where it beats it);
* :func:`headline`: the table ``ddval reproduce`` prints, notebook 06 shows and the README quotes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ddval.display import order_settings
from ddval.layout import METHODS, NOISE_CEILING, REFERENCE_SPLITS, SIMILARITY_ROWS
from ddval.valuation.compare import HIGHER_IS_BETTER, bootstrap_mean, paired

#: The metrics of the scorecard and the factor each is shown with (cosine in percent).
METRICS: dict[str, float] = {"cosine": 100.0, "spearman": 1.0, "l1_share": 1.0}
#: Name of the per-seed best reference split in :func:`versus`.
BEST_REFERENCE = "best_reference"


def row_kind(name: str) -> str:
    """``ceiling``, ``reference`` or ``method``."""
    if name == NOISE_CEILING:
        return "ceiling"
    return "reference" if name in REFERENCE_SPLITS else "method"


def order_rows(names) -> list[str]:
    """Rows in display order: :data:`ddval.layout.SIMILARITY_ROWS`, then the others alphabetically."""
    names = list(dict.fromkeys(names))
    return [n for n in SIMILARITY_ROWS if n in names] + sorted(n for n in names if n not in SIMILARITY_ROWS)


def _settings(sim: pd.DataFrame) -> list[str]:
    return order_settings(sim["setting"])


def similarity_summary(sim: pd.DataFrame) -> pd.DataFrame:
    """Per setting and row: ``kind``, ``n_seeds`` and, for every metric of :data:`METRICS`, its mean over
    seeds and bootstrap bounds (``cosine_pct``, ``cosine_pct_low``, ``cosine_pct_high``, ``spearman``, …)."""
    rows = []
    for setting in _settings(sim):
        here = sim[sim["setting"] == setting]
        for name in order_rows(here["method"]):
            part = here[here["method"] == name]
            row = {"setting": setting, "method": name, "kind": row_kind(name), "n_seeds": len(part)}
            for metric, scale in METRICS.items():
                col = f"{metric}_pct" if scale == 100.0 else metric
                values = part[metric].to_numpy(dtype=float) * scale if metric in part.columns else np.array([])
                row[col], row[f"{col}_low"], row[f"{col}_high"] = bootstrap_mean(values)
            rows.append(row)
    return pd.DataFrame(rows)


def per_seed(sim: pd.DataFrame, metric: str = "cosine") -> pd.DataFrame:
    """``metric`` per setting and row (index) and seed (columns)."""
    table = sim.pivot_table(index=["setting", "method"], columns="seed", values=metric, sort=False, dropna=False)
    order = [(s, m) for s in _settings(sim) for m in order_rows(sim.loc[sim["setting"] == s, "method"])]
    return table.reindex([k for k in order if k in table.index])


def _by_seed(here: pd.DataFrame, name: str, metric: str) -> pd.Series:
    rows = here[here["method"] == name].set_index("seed")
    return rows[metric].astype(float) if metric in rows else pd.Series(np.nan, index=rows.index)


def best_reference_by_seed(here: pd.DataFrame, metric: str) -> pd.Series:
    """In every seed of one setting, the best value of ``metric`` among the reference splits (empty when
    the table has no reference rows)."""
    refs = here[here["method"].isin(REFERENCE_SPLITS)]
    if refs.empty or metric not in refs:
        return pd.Series(dtype=float)
    wide = refs.pivot_table(index="seed", columns="method", values=metric)
    return wide.max(axis=1) if HIGHER_IS_BETTER[metric] else wide.min(axis=1)


def versus(sim: pd.DataFrame, method: str, others: Sequence[str] | None = None, metric: str = "cosine") -> pd.DataFrame:
    """``method`` against each of ``others`` (default: :data:`BEST_REFERENCE`, every reference split and
    every other method) per setting, paired by seed: ``wins``, ``n``, ``diff``, ``diff_low``,
    ``diff_high`` (differences of ``metric``, in percent points for cosine)."""
    scale = METRICS.get(metric, 1.0)
    rows = []
    for setting in _settings(sim):
        here = sim[sim["setting"] == setting]
        if method not in set(here["method"]):
            continue
        mine = _by_seed(here, method, metric)
        names = (
            others
            if others is not None
            else [BEST_REFERENCE, *[r for r in order_rows(here["method"]) if r not in (method, NOISE_CEILING)]]
        )
        for other in names:
            theirs = best_reference_by_seed(here, metric) if other == BEST_REFERENCE else _by_seed(here, other, metric)
            seeds = mine.index.intersection(theirs.index)
            if not len(seeds):
                continue
            cmp = paired(mine[seeds].to_numpy() * scale, theirs[seeds].to_numpy() * scale, HIGHER_IS_BETTER[metric])
            rows.append({"setting": setting, "method": method, "versus": other, **cmp})
    return pd.DataFrame(rows, columns=["setting", "method", "versus", "wins", "n", "diff", "diff_low", "diff_high"])


def interval_text(mean: float, low: float, high: float, digits: int, signed: bool = False) -> str:
    """``"mean [low, high]"`` with ``digits`` decimals (``"mean"`` without bounds, ``"-"`` for NaN;
    ``signed``: with a sign, for differences)."""
    if math.isnan(mean):
        return "-"
    fmt = f"{'+' if signed else ''}.{digits}f"
    if math.isnan(low):
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _signed(mean: float, low: float, high: float, digits: int) -> str:
    return interval_text(mean, low, high, digits, signed=True)


def headline(sim: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The benchmark's headline, one block per setting with exact values, one row per similarity row
    (ceiling, methods, reference splits), index ``(setting, method)``, all cells text:

    ``cosine [%]`` mean [bootstrap interval] over seeds; ``per seed`` the cosines [%] in seed order;
    ``Spearman`` and ``L1 share`` means [intervals]; ``vs best reference`` (methods only) seeds where the
    row's cosine beats the best reference split of that seed, out of seeds, and the mean paired
    difference [interval] in points; ``vs ceiling`` the mean paired cosine difference to the noise ceiling
    (a column only when some setting has a ceiling, i.e. training replicates).
    """
    s = similarity_summary(sim).set_index(["setting", "method"])
    seeds = per_seed(sim, "cosine") * 100.0
    rows = []
    for setting, name in s.index:
        r = s.loc[(setting, name)]
        row = {
            "setting": setting,
            "method": name,
            "cosine [%]": interval_text(r["cosine_pct"], r["cosine_pct_low"], r["cosine_pct_high"], digits),
            "per seed": " ".join("-" if math.isnan(v) else f"{v:.{digits}f}" for v in seeds.loc[(setting, name)]),
            "Spearman": interval_text(r["spearman"], r["spearman_low"], r["spearman_high"], 2),
            "L1 share": interval_text(r["l1_share"], r["l1_share_low"], r["l1_share_high"], 2),
            "vs best reference": "",
            "vs ceiling": "",
        }
        if r["kind"] == "method":
            best = versus(sim[sim["setting"] == setting], name, [BEST_REFERENCE])
            if len(best):
                b = best.iloc[0]
                row["vs best reference"] = f"{b['wins']}/{b['n']}, " + _signed(
                    b["diff"], b["diff_low"], b["diff_high"], digits
                )
            if NOISE_CEILING in s.loc[setting].index:
                ceil = versus(sim[sim["setting"] == setting], name, [NOISE_CEILING])
                if len(ceil):
                    c = ceil.iloc[0]
                    row["vs ceiling"] = _signed(c["diff"], c["diff_low"], c["diff_high"], digits)
        rows.append(row)
    out = pd.DataFrame(rows).set_index(["setting", "method"])
    return out if (s["kind"] == "ceiling").any() else out.drop(columns="vs ceiling")


def wins_table(sim: pd.DataFrame, method: str = "ddval", metric: str = "cosine") -> pd.DataFrame:
    """:func:`versus` of ``method`` against the best reference, each reference split and each other
    method, as text cells ``wins/n`` and ``diff [low, high]`` per setting."""
    v = versus(sim, method, metric=metric)
    v["wins"] = v["wins"].astype(str) + "/" + v["n"].astype(str)
    v["mean difference"] = [
        _signed(d, lo, hi, 1 if metric == "cosine" else 2)
        for d, lo, hi in zip(v["diff"], v["diff_low"], v["diff_high"])
    ]
    return v.set_index(["setting", "versus"])[["wins", "mean difference"]]


def methods_only(names) -> list[str]:
    """The valuation methods among ``names`` (no ceiling, no reference split, no ``exact``)."""
    return [n for n in names if n in METHODS and n != "exact"]


def stop_reasons(replicates: pd.DataFrame) -> pd.DataFrame:
    """Per setting: coalition trainings (all replicates and seeds) that stopped by ``patience`` and by the
    ``round_cap``, the share stopped by patience, and the mean number of rounds (``replicates.csv``), settings
    in display order."""
    out = replicates.groupby(["setting", "stop"], sort=False).size().unstack("stop", fill_value=0)
    for col in ("patience", "round_cap"):
        if col not in out:
            out[col] = 0
    out = out[["patience", "round_cap"]]
    out["patience share"] = [f"{100 * p / (p + c):.0f} %" for p, c in zip(out["patience"], out["round_cap"])]
    out["mean rounds"] = replicates.groupby("setting", sort=False)["rounds"].mean().round(1)
    return out.reindex(order_settings(out.index)).reset_index()


def sensitivity(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Cosine [%] (mean [bootstrap interval] over seeds) per value of ``key`` (rows) and setting (columns):
    ``lambda_sensitivity.csv`` (``key="lambda"``) and ``or_batchnorm.csv`` (``key="batchnorm"``)."""
    cells: dict = {}
    for (setting, k), part in frame.groupby(["setting", key], sort=False):
        cells.setdefault(k, {})[setting] = interval_text(
            *bootstrap_mean(part["cosine"].to_numpy(dtype=float) * 100.0), 1
        )
    table = pd.DataFrame(cells).T
    table = table[order_settings(table.columns)]
    table.index.name = key
    return table.reset_index()
