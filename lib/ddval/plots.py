"""The paper's figures and tables, drawn from result tables only.

One function per figure. Each takes the tidy table of ``docs/tables.md`` gathered over seeds
(``ddval.summary.ResultTables.load``: one row per seed and setting, with ``seed`` and ``setting``
columns), reduces it with the same-named function of :mod:`ddval.summary` (mean ± 95 % Student-t CI
over seeds) and returns a :class:`matplotlib.figure.Figure`. Figures are plain ``Figure`` objects,
not pyplot figures: nothing global is touched, nothing leaks in loops, and Jupyter shows one only
when asked to. Styling is seaborn's ``whitegrid``/``paper`` with the colour-blind-safe
``colorblind`` palette; every method, setting and payout scheme keeps its colour across figures.

:data:`FIGURES` lists them in the order of notebook 06; :func:`render` loads the inputs of one,
draws it, writes ``<name>.png``, ``<name>.pdf`` and ``summary_<name>.csv`` into the figures folder
and returns what to show, or a one-line note when its inputs do not exist for this preset.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ddval import summary as S
from ddval.store import atomic_path, write_table

# --------------------------------------------------------------------------------------------
# Names and colours
# --------------------------------------------------------------------------------------------

METHOD_LABELS = {
    "exact": "Exact (canonical)",
    "ddval": "DDVal",
    "or": "OR",
    "mr": "MR",
    "lambda_mr": "λ-MR",
    "gtg": "GTG-Shapley",
    "safe": "SaFE",
}
SETTING_LABELS = {"noniid": "non-IID", "iid": "IID", "labelflip": "label flip"}
INSTITUTION_LABELS = {"nih": "NIH", "chexpert": "CheXpert", "mimic": "MIMIC-CXR"}
PAYOUT_LABELS = {"transfer_loop": "Transfer loop (push)", "merkle_claim": "Merkle claims (pull)"}

_PALETTE = sns.color_palette("colorblind", 10)


def method_color(method: str) -> tuple[float, float, float]:
    """Fixed colour of a valuation method (unknown methods after the known ones)."""
    order = list(S.METHODS)
    i = order.index(method) if method in order else len(order) + sum(map(ord, method)) % (10 - len(order))
    return _PALETTE[i % 10]


def setting_color(setting: str) -> tuple[float, float, float]:
    """Fixed colour of a setting: non-IID, IID, label flip, then the others."""
    order = list(S.SETTING_ORDER)
    i = order.index(setting) if setting in order else len(order) + sum(map(ord, setting)) % (10 - len(order))
    return _PALETTE[i % 10]


def label(name: str, labels: dict[str, str]) -> str:
    """Display name of a method/setting/institution: the known label, else ``client3`` -> ``Client 3``."""
    if name in labels:
        return labels[name]
    head = name.rstrip("0123456789")
    return f"{head.capitalize()} {name[len(head):]}" if head != name and head else name


def _style(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw inside seaborn's style and context so that fonts and grids are set when the artists are made
    (rcParams are read at creation) and the global rcParams stay untouched."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
            return draw(*args, **kwargs)

    return wrapper


def _figure(ncols: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _nan0(x: pd.Series) -> np.ndarray:
    """Error-bar half-widths with NaN (one seed) drawn as no bar."""
    return np.nan_to_num(x.to_numpy(dtype=float), nan=0.0)


def _grouped_bars(ax: Axes, frame: pd.DataFrame, x: str, hue: str, y: str, err: str, colors: dict, labels: dict) -> None:
    """Bars of ``y`` ± ``err`` at categorical ``x`` positions, one bar per ``hue`` value, side by side."""
    xs = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue]))
    width = 0.8 / len(hues)
    for j, h in enumerate(hues):
        part = frame[frame[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
        ax.bar(pos, part[y], width, yerr=_nan0(part[err]), capsize=2.5, color=colors[h], label=labels.get(h, h),
               error_kw={"elinewidth": 1.0})
    ax.set_xticks(np.arange(len(xs)))


# --------------------------------------------------------------------------------------------
# Figures (one function each)
# --------------------------------------------------------------------------------------------


@_style
def institution_values(values: pd.DataFrame) -> Figure:
    """Institution Shapley values per method with 95 % CIs over seeds: one panel per SV-accuracy setting
    (those with exact values), bars grouped by institution, one bar per method."""
    s = S.institution_values(values)
    settings = S.order_settings(s["setting"])
    fig, axes = _figure(len(settings), width=5.0)
    methods = S.order_methods(s["method"])
    for ax, setting in zip(axes, settings):
        part = s[s["setting"] == setting]
        _grouped_bars(ax, part, "institution", "method", "value_pct", "value_pct_ci95",
                      {m: method_color(m) for m in methods}, METHOD_LABELS)
        ax.set_xticklabels([label(i, INSTITUTION_LABELS) for i in dict.fromkeys(part["institution"])])
        ax.set_title(label(setting, SETTING_LABELS))
        ax.set_xlabel("Institution")
        ax.set_ylabel("Shapley value [% macro-AUROC]")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(methods), fontsize="small")
    return fig


#: How reference splits are drawn in the similarity figure (line style, label).
REFERENCE_STYLES = {"equal_split": (":", "equal split"), "size_split": ("--", "size split (∝ training scans)"),
                    "positives_split": ("-.", "positives split (∝ positive labels)")}


def _similarity_limits(sim: pd.DataFrame, s: pd.DataFrame) -> tuple[float, float]:
    """y range [%] of the similarity figure: everything that judges (ceiling band, reference lines) and
    the median seed of every method, with a margin; a method far below is drawn at the edge instead of
    stretching the axis for everyone."""
    anchors = list(s.loc[s["kind"] != "method", "cosine_pct"]) + list(s.loc[s["kind"] == "ceiling", "cosine_pct_low"])
    anchors += list(sim[sim["method"].isin(s.loc[s["kind"] == "method", "method"])].groupby(["setting", "method"])["cosine"].median() * 100)
    anchors = [a for a in anchors if np.isfinite(a)]
    low = min(anchors) if anchors else 0.0
    return max(-100.0, low - max(3.0, 0.15 * (100.0 - low))), 100.5


@_style
def similarity(sim: pd.DataFrame) -> Figure:
    """Cosine similarity [%] of each method's institution values to the exact ones, one panel per setting:
    every seed as a dot, the mean with its bootstrap interval, the reference splits as horizontal lines
    and the noise ceiling (exact values of disjoint halves of the training replicates against each other)
    as a band (its interval) around its mean. Values below the axis are drawn as ▼ at its lower edge
    with their mean written beside them, so one poor method does not squash the others."""
    s = S.similarity(sim)
    settings = S.order_settings(s["setting"])
    fig, axes = _figure(len(settings), width=5.2, height=3.8)
    low, high = _similarity_limits(sim, s)
    for ax, setting in zip(axes, settings):
        here = s[s["setting"] == setting].set_index("method")
        methods = [m for m in here.index if here.at[m, "kind"] == "method"]
        if S.NOISE_CEILING in here.index:
            c = here.loc[S.NOISE_CEILING]
            ax.axhspan(c["cosine_pct_low"], c["cosine_pct_high"], color="0.85", zorder=0, label="noise ceiling (interval)")
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
                ax.scatter(i + jitter[~inside], np.full((~inside).sum(), low), marker="v", s=22, color=method_color(m), zorder=3, clip_on=False)
            r = here.loc[m]
            if r["cosine_pct"] >= low:
                err = np.array([[r["cosine_pct"] - r["cosine_pct_low"]], [r["cosine_pct_high"] - r["cosine_pct"]]])
                ax.errorbar([i + 0.3], [r["cosine_pct"]], yerr=np.nan_to_num(err), fmt="D", ms=5, capsize=3,
                            color=method_color(m), zorder=3)
            else:
                ax.annotate(f"mean {r['cosine_pct']:.0f}", (i, low), xytext=(0, 8), textcoords="offset points",
                            ha="center", fontsize="x-small", color=method_color(m))
        ax.set_xticks(np.arange(len(methods)), [label(m, METHOD_LABELS) for m in methods], rotation=30, ha="right")
        ax.set_ylim(low, high)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(label(setting, SETTING_LABELS))
        ax.set_ylabel("Cosine similarity to exact values [%]")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize="small")
    return fig


@_style
def labelflip_values(flip: pd.DataFrame) -> Figure:
    """DDVal institution value [%] against the institution's share of flipped labels [%], mean ± 95 % CI
    over seeds (the paper's label-flip bar chart)."""
    s = S.labelflip_values(flip)
    settings = S.order_settings(s["setting"])
    s = s.assign(x=s["flip_rate_pct"].map(lambda v: f"{v:g}"))
    fig, (ax,) = _figure(1, width=5.0)
    _grouped_bars(ax, s, "x", "setting", "value_pct", "value_pct_ci95",
                  {k: setting_color(k) for k in settings}, SETTING_LABELS)
    ax.set_xticklabels(list(dict.fromkeys(s["x"])))
    ax.set_xlabel("Institution's share of flipped labels [%]")
    ax.set_ylabel("DDVal value [% macro-AUROC]")
    if len(settings) > 1:
        ax.legend(title="Setting", fontsize="small")
    return fig


@_style
def flipped_points(points: pd.DataFrame) -> Figure:
    """Per-image DDVal values in the label-flip settings: (a) mean by number of flipped labels, mean ± 95 %
    CI over seeds; (b) distribution for clean images against images with at least one flipped label."""
    s = S.flipped_points(points)
    unit = s["unit"].iloc[0]
    exp = int(unit.split("e")[1])  # "1e-04" -> -4
    settings = S.order_settings(s["setting"])
    fig, (a, b) = _figure(2, width=4.4)
    _grouped_bars(a, s.assign(x=s["n_flipped"].astype(str)), "x", "setting", "value", "value_ci95",
                  {k: setting_color(k) for k in settings}, SETTING_LABELS)
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
        b.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, label=label(setting, SETTING_LABELS),
                  boxprops={"facecolor": setting_color(setting), "linewidth": 0.8},
                  medianprops={"color": "0.1"}, flierprops={"markersize": 2})
    b.set_xticks(np.arange(len(groups)), [g for g, _ in groups])
    if len(settings) > 1:
        b.legend(fontsize="small")
    b.set_xlabel("Training labels of the image")
    b.set_ylabel(f"Data point value [10$^{{{exp}}}$]")
    b.set_title("(b) clean vs flipped")
    return fig


