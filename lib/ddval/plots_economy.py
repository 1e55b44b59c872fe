"""The token-economy figures, drawn from result tables only: gas per operation and the cost of payouts.

Like :mod:`ddval.plots` (the valuation and training figures), one function per figure: each takes the
tidy table of ``docs/tables.md`` gathered over seeds, reduces it with the same-named function of
:mod:`ddval.summary` and returns a :class:`matplotlib.figure.Figure`, in the shared style of
:mod:`ddval.plot_style`.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ddval import summary as S
from ddval.display import INSTITUTION_LABELS, PAYOUT_LABELS, label
from ddval.plot_style import (
    PALETTE,
    dodge,
    figure_style,
    legend_handle,
    measured_handles,
    measured_series,
    new_figure,
    series_style,
)


@figure_style
def gas(gas_table: pd.DataFrame) -> Figure:
    """Gas per transaction of every token-economy operation (mean, min–max as whiskers), coloured by the
    actor that sends it, with the number of transactions per run."""
    s = S.gas(gas_table)
    actors = list(dict.fromkeys(s["actor"]))
    colors = {a: PALETTE[i % 10] for i, a in enumerate(actors)}
    fig, (ax,) = new_figure(1, width=6.5, height=0.32 * len(s) + 1.4)
    pos = np.arange(len(s))[::-1]
    k = s[["gas_mean", "gas_min", "gas_max"]] / 1000.0  # thousands of gas: readable tick labels
    err = np.vstack([k["gas_mean"] - k["gas_min"], k["gas_max"] - k["gas_mean"]])
    ax.barh(pos, k["gas_mean"], xerr=err, capsize=2, color=[colors[a] for a in s["actor"]])
    for p, top, n in zip(pos, k["gas_max"], s["n_tx"]):
        ax.annotate(f"×{n:g}", (top, p), xytext=(4, 0), textcoords="offset points", va="center", fontsize="small")
    ax.set_yticks(pos, [f"{o} ({label(a, INSTITUTION_LABELS)})" for o, a in zip(s["operation"], s["actor"])])
    ax.set_xlabel("Gas per transaction [10³ gas]")
    ax.set_ylabel("Operation (actor)")
    ax.margins(x=0.12)
    return fig


@figure_style
def payout_scaling(payout: pd.DataFrame) -> Figure:
    """Cost of paying many recipients, per payout scheme: total gas (log–log) and gas per recipient (mean,
    min–max as whiskers) against the number of recipients. Large counts are measured on a sample of the
    recipients; their markers are hollow and their total is setup gas + recipients × the sample's mean
    (a note under the figure says how many were measured)."""
    s = S.payout_scaling(payout)
    fig = Figure(figsize=(9.2, 4.4), layout="constrained")
    a, b = fig.subplots(1, 2, sharex=True)
    methods = list(dict.fromkeys(s["method"]))
    offsets = 10 ** dodge(len(methods), 0.08)  # multiplicative: the x axis is logarithmic
    handles = []
    for i, (method, off) in enumerate(zip(methods, offsets)):
        part = s[s["method"] == method].sort_values("n_recipients")
        style = series_style(PALETTE[(i + 3) % 10], "os"[i % 2])
        x, measured = part["n_recipients"].to_numpy(dtype=float) * off, part["measured"].to_numpy(dtype=bool)
        per = part["gas_per_recipient"].to_numpy(dtype=float) / 1000.0
        spread = np.vstack([per - part["gas_per_recipient_min"] / 1000.0, part["gas_per_recipient_max"] / 1000.0 - per])
        measured_series(a, x, part["total_gas"].to_numpy(dtype=float), measured, style)
        measured_series(b, x, per, measured, style, np.clip(spread, 0, None))
        handles.append(legend_handle(style["color"], style["marker"], label(method, PAYOUT_LABELS)))
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("Number of recipients")
    a.set_yscale("log")
    a.set_ylabel("Total gas [gas]")
    b.set_ylabel("Gas per recipient [10³ gas]")
    b.set_ylim(bottom=0)
    marks = measured_handles("every recipient measured", "from a sample of recipients")
    fig.legend(handles=handles + marks, loc="outside lower center", ncols=2, fontsize="small")
    note = _sample_note(s)
    if note:  # a suptitle: the constrained layout keeps room for it (a free fig.text would overlap)
        fig.suptitle(textwrap.fill(note, 125), fontsize="small")
    return fig


def _sample_note(s: pd.DataFrame) -> str:
    """What the hollow markers of :func:`payout_scaling` stand for, from the table's own counts."""
    sampled = s[~s["measured"]]
    if sampled.empty:
        return ""
    parts = []
    for method, rows in sampled.groupby("method", sort=False):
        counts = ", ".join(f"{m:,.0f} of {n:,.0f}" for m, n in zip(rows["n_measured"], rows["n_recipients"]))
        parts.append(f"{label(method, PAYOUT_LABELS).split(' (')[0].lower()} {counts}")
    return (
        "Hollow markers: to keep the run short, only some recipients were paid on the test chain ("
        + "; ".join(parts)
        + "); their total is setup gas + recipients × the sample's mean gas per recipient."
    )
