"""The paper's valuation and training figures, drawn from result tables only.

One function per figure. Each takes the tidy table of ``docs/tables.md`` gathered over seeds
(``ddval.summary.ResultTables.load``: one row per seed and setting, with ``seed`` and ``setting``
columns), reduces it with the same-named function of :mod:`ddval.summary` (mean ± 95 % Student-t CI
over seeds) and returns a :class:`matplotlib.figure.Figure`. Figures are plain ``Figure`` objects,
not pyplot figures: nothing global is touched, nothing leaks in loops, and Jupyter shows one only
when asked to.

The token-economy figures (gas, payout cost) are in :mod:`ddval.plots_economy`; the style, palette and
panel helpers both share are in :mod:`ddval.plot_style`. :mod:`ddval.figures` lists them in the order of
notebook 06 and renders, saves and shows them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ddval import summary as S
from ddval.display import INSTITUTION_LABELS, METHOD_LABELS, SETTING_LABELS, label
from ddval.plot_style import (
    dodge,
    figure_style,
    grouped_bars,
    legend_handle,
    measured_handles,
    measured_series,
    method_color,
    nan_to_zero,
    new_figure,
    series_style,
    setting_color,
)

# --------------------------------------------------------------------------------------------
# Figures (one function each)
# --------------------------------------------------------------------------------------------


@figure_style
def institution_values(values: pd.DataFrame) -> Figure:
    """Institution Shapley values per method with 95 % CIs over seeds: one panel per SV-accuracy setting
    (those with exact values), bars grouped by institution, one bar per method."""
    s = S.institution_values(values)
    settings = S.order_settings(s["setting"])
    fig, axes = new_figure(len(settings), width=5.0)
    methods = S.order_methods(s["method"])
    for ax, setting in zip(axes, settings):
        part = s[s["setting"] == setting]
        grouped_bars(
            ax,
            part,
            "institution",
            "method",
            "value_pct",
            "value_pct_ci95",
            {m: method_color(m) for m in methods},
            METHOD_LABELS,
        )
        ax.set_xticklabels([label(i, INSTITUTION_LABELS) for i in dict.fromkeys(part["institution"])])
        ax.set_title(label(setting, SETTING_LABELS))
        ax.set_xlabel("Institution")
        ax.set_ylabel("Shapley value [% macro-AUROC]")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(methods), fontsize="small")
    return fig


#: How reference splits are drawn in the similarity figure (line style, label).
REFERENCE_STYLES = {
    "equal_split": (":", "equal split"),
    "size_split": ("--", "size split (∝ training scans)"),
    "positives_split": ("-.", "positives split (∝ positive labels)"),
}


def _similarity_limits(sim: pd.DataFrame, s: pd.DataFrame) -> tuple[float, float]:
    """y range [%] of the similarity figure, set by what judges the methods (the reference lines, the
    ceiling band) and by DDVal's seeds, with a margin of 30 % of the distance to 100 (at least 5 points):
    a method further below is drawn at the lower edge instead of stretching the axis for everyone."""
    anchors = list(s.loc[s["kind"] == "reference", "cosine_pct"]) + list(
        s.loc[s["kind"] == "ceiling", "cosine_pct_low"]
    )
    anchors += list(sim.loc[sim["method"] == "ddval", "cosine"] * 100.0)
    anchors = [a for a in anchors if np.isfinite(a)]
    low = min(anchors) if anchors else 0.0
    return max(-100.0, low - max(5.0, 0.3 * (100.0 - low))), 100.5


@figure_style
def similarity(sim: pd.DataFrame) -> Figure:
    """Cosine similarity [%] of each method's institution values to the exact ones, one panel per setting:
    every seed as a dot, the mean with its bootstrap interval, the reference splits as horizontal lines
    and the noise ceiling (exact values of disjoint halves of the training replicates against each other)
    as a band (its interval) around its mean. Values below the axis are drawn as ▼ at its lower edge
    with their mean written beside them, so one poor method does not squash the others."""
    s = S.similarity(sim)
    settings = S.order_settings(s["setting"])
    fig, axes = new_figure(len(settings), width=5.2, height=3.8)
    low, high = _similarity_limits(sim, s)
    for ax, setting in zip(axes, settings):
        here = s[s["setting"] == setting].set_index("method")
        methods = [m for m in here.index if here.at[m, "kind"] == "method"]
        if S.NOISE_CEILING in here.index:
            c = here.loc[S.NOISE_CEILING]
            ax.axhspan(
                c["cosine_pct_low"], c["cosine_pct_high"], color="0.85", zorder=0, label="noise ceiling (interval)"
            )
            ax.axhline(c["cosine_pct"], color="0.45", lw=1.2, zorder=1, label="noise ceiling")
        for ref, (ls, name) in REFERENCE_STYLES.items():
            if ref in here.index:
                ax.axhline(here.at[ref, "cosine_pct"], ls=ls, color="0.2", lw=1.0, zorder=1, label=name)
        for i, m in enumerate(methods):
            seeds = sim.loc[(sim["setting"] == setting) & (sim["method"] == m), "cosine"].to_numpy(dtype=float) * 100
            jitter = np.linspace(-0.15, 0.15, seeds.size) if seeds.size > 1 else np.zeros(seeds.size)
            inside = seeds >= low
            ax.scatter(i + jitter[inside], seeds[inside], s=14, color=method_color(m), alpha=0.55, zorder=2, lw=0)
            if (~inside).any():
                ax.scatter(
                    i + jitter[~inside],
                    np.full((~inside).sum(), low),
                    marker="v",
                    s=22,
                    color=method_color(m),
                    zorder=3,
                    clip_on=False,
                )
            r = here.loc[m]
            if r["cosine_pct"] >= low:
                err = np.array([[r["cosine_pct"] - r["cosine_pct_low"]], [r["cosine_pct_high"] - r["cosine_pct"]]])
                ax.errorbar(
                    [i + 0.3],
                    [r["cosine_pct"]],
                    yerr=np.nan_to_num(err),
                    fmt="D",
                    ms=5,
                    capsize=3,
                    color=method_color(m),
                    zorder=3,
                )
            else:
                ax.annotate(
                    f"mean {r['cosine_pct']:.0f}",
                    (i, low),
                    xytext=(0, 8),
                    textcoords="offset points",
                    ha="center",
                    fontsize="x-small",
                    color=method_color(m),
                )
        ax.set_xticks(np.arange(len(methods)), [label(m, METHOD_LABELS) for m in methods], rotation=30, ha="right")
        ax.set_ylim(low, high)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(label(setting, SETTING_LABELS))
        ax.set_xlabel("Method")
        ax.set_ylabel("Cosine to exact values [%]")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize="small")
    return fig


@figure_style
def labelflip_values(flip: pd.DataFrame) -> Figure:
    """DDVal institution value [%] against the institution's share of flipped labels [%], mean ± 95 % CI
    over seeds (the paper's label-flip bar chart)."""
    s = S.labelflip_values(flip)
    settings = S.order_settings(s["setting"])
    s = s.assign(x=s["flip_rate_pct"].map(lambda v: f"{v:g}"))
    fig, (ax,) = new_figure(1, width=5.0)
    grouped_bars(
        ax, s, "x", "setting", "value_pct", "value_pct_ci95", {k: setting_color(k) for k in settings}, SETTING_LABELS
    )
    ax.set_xticklabels(list(dict.fromkeys(s["x"])))
    ax.set_xlabel("Institution's share of flipped labels [%]")
    ax.set_ylabel("DDVal value [% macro-AUROC]")
    if len(settings) > 1:
        ax.legend(title="Setting", fontsize="small")
    return fig


@figure_style
def flipped_points(points: pd.DataFrame) -> Figure:
    """Per-image DDVal values in the label-flip settings: (a) mean by number of flipped labels, mean ± 95 %
    CI over seeds; (b) distribution for clean images against images with at least one flipped label."""
    s = S.flipped_points(points)
    unit = s["unit"].iloc[0]
    exp = int(unit.split("e")[1])  # "1e-04" -> -4
    settings = S.order_settings(s["setting"])
    fig, (a, b) = new_figure(2, width=4.4)
    grouped_bars(
        a,
        s.assign(x=s["n_flipped"].astype(str)),
        "x",
        "setting",
        "value",
        "value_ci95",
        {k: setting_color(k) for k in settings},
        SETTING_LABELS,
    )
    a.set_xticklabels(list(dict.fromkeys(s["n_flipped"].astype(str))))
    a.axhline(0, color="0.3", lw=0.8)
    a.set_xlabel("Flipped labels per image")
    a.set_ylabel(f"Mean data point value [10$^{{{exp}}}$]")
    a.set_title("(a) by number of flipped labels")
    # (b) boxes of the per-image values, clean | flipped, one box per setting side by side
    groups = (("clean", points["n_flipped"] == 0), ("≥ 1 flipped", points["n_flipped"] > 0))
    width = 0.7 / len(settings)
    for j, setting in enumerate(settings):
        here = points["setting"] == setting
        data = [points.loc[here & mask, "value"].to_numpy(dtype=float) / 10.0**exp for _, mask in groups]
        pos = np.arange(len(groups)) - 0.35 + width * (j + 0.5)
        b.boxplot(
            data,
            positions=pos,
            widths=width * 0.9,
            patch_artist=True,
            label=label(setting, SETTING_LABELS),
            boxprops={"facecolor": setting_color(setting), "linewidth": 0.8},
            medianprops={"color": "0.1"},
            flierprops={"markersize": 2},
        )
    b.set_xticks(np.arange(len(groups)), [g for g, _ in groups])
    if len(settings) > 1:
        b.legend(fontsize="small")
    b.set_xlabel("Training labels of the image")
    b.set_ylabel(f"Data point value [10$^{{{exp}}}$]")
    b.set_title("(b) clean vs flipped")
    return fig


@figure_style
def flip_detection(det: pd.DataFrame) -> Figure:
    """AUROC of finding images with flipped labels by their low DDVal value, per label-flip setting: mean
    ± 95 % CI over seeds, each seed as a dot, chance level dashed."""
    s = S.flip_detection(det)
    settings = S.order_settings(s["setting"])
    fig, (ax,) = new_figure(1, width=3.6)
    pos = np.arange(len(settings))
    part = s.set_index("setting").reindex(settings)
    ax.bar(
        pos,
        part["auroc"],
        0.5,
        yerr=nan_to_zero(part["auroc_ci95"]),
        capsize=3,
        color=[setting_color(k) for k in settings],
    )
    for i, setting in enumerate(settings):
        seeds = det.loc[det["setting"] == setting, "auroc"].to_numpy(dtype=float)
        ax.scatter(np.full(seeds.size, i) + np.linspace(-0.12, 0.12, seeds.size), seeds, s=12, color="0.15", zorder=3)
    ax.axhline(0.5, ls="--", color="0.4", lw=1, label="chance")
    ax.set_xticks(pos, [label(k, SETTING_LABELS) for k in settings])
    ax.set_xlim(-0.8, len(settings) - 0.2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Setting")
    ax.set_ylabel("Flip-detection AUROC")
    ax.legend(fontsize="small", loc="lower right")
    return fig


#: A marker per valuation method: series with nearly equal numbers stay apart without colour too.
_MARKERS = {"exact": "s", "ddval": "o", "or": "^", "lambda_mr": "v", "gtg": "D", "safe": "P"}


@figure_style
def scalability(scal: pd.DataFrame) -> Figure:
    """Runtime (log scale) and number of coalition-utility evaluations against the number of clients, per
    method: DDVal grows with the data points, the coalition methods with 2^n. Filled markers and solid
    lines are measured, hollow markers reached by dashed lines extrapolated (``measured``/``basis`` of
    ``scalability.csv``). Each method has its own marker and a small sideways offset, so that methods
    with nearly equal numbers (λ-MR and GTG-Shapley, OR and SaFE) stay visible; the legend sits below."""
    s = S.scalability(scal)
    settings = S.order_settings(s["setting"])
    methods = S.order_methods(s["method"])
    fig = Figure(figsize=(9.2, 3.0 * len(settings) + 1.2), layout="constrained")
    grid = fig.subplots(len(settings), 2, squeeze=False)
    step = float(np.min(np.diff(np.unique(s["n_clients"])))) if s["n_clients"].nunique() > 1 else 1.0
    offsets = dodge(len(methods), 0.35 * step)
    for (a, b), setting in zip(grid, settings):
        for method, off in zip(methods, offsets):
            part = s[(s["method"] == method) & (s["setting"] == setting)].sort_values("n_clients")
            if part.empty:
                continue
            x, measured = part["n_clients"].to_numpy(dtype=float) + off, part["measured"].to_numpy(dtype=bool)
            style = series_style(method_color(method), _MARKERS.get(method, "o"))
            time = part["wall_time_s"].to_numpy(dtype=float)
            measured_series(a, x, time, measured, style, nan_to_zero(part["wall_time_s_ci95"]))
            evals = part["n_utility_evals"].to_numpy(dtype=float)
            some = evals > 0  # DDVal needs none: nothing to draw on a log axis
            if some.any():
                measured_series(b, x[some], evals[some], measured[some], style)
        if "ddval" in methods and not (s.loc[s["method"] == "ddval", "n_utility_evals"] > 0).any():
            b.text(
                0.98,
                0.03,
                "DDVal: no coalition utilities",
                transform=b.transAxes,
                ha="right",
                va="bottom",
                fontsize="small",
            )
        if len(settings) > 1:
            a.set_title(label(setting, SETTING_LABELS))
    per_client = (s["n_points"] / s["n_clients"]).unique()
    note = f" ({per_client[0]:,.0f} data points each)" if len(per_client) == 1 else ""
    for a, b in grid:
        for ax in (a, b):
            ax.set_yscale("log")
            ax.set_xlabel(f"Number of clients{note}")
            ax.set_xticks(sorted(s["n_clients"].unique()))
        a.set_ylabel("Wall time [s]")
        b.set_ylabel("Coalition utility evaluations")
    handles = [legend_handle(method_color(m), _MARKERS.get(m, "o"), label(m, METHOD_LABELS)) for m in methods]
    fig.legend(
        handles=handles + measured_handles("measured", "extrapolated"),
        loc="outside lower center",
        ncols=4,
        fontsize="small",
    )
    return fig


@figure_style
def dp_noise(dp: pd.DataFrame) -> Figure:
    """Cosine similarity [%] of DDVal's institution values to the exact ones when Gaussian noise is added to
    the shared features, against the noise scale (symmetric-log axis, 0 = no noise), per setting."""
    s = S.dp_noise(dp)
    fig, (ax,) = new_figure(1, width=5.0)
    for setting in S.order_settings(s["setting"]):
        part = s[s["setting"] == setting]
        ax.errorbar(
            part["noise_scale"],
            part["cosine_pct"],
            yerr=nan_to_zero(part["cosine_pct_ci95"]),
            marker="o",
            capsize=3,
            color=setting_color(setting),
            label=label(setting, SETTING_LABELS),
        )
    positive = s.loc[s["noise_scale"] > 0, "noise_scale"]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    ax.set_xlabel("Feature noise scale [× feature std]")
    ax.set_ylabel("Cosine to exact values [%]")
    ax.legend(title="Setting", fontsize="small")
    return fig


@figure_style
def training_curves(curves: pd.DataFrame) -> Figure:
    """Training (dashed) and validation (solid) loss of the grand coalition per communication round, mean
    with a 95 % CI band over seeds, one panel per setting."""
    s = S.training_curves(curves)
    settings = S.order_settings(s["setting"])
    fig, axes = new_figure(len(settings), width=3.8)
    for ax, setting in zip(axes, settings):
        part = s[s["setting"] == setting]
        color = setting_color(setting)
        for col, ls, name in (("val_loss", "-", "validation"), ("train_loss", "--", "training")):
            ax.plot(part["round"], part[col], ls=ls, color=color, label=name)
            ci = nan_to_zero(part[f"{col}_ci95"])
            ax.fill_between(part["round"], part[col] - ci, part[col] + ci, color=color, alpha=0.2, lw=0)
        ax.set_title(label(setting, SETTING_LABELS))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        ax.set_xlabel("Communication round")
        ax.set_ylabel("Loss (binary cross-entropy)")
    axes[0].legend(fontsize="small")
    return fig