@_style
def flip_detection(det: pd.DataFrame) -> Figure:
    """AUROC of finding images with flipped labels by their low DDVal value, per label-flip setting: mean
    ± 95 % CI over seeds, each seed as a dot, chance level dashed."""
    s = S.flip_detection(det)
    settings = S.order_settings(s["setting"])
    fig, (ax,) = _figure(1, width=3.6)
    pos = np.arange(len(settings))
    part = s.set_index("setting").reindex(settings)
    ax.bar(pos, part["auroc"], 0.5, yerr=_nan0(part["auroc_ci95"]), capsize=3,
           color=[setting_color(k) for k in settings])
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


@_style
def scalability(scal: pd.DataFrame) -> Figure:
    """Runtime (log scale) and number of coalition-utility evaluations against the number of clients, per
    method: DDVal grows with the data points, the coalition methods with 2^n."""
    s = S.scalability(scal)
    settings = S.order_settings(s["setting"])
    fig, (a, b) = _figure(2, width=4.4)
    for setting, ls in zip(settings, ["-", "--", ":", "-."] * len(settings)):
        for method in S.order_methods(s["method"]):
            part = s[(s["method"] == method) & (s["setting"] == setting)]
            if part.empty:
                continue
            name = label(method, METHOD_LABELS) + (f" ({label(setting, SETTING_LABELS)})" if len(settings) > 1 else "")
            kw = {"marker": "o", "ls": ls, "color": method_color(method), "label": name}
            a.errorbar(part["n_clients"], part["wall_time_s"], yerr=_nan0(part["wall_time_s_ci95"]), capsize=2, **kw)
            evals = part[part["n_utility_evals"] > 0]  # DDVal needs none: nothing to draw on a log axis
            if len(evals):
                b.plot(evals["n_clients"], evals["n_utility_evals"], **kw)
    per_client = (s["n_points"] / s["n_clients"]).unique()
    note = f" ({per_client[0]:,.0f} data points each)" if len(per_client) == 1 else ""
    for ax in (a, b):
        ax.set_yscale("log")
        ax.set_xlabel(f"Number of clients{note}")
        ax.set_xticks(sorted(s["n_clients"].unique()))
    a.set_ylabel("Wall time [s]")
    b.set_ylabel("Coalition utility evaluations")
    a.legend(fontsize="small")
    return fig


