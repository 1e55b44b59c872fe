"""The shared look of the paper's figures: palette, fixed colours, seaborn style, panels and series helpers.

Styling is seaborn's ``whitegrid``/``paper`` with the colour-blind-safe ``colorblind`` palette; every
method, setting and payout scheme keeps its colour across figures. The figures themselves live in
:mod:`ddval.plots` (valuation and training) and :mod:`ddval.plots_economy` (token economy); both draw
with the helpers here, so that they look alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ddval import summary as S
from ddval.layout import REFERENCE_SPLITS

# --------------------------------------------------------------------------------------------
# Names and colours
# --------------------------------------------------------------------------------------------

#: Seaborn's colour-blind-safe palette; every colour of every figure is taken from it.
PALETTE = sns.color_palette("colorblind", 10)


def method_color(method: str) -> tuple[float, float, float]:
    """Fixed colour of a valuation method or reference split, each its own (unknown names share one)."""
    order = [*S.METHODS, *REFERENCE_SPLITS]  # the palette's 10 colours, one each
    return PALETTE[order.index(method) if method in order else sum(map(ord, method)) % len(PALETTE)]


def setting_color(setting: str) -> tuple[float, float, float]:
    """Fixed colour of a setting: non-IID, IID, label flip, quality, then the others."""
    order = ["noniid", "iid", "labelflip", "quality"]
    i = order.index(setting) if setting in order else len(order) + sum(map(ord, setting)) % (10 - len(order))
    return PALETTE[i % 10]


def figure_style(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorate a figure function to draw inside seaborn's ``whitegrid`` style and ``paper`` context.

    Fonts and grids are set when the artists are made (rcParams are read at creation) and the global
    rcParams stay untouched.

    Args:
        draw: a function that builds and returns a :class:`~matplotlib.figure.Figure`.

    Returns:
        ``draw`` wrapped so that every call runs inside the style.
    """

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
            return draw(*args, **kwargs)

    return wrapper


def new_figure(ncols: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    """A plain (non-pyplot) figure with one row of panels and the constrained layout.

    Args:
        ncols: number of panels side by side.
        width: width of one panel [inches].
        height: height of the figure [inches].

    Returns:
        The figure and its ``ncols`` axes, left to right.
    """
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def nan_to_zero(x: pd.Series) -> np.ndarray:
    """Error-bar half-widths as floats, with NaN (a single seed has no interval) drawn as no bar.

    Args:
        x: half-widths, NaN where unknown.

    Returns:
        The half-widths with NaN replaced by 0.
    """
    return np.nan_to_num(x.to_numpy(dtype=float), nan=0.0)


def grouped_bars(ax: Axes, frame: pd.DataFrame, x: str, hue: str, y: str, err: str, colors: dict, labels: dict) -> None:
    """Bars of ``y`` ± ``err`` at categorical ``x`` positions, one bar per ``hue`` value, side by side.

    Args:
        ax: the panel to draw on; its x ticks are set to the positions (the caller labels them).
        frame: one row per ``x`` and ``hue`` value.
        x: column of the categories along the axis, in order of first appearance.
        hue: column of the bars within a category, in order of first appearance.
        y: column of the bar heights.
        err: column of the error-bar half-widths (NaN: no bar).
        colors: colour of each ``hue`` value.
        labels: legend label of a ``hue`` value (the value itself where missing).
    """
    xs = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue]))
    width = 0.8 / len(hues)
    for j, h in enumerate(hues):
        part = frame[frame[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
        ax.bar(
            pos,
            part[y],
            width,
            yerr=nan_to_zero(part[err]),
            capsize=2.5,
            color=colors[h],
            label=labels.get(h, h),
            error_kw={"elinewidth": 1.0},
        )
    ax.set_xticks(np.arange(len(xs)))


# --------------------------------------------------------------------------------------------
# Measured and extrapolated series
# --------------------------------------------------------------------------------------------


def dodge(n: int, width: float) -> np.ndarray:
    """Sideways offsets that keep series with nearly equal values apart.

    Args:
        n: number of series.
        width: distance between the first and the last offset.

    Returns:
        ``n`` offsets spread evenly over ``width``, centred on 0.
    """
    return (np.arange(n) - (n - 1) / 2) * (width / max(n - 1, 1))


def series_style(color: tuple[float, float, float], marker: str) -> dict:
    """Line and marker keywords of one series for :func:`measured_series` and :func:`legend_handle`.

    Args:
        color: the series' colour.
        marker: a matplotlib marker.

    Returns:
        Keyword arguments for ``Axes.errorbar`` / ``Line2D``.
    """
    return {"color": color, "marker": marker, "markersize": 6.5, "markeredgewidth": 1.3}


def measured_series(
    ax: Axes, x: np.ndarray, y: np.ndarray, measured: np.ndarray, style: dict, yerr: np.ndarray | None = None
) -> None:
    """A line through ``(x, y)``: filled markers and solid segments where ``measured``, hollow markers
    reached by dashed segments elsewhere (extrapolated or estimated from a sample).

    Args:
        ax: the panel to draw on.
        x: positions, shape (n,).
        y: values, shape (n,).
        measured: True where the point was measured, shape (n,).
        style: the series' keywords from :func:`series_style`.
        yerr: None, half-widths of shape (n,) or lower/upper distances of shape (2, n).
    """
    color = style["color"]
    for i in range(len(x) - 1):
        ax.plot(x[i : i + 2], y[i : i + 2], ls="-" if measured[i + 1] else "--", color=color, lw=1.4)
    for points, face in ((measured, color), (~measured, "white")):
        if points.any():
            err = None if yerr is None else yerr[..., points]
            ax.errorbar(x[points], y[points], yerr=err, ls="none", capsize=2, mfc=face, **style)


def legend_handle(color: tuple[float, float, float], marker: str, name: str) -> Line2D:
    """A legend entry that looks like a series drawn by :func:`measured_series`.

    Args:
        color: the series' colour.
        marker: the series' marker.
        name: the legend label.

    Returns:
        A line artist that is not on any axes, for ``Figure.legend(handles=...)``.
    """
    return Line2D([], [], **series_style(color, marker), lw=1.4, label=name)


def measured_handles(measured: str, other: str) -> list[Line2D]:
    """Legend entries that explain the marker fill of :func:`measured_series`.

    Args:
        measured: label of filled markers on solid lines.
        other: label of hollow markers on dashed lines.

    Returns:
        The two entries, measured first.
    """
    return [
        Line2D([], [], color="0.3", marker="o", mfc="0.3", lw=1.4, label=measured),
        Line2D([], [], color="0.3", marker="o", mfc="white", ls="--", lw=1.4, label=other),
    ]
