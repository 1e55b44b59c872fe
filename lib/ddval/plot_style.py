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

# --------------------------------------------------------------------------------------------
# Names and colours
# --------------------------------------------------------------------------------------------

_PALETTE = sns.color_palette("colorblind", 10)


def method_color(method: str) -> tuple[float, float, float]:
    """Fixed colour of a valuation method (unknown methods after the known ones)."""
    order = list(S.METHODS)
    i = order.index(method) if method in order else len(order) + sum(map(ord, method)) % (10 - len(order))
    return _PALETTE[i % 10]


def setting_color(setting: str) -> tuple[float, float, float]:
    """Fixed colour of a setting: non-IID, IID, label flip, quality, then the others."""
    order = ["noniid", "iid", "labelflip", "quality"]
    i = order.index(setting) if setting in order else len(order) + sum(map(ord, setting)) % (10 - len(order))
    return _PALETTE[i % 10]


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


def _grouped_bars(
    ax: Axes, frame: pd.DataFrame, x: str, hue: str, y: str, err: str, colors: dict, labels: dict
) -> None:
    """Bars of ``y`` ± ``err`` at categorical ``x`` positions, one bar per ``hue`` value, side by side."""
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
            yerr=_nan0(part[err]),
            capsize=2.5,
            color=colors[h],
            label=labels.get(h, h),
            error_kw={"elinewidth": 1.0},
        )
    ax.set_xticks(np.arange(len(xs)))


# --------------------------------------------------------------------------------------------
# Measured and extrapolated series
# --------------------------------------------------------------------------------------------


def _dodge(n: int, width: float) -> np.ndarray:
    """``n`` sideways offsets spread evenly over ``width``, centred on 0."""
    return (np.arange(n) - (n - 1) / 2) * (width / max(n - 1, 1))


def _series_style(color: tuple[float, float, float], marker: str) -> dict:
    return {"color": color, "marker": marker, "markersize": 6.5, "markeredgewidth": 1.3}


def _measured_series(
    ax: Axes, x: np.ndarray, y: np.ndarray, measured: np.ndarray, style: dict, yerr: np.ndarray | None = None
) -> None:
    """A line through ``(x, y)``: filled markers and solid segments where ``measured``, hollow markers
    reached by dashed segments elsewhere (extrapolated or estimated from a sample). ``yerr``: half-widths
    of shape (n,) or lower/upper distances of shape (2, n)."""
    color = style["color"]
    for i in range(len(x) - 1):
        ax.plot(x[i : i + 2], y[i : i + 2], ls="-" if measured[i + 1] else "--", color=color, lw=1.4)
    for points, face in ((measured, color), (~measured, "white")):
        if points.any():
            err = None if yerr is None else yerr[..., points]
            ax.errorbar(x[points], y[points], yerr=err, ls="none", capsize=2, mfc=face, **style)


def _legend_handle(color, marker: str, name: str) -> Line2D:
    return Line2D([], [], color=color, marker=marker, markersize=6.5, markeredgewidth=1.3, lw=1.4, label=name)


def _measured_handles(measured: str, other: str) -> list[Line2D]:
    """Legend entries for the marker fill: ``measured`` (filled, solid) and ``other`` (hollow, dashed)."""
    return [
        Line2D([], [], color="0.3", marker="o", mfc="0.3", lw=1.4, label=measured),
        Line2D([], [], color="0.3", marker="o", mfc="white", ls="--", lw=1.4, label=other),
    ]