@_style
def dp_noise(dp: pd.DataFrame) -> Figure:
    """Cosine similarity [%] of DDVal's institution values to the exact ones when Gaussian noise is added to
    the shared features, against the noise scale (symmetric-log axis, 0 = no noise), per setting."""
    s = S.dp_noise(dp)
    fig, (ax,) = _figure(1, width=5.0)
    for setting in S.order_settings(s["setting"]):
        part = s[s["setting"] == setting]
        ax.errorbar(part["noise_scale"], part["cosine_pct"], yerr=_nan0(part["cosine_pct_ci95"]), marker="o",
                    capsize=3, color=setting_color(setting), label=label(setting, SETTING_LABELS))
    positive = s.loc[s["noise_scale"] > 0, "noise_scale"]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    ax.set_xlabel("Feature noise scale [× feature std]")
    ax.set_ylabel("Cosine similarity to exact values [%]")
    ax.legend(title="Setting", fontsize="small")
    return fig


@_style
def gas(gas_table: pd.DataFrame) -> Figure:
    """Gas per transaction of every token-economy operation (mean, min–max as whiskers), coloured by the
    actor that sends it, with the number of transactions per run."""
    s = S.gas(gas_table)
    actors = list(dict.fromkeys(s["actor"]))
    colors = {a: _PALETTE[i % 10] for i, a in enumerate(actors)}
    fig, (ax,) = _figure(1, width=6.5, height=0.32 * len(s) + 1.4)
    pos = np.arange(len(s))[::-1]
    k = s[["gas_mean", "gas_min", "gas_max"]] / 1000.0  # thousands of gas: readable tick labels
    err = np.vstack([k["gas_mean"] - k["gas_min"], k["gas_max"] - k["gas_mean"]])
    ax.barh(pos, k["gas_mean"], xerr=err, capsize=2, color=[colors[a] for a in s["actor"]])
    for p, top, n in zip(pos, k["gas_max"], s["n_tx"]):
        ax.annotate(f"×{n:g}", (top, p), xytext=(4, 0), textcoords="offset points", va="center", fontsize="small")
    ax.set_yticks(pos, [f"{o} ({a})" for o, a in zip(s["operation"], s["actor"])])
    ax.set_xlabel("Gas per transaction [10³ gas]")
    ax.set_ylabel("Operation (actor)")
    ax.margins(x=0.12)
    return fig


