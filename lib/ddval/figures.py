"""Notebook 06's registry: which result table each figure reads, drawing, saving and showing it.

:data:`FIGURES` lists the figures and tables of the paper in the order of notebook 06; :func:`render`
loads the inputs of one, draws it with :mod:`ddval.plots` (valuation, training) or
:mod:`ddval.plots_economy` (token economy), writes ``<name>.png``, ``<name>.pdf`` and
``summary_<name>.csv`` into the figures folder and returns what to show, or a one-line note when its
inputs do not exist for this preset. Under a figure it shows its numbers through
:func:`ddval.display.table`; where they run long (a row per institution and method, per client count,
per round) it shows a view cut to what a reader needs and says where the full table is.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ddval import plots, plots_economy, scorecard
from ddval import summary as S
from ddval.display import location, order_methods, plus_minus, table
from ddval.store import atomic_path, write_table


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
    #: What the notebook shows of a long summary (None: the summary itself)
    view: Callable[[pd.DataFrame], pd.DataFrame] | None = None


# --------------------------------------------------------------------------------------------
# What notebook 06 shows of a long summary (the full one is written to summary_<name>.csv)
# --------------------------------------------------------------------------------------------


def institution_values_view(s: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """One row per setting and institution, one column per method: ``"value ± 95 % CI"`` [% macro-AUROC]."""
    cells = s.assign(cell=[plus_minus(m, h, digits) for m, h in zip(s["value_pct"], s["value_pct_ci95"])])
    rows = pd.MultiIndex.from_frame(cells[["setting", "institution"]].drop_duplicates())
    out = cells.pivot(index=["setting", "institution"], columns="method", values="cell").reindex(rows)
    out = out[order_methods(out.columns)]
    out.columns.name = "method"
    return out


def scalability_view(s: pd.DataFrame) -> pd.DataFrame:
    """One row per method: wall time [s] per client count (``≈``: extrapolated) and how the extrapolated
    ones were obtained (``basis`` of ``scalability.csv``)."""
    rows = []
    for (setting, method), part in s.groupby(["setting", "method"], sort=False):
        row = {"setting": setting, "method": method}
        for n, t, measured in zip(part["n_clients"], part["wall_time_s"], part["measured"]):
            row[f"{n} clients [s]"] = ("" if measured else "≈") + _seconds(t)
        guessed = part[~part["measured"].astype(bool)]
        how = "; ".join(b.removeprefix("extrapolated: ") for b in dict.fromkeys(guessed["basis"]))
        where = ", ".join(map(str, guessed["n_clients"]))
        row["extrapolated (≈)"] = f"at {where} clients: {how}" if len(guessed) else "none: all measured"
        rows.append(row)
    out = pd.DataFrame(rows)
    keys = ["method"] if out["setting"].nunique() == 1 else ["setting", "method"]
    return (out.drop(columns="setting") if len(keys) == 1 else out).set_index(keys)


def _seconds(t: float) -> str:
    """A duration with the precision a reader needs: 17,233 / 30.6 / 0.053."""
    if t >= 100:
        return f"{t:,.0f}"
    return f"{t:.1f}" if t >= 10 else f"{t:.2f}" if t >= 1 else f"{t:.3f}"


def payout_scaling_view(s: pd.DataFrame) -> pd.DataFrame:
    """One row per payout method and recipient count; the smallest and largest gas of one recipient in
    one column."""
    span = [f"{lo:,.0f}–{hi:,.0f}" for lo, hi in zip(s["gas_per_recipient_min"], s["gas_per_recipient_max"])]
    out = s.drop(columns=["gas_per_recipient_min", "gas_per_recipient_max"]).assign(gas_per_recipient_span=span)
    return out.set_index(["method", "n_recipients"])


def training_curves_view(s: pd.DataFrame) -> pd.DataFrame:
    """Per setting the first round, the round with the lowest mean validation loss and the last round."""
    picks = []
    for _, part in s.groupby("setting", sort=False):
        rows = {
            "first": part["round"].idxmin(),
            "lowest validation loss": part["val_loss"].idxmin(),
            "last": part["round"].idxmax(),
        }
        for i in dict.fromkeys(rows.values()):  # one row per round, named by everything it is
            picks.append(part.loc[[i]].assign(row=", ".join(k for k, v in rows.items() if v == i)))
    out = pd.concat(picks, ignore_index=True)
    return out[["setting", "row", *[c for c in s.columns if c != "setting"]]]


#: Figures and tables of the paper, in notebook order. Keys are the file stems under ``figures/``.
FIGURES: dict[str, FigureSpec] = {
    "institution_values": FigureSpec(
        "institution_values.csv", S.institution_values, plots.institution_values, view=institution_values_view
    ),
    "similarity": FigureSpec("similarity.csv", S.similarity, plots.similarity),
    "headline": FigureSpec("similarity.csv", scorecard.headline, None),
    "wins": FigureSpec("similarity.csv", scorecard.wins_table, None),
    "stop_reasons": FigureSpec("replicates.csv", scorecard.stop_reasons, None),
    "lambda_sensitivity": FigureSpec("lambda_sensitivity.csv", lambda f: scorecard.sensitivity(f, "lambda"), None),
    "or_batchnorm": FigureSpec("or_batchnorm.csv", lambda f: scorecard.sensitivity(f, "batchnorm"), None),
    "similarity_table": FigureSpec("similarity.csv", S.similarity_table, None),
    "paper_comparison": FigureSpec("similarity.csv", S.paper_comparison, None),
    "labelflip_values": FigureSpec("labelflip.csv", S.labelflip_values, plots.labelflip_values),
    "flipped_points": FigureSpec("point_values.parquet", S.flipped_points, plots.flipped_points, labelflip_only=True),
    "flip_detection": FigureSpec("flip_detection.csv", S.flip_detection, plots.flip_detection),
    "scalability": FigureSpec("scalability.csv", S.scalability, plots.scalability, view=scalability_view),
    "dp_noise": FigureSpec("dp.csv", S.dp_noise, plots.dp_noise),
    "gas": FigureSpec("gas.csv", S.gas, plots_economy.gas),
    "payout_scaling": FigureSpec(
        "payout_scaling.csv", S.payout_scaling, plots_economy.payout_scaling, view=payout_scaling_view
    ),
    "training_curves": FigureSpec("curves.csv", S.training_curves, plots.training_curves, view=training_curves_view),
}


@dataclass
class Rendered:
    """A drawn figure (or table) with the numbers behind it and the files written. In Jupyter it shows the
    figure, then ``view`` (the numbers, or a cut of them) as :func:`ddval.display.table` formats it with
    ``digits`` decimals (what nbval compares), and where the full numbers are when ``view`` has fewer rows."""

    name: str
    figure: Figure | None
    numbers: pd.DataFrame
    files: tuple[Path, ...]
    digits: int = 4
    view: pd.DataFrame | None = None

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
        display(table(self.numbers if self.view is None else self.view, self.digits))
        if self.view is not None and len(self.view) < len(self.numbers):
            print(f"All {len(self.numbers)} rows: {location(self.files[0])}")


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
    files: list[Path] = [
        write_table(out_dir / f"summary_{name}.csv", numbers.reset_index() if spec.draw is None else numbers)
    ]
    figure = None
    if spec.draw is not None:
        figure = spec.draw(frame)
        files.extend(save(figure, out_dir / name))
    view = spec.view(numbers) if spec.view is not None else None
    return Rendered(name, figure, numbers, tuple(files), view=view)


def render_all(
    tables: S.ResultTables, names: Sequence[str] | None = None, out_dir: str | Path | None = None
) -> list[Rendered | Skipped]:
    """:func:`render` every figure of :data:`FIGURES` (or ``names``) in order."""
    return [render(tables, n, out_dir) for n in (names or FIGURES)]