@_style
def payout_scaling(payout: pd.DataFrame) -> Figure:
    """Cost of paying many recipients: total gas (log–log) and gas per recipient against the number of
    recipients, per payout scheme."""
    s = S.payout_scaling(payout)
    fig, (a, b) = _figure(2, width=4.4)
    for i, method in enumerate(dict.fromkeys(s["method"])):
        part = s[s["method"] == method]
        kw = {"marker": "o", "color": _PALETTE[(i + 3) % 10], "label": label(method, PAYOUT_LABELS)}
        a.plot(part["n_recipients"], part["total_gas"], **kw)
        b.plot(part["n_recipients"], part["gas_per_recipient"], **kw)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("Number of recipients")
    a.set_yscale("log")
    a.set_ylabel("Total gas [gas]")
    b.set_ylabel("Gas per recipient [gas]")
    b.set_ylim(bottom=0)
    a.legend(fontsize="small")
    return fig


@_style
def training_curves(curves: pd.DataFrame) -> Figure:
    """Training (dashed) and validation (solid) loss of the grand coalition per communication round, mean
    with a 95 % CI band over seeds, one panel per setting."""
    s = S.training_curves(curves)
    settings = S.order_settings(s["setting"])
    fig, axes = _figure(len(settings), width=3.8)
    for ax, setting in zip(axes, settings):
        part = s[s["setting"] == setting]
        color = setting_color(setting)
        for col, ls, name in (("val_loss", "-", "validation"), ("train_loss", "--", "training")):
            ax.plot(part["round"], part[col], ls=ls, color=color, label=name)
            ci = _nan0(part[f"{col}_ci95"])
            ax.fill_between(part["round"], part[col] - ci, part[col] + ci, color=color, alpha=0.2, lw=0)
        ax.set_title(label(setting, SETTING_LABELS))
        ax.set_xlabel("Communication round")
        ax.set_ylabel("Loss (binary cross-entropy)")
    axes[0].legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------------------------
# Saving and the notebook's registry
# --------------------------------------------------------------------------------------------


def save(fig: Figure, path: str | Path, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` (any suffix of ``path`` is replaced), atomically.

    The PDF carries no creation date, so re-drawing the same table gives the same bytes."""
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in {".png", ".pdf"} else stem
    out = []
    for fmt, meta in (("png", {}), ("pdf", {"CreationDate": None})):
        final = stem.parent / f"{stem.name}.{fmt}"
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
        out.append(final)
    return out[0], out[1]


@dataclass(frozen=True)
class FigureSpec:
    """One entry of notebook 06: the result table it reads, its summary, its drawing (None: table only)."""

    table: str
    summarize: Callable[[pd.DataFrame], pd.DataFrame]
    draw: Callable[[pd.DataFrame], Figure] | None
    #: True: read ``table`` only for the settings that have a ``labelflip.csv`` (the label-flip ones)
    labelflip_only: bool = False


#: Figures and tables of the paper, in notebook order. Keys are the file stems under ``figures/``.
FIGURES: dict[str, FigureSpec] = {
    "institution_values": FigureSpec("institution_values.csv", S.institution_values, institution_values),
    "similarity": FigureSpec("similarity.csv", S.similarity, similarity),
    "similarity_table": FigureSpec("similarity.csv", S.similarity_table, None),
    "paper_comparison": FigureSpec("similarity.csv", S.paper_comparison, None),
    "labelflip_values": FigureSpec("labelflip.csv", S.labelflip_values, labelflip_values),
    "flipped_points": FigureSpec("point_values.parquet", S.flipped_points, flipped_points, labelflip_only=True),
    "flip_detection": FigureSpec("flip_detection.csv", S.flip_detection, flip_detection),
    "scalability": FigureSpec("scalability.csv", S.scalability, scalability),
    "dp_noise": FigureSpec("dp.csv", S.dp_noise, dp_noise),
    "gas": FigureSpec("gas.csv", S.gas, gas),
    "payout_scaling": FigureSpec("payout_scaling.csv", S.payout_scaling, payout_scaling),
    "training_curves": FigureSpec("curves.csv", S.training_curves, training_curves),
}


@dataclass
class Rendered:
    """A drawn figure (or table) with the numbers behind it and the files written. In Jupyter it shows the
    figure, then the numbers rounded to ``digits`` (what nbval compares)."""

    name: str
    figure: Figure | None
    numbers: pd.DataFrame
    files: tuple[Path, ...]
    digits: int = 4

    def png(self, dpi: int = 100) -> bytes:
        """The figure as a 256-colour PNG for display: a third of the bytes of the full-colour one, which
        keeps committed notebooks small (the saved files are full colour at :func:`save`'s dpi)."""
        from PIL import Image

        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi)
        image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        image.save(out, format="png", optimize=True)
        return out.getvalue()

    def _ipython_display_(self) -> None:
        # An explicit PNG, not display(figure): a bare Figure has no PNG formatter unless pyplot's inline
        # backend was activated, and the PNG keeps the committed notebooks small (nbval skips image/png).
        from IPython.display import Image, display

        if self.figure is not None:
            display(Image(data=self.png(), format="png"))
        display(self.numbers.round(self.digits))


@dataclass
class Skipped:
    """A figure whose input table does not exist for this preset; shows a one-line note."""

    name: str
    reason: str

    def __repr__(self) -> str:
        return f"skipped {self.name}: {self.reason}"

    def _ipython_display_(self) -> None:
        print(repr(self))


def render(tables: S.ResultTables, name: str, out_dir: str | Path | None = None) -> Rendered | Skipped:
    """Load the input of figure ``name`` from ``tables``, draw it and write ``<name>.png``/``.pdf`` and
    ``summary_<name>.csv`` into ``out_dir`` (default ``tables.figures_dir``). Missing input -> :class:`Skipped`."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {list(FIGURES)}")
    spec = FIGURES[name]
    settings = None
    if spec.labelflip_only:
        settings = {p.parts[-3] for p in tables.paths("labelflip.csv")}
        if not settings:
            return Skipped(name, f"no label-flip setting (no {tables.pattern('labelflip.csv')})")
    frame = tables.load(spec.table, settings)
    if frame is None:
        return Skipped(name, f"no {tables.pattern(spec.table)}")
    out_dir = Path(out_dir) if out_dir is not None else tables.figures_dir
    numbers = spec.summarize(frame)
    files: list[Path] = [write_table(out_dir / f"summary_{name}.csv", numbers.reset_index() if spec.draw is None else numbers)]
    figure = None
    if spec.draw is not None:
        figure = spec.draw(frame)
        files.extend(save(figure, out_dir / name))
    return Rendered(name, figure, numbers, tuple(files))


def render_all(tables: S.ResultTables, names: Sequence[str] | None = None, out_dir: str | Path | None = None) -> list[Rendered | Skipped]:
    """:func:`render` every figure of :data:`FIGURES` (or ``names``) in order."""
    return [render(tables, n, out_dir) for n in (names or FIGURES)]
