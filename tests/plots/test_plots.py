"""ddval.plots and ddval.plots_economy on the fixture tables: each figure has the expected panels and series,
draws the summary numbers, and is saved as PNG + PDF with its summary table (ddval.figures)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from ddval import figures as F
from ddval import plot_style
from ddval import plots as P
from ddval import plots_economy as PE
from ddval import summary as S


def _bars(ax):
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _labelled(fig: Figure) -> None:
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes in {fig}"


def test_institution_values(tables):
    values = tables.load("institution_values.csv")
    fig = P.institution_values(values)
    assert len(fig.axes) == 2  # non-IID and IID; label flip has no exact values
    assert [ax.get_title() for ax in fig.axes] == ["non-IID", "IID"]
    s = S.institution_values(values)
    rows = S.order_methods(values.loc[values["setting"] == "noniid", "method"])  # methods, then reference splits
    assert rows[:7] == list(S.METHODS) and set(rows[7:]) == {"equal_split", "size_split", "positives_split"}
    for ax, setting in zip(fig.axes, ["noniid", "iid"]):
        bars = _bars(ax)
        assert len(bars) == len(rows) and all(len(b) == 3 for b in bars)  # one bar per row and institution
        ddval = s[(s["setting"] == setting) & (s["method"] == "ddval")]["value_pct"].to_numpy()
        assert np.allclose([r.get_height() for r in bars[1]], ddval)
    assert "[% macro-AUROC]" in fig.axes[0].get_ylabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [P.METHOD_LABELS[m] for m in rows]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["NIH", "CheXpert", "MIMIC-CXR"]
    _labelled(fig)


def test_similarity(tables):
    sim = tables.load("similarity.csv")
    fig = P.similarity(sim)
    assert [ax.get_title() for ax in fig.axes] == ["non-IID", "IID"]  # one panel per setting with exact values
    s = S.similarity(sim)
    for ax, setting in zip(fig.axes, ["noniid", "iid"]):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["DDVal", "OR", "MR", "λ-MR", "GTG-Shapley", "SaFE"]
        assert len(_errorbars(ax)) == 6  # every method's mean and bootstrap interval
        here = s[s["setting"] == setting].set_index("method")
        lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_label()[0] != "_"}
        for ref, (_, name) in P.REFERENCE_STYLES.items():  # reference splits as horizontal lines at their mean
            assert lines[name] == pytest.approx(here.at[ref, "cosine_pct"])
        dots = [c for c in ax.collections if c.get_offsets().shape[0] == 3]  # one dot per seed
        assert len(dots) == 6
        low, high = ax.get_ylim()
        assert high == pytest.approx(100.5) and low > -100  # no axis stretched to the metric's far end
        assert ax.get_ylabel() == "Cosine to exact values [%]"  # short enough to fit beside the legend
    assert {"size split (∝ training scans)", "equal split"} <= {t.get_text() for t in fig.legends[0].get_texts()}
    _labelled(fig)


def test_similarity_draws_the_noise_ceiling_as_a_band_per_setting(tables):
    sim = tables.load("similarity.csv")
    ceiling = sim[sim["method"] == "ddval"].assign(method=S.NOISE_CEILING)  # one ceiling row per setting and seed
    ceiling["cosine"] = np.linspace(0.97, 0.99, len(ceiling))
    fig = P.similarity(pd.concat([ceiling, sim], ignore_index=True))
    s = S.similarity(pd.concat([ceiling, sim], ignore_index=True))
    for ax, setting in zip(fig.axes, ["noniid", "iid"]):
        c = s[(s["setting"] == setting) & (s["method"] == S.NOISE_CEILING)].iloc[0]
        lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
        assert lines["noise ceiling"] == pytest.approx(c["cosine_pct"])
        (band,) = [p for p in ax.patches if p.get_label() == "noise ceiling (interval)"]
        ys = (band.get_y(), band.get_y() + band.get_height())  # axhspan: a rectangle in data y
        assert ys == pytest.approx((c["cosine_pct_low"], c["cosine_pct_high"]))
        assert S.NOISE_CEILING not in [t.get_text() for t in ax.get_xticklabels()]  # a band, not a method
    assert "noise ceiling" in {t.get_text() for t in fig.legends[0].get_texts()}


def test_similarity_axis_is_not_stretched_by_one_poor_method(tables):
    sim = tables.load("similarity.csv").copy()
    sim.loc[sim["method"] == "lambda_mr", "cosine"] = [-0.9, 0.95, -0.5, 0.2, -0.8, 0.99]  # a wild method
    fig = P.similarity(sim)
    for ax in fig.axes:
        low, _ = ax.get_ylim()
        refs = sim[(sim["method"].isin(P.REFERENCE_STYLES)) & (sim["setting"] == "noniid")]["cosine"].min() * 100
        assert low > refs - 50, "the axis follows the references, not the wild method"
        marked = [c for c in ax.collections if len(c.get_offsets()) and np.allclose(c.get_offsets()[:, 1], low)]
        assert marked, "seeds below the axis are drawn at its lower edge"


def test_labelflip_values(tables):
    flip = tables.load("labelflip.csv")
    fig = P.labelflip_values(flip)
    (ax,) = fig.axes
    (bars,) = _bars(ax)
    assert len(bars) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "5", "10", "15", "20", "25"]
    assert np.allclose([r.get_height() for r in bars], S.labelflip_values(flip)["value_pct"])
    assert "flipped labels [%]" in ax.get_xlabel()
    _labelled(fig)


def test_flipped_points(tables):
    points = tables.load("point_values.parquet", ["labelflip"])
    fig = P.flipped_points(points)
    a, b = fig.axes
    (bars,) = _bars(a)
    s = S.flipped_points(points)
    assert len(bars) == len(s) and np.allclose([r.get_height() for r in bars], s["value"])
    assert "10$^{-4}$" in a.get_ylabel()
    assert [t.get_text() for t in b.get_xticklabels()] == ["clean", "≥ 1 flipped"]
    _labelled(fig)


def test_flip_detection(tables):
    det = tables.load("flip_detection.csv")
    fig = P.flip_detection(det)
    (ax,) = fig.axes
    (bars,) = _bars(ax)
    assert len(bars) == 1 and bars[0].get_height() == pytest.approx(det["auroc"].mean())
    assert ax.get_ylim() == (0, 1)
    _labelled(fig)


def _markers(ax, hollow: bool) -> list[tuple[float, float]]:
    """Data positions of the filled (or hollow: white face) markers of ``ax`` (error-bar caps left out)."""
    out = []
    for line in ax.get_lines():
        if line.get_marker() in (None, "None", "", "_", "|") or line.get_linestyle() not in ("None", "none", ""):
            continue
        if (line.get_markerfacecolor() == "white") == hollow:
            out.extend(zip(*line.get_data()))
    return out


def _disjoint(fig, ax) -> bool:
    """The figure's legend does not overlap ``ax``."""
    fig.draw_without_rendering()  # runs the constrained layout
    legend = fig.legends[0].get_window_extent()
    return not legend.overlaps(ax.get_window_extent())


def test_scalability_tells_measured_from_extrapolated(tables):
    scal = tables.load("scalability.csv")
    fig = P.scalability(scal)
    a, b = fig.axes
    extrapolated = scal[~scal["measured"]]
    assert len(_markers(a, hollow=True)) == len(extrapolated)  # one hollow marker per extrapolated time
    assert len(_markers(a, hollow=False)) == len(scal) - len(extrapolated)
    assert len(_markers(b, hollow=True)) == len(extrapolated[extrapolated["n_utility_evals"] > 0])
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names[-2:] == ["measured", "extrapolated"] and "DDVal" in names
    assert a.get_yscale() == "log" and b.get_yscale() == "log"
    assert "500 data points each" in a.get_xlabel()
    assert _disjoint(fig, a) and _disjoint(fig, b)  # the legend covers no data
    _labelled(fig)


def test_scalability_hides_no_series(tables):
    """Methods with equal numbers (OR and SaFE evaluate 2^n - 1 coalitions in the fixture) stay apart: no two
    methods share a marker position, and every method has its own marker shape."""
    fig = P.scalability(tables.load("scalability.csv"))
    for ax in fig.axes:
        points = _markers(ax, hollow=False) + _markers(ax, hollow=True)
        assert len(set(points)) == len(points)
    shapes = {line.get_marker() for line in fig.axes[0].get_lines() if line.get_linestyle() in ("None", "none")} - {"_"}
    assert len(shapes) == 6


def test_scalability_without_measured_column_counts_as_measured(tables):
    scal = tables.load("scalability.csv").drop(columns=["measured", "basis"])
    s = S.scalability(scal)
    assert s["measured"].all() and set(s["basis"]) == {"not recorded"}
    assert not _markers(P.scalability(scal).axes[0], hollow=True)


def test_dp_noise(tables):
    fig = P.dp_noise(tables.load("dp.csv"))
    (ax,) = fig.axes
    assert len(_errorbars(ax)) == 2 and ax.get_xscale() == "symlog"
    _labelled(fig)


def test_gas(tables):
    g = tables.load("gas.csv")
    fig = PE.gas(g)
    (ax,) = fig.axes
    (bars,) = _bars(ax)
    s = S.gas(g)
    assert len(bars) == len(s) == 12
    assert np.allclose(sorted(r.get_width() for r in bars), sorted(s["gas_mean"] / 1000))
    assert "register_round (NIH)" in [t.get_text() for t in ax.get_yticklabels()]  # names as in the tables
    _labelled(fig)


def test_payout_scaling_is_complete_and_says_what_is_sampled(tables):
    payout = tables.load("payout_scaling.csv")
    fig = PE.payout_scaling(payout)
    a, b = fig.axes
    sampled = payout[payout["n_measured"] < payout["n_recipients"]]
    assert len(sampled) and payout.loc[sampled.index, "total_gas"].isna().all()  # the writer leaves them empty
    # every row has a total-gas point; the sampled ones are hollow
    assert len(_markers(a, hollow=False)) + len(_markers(a, hollow=True)) == len(payout)
    assert len(_markers(a, hollow=True)) == len(_markers(b, hollow=True)) == len(sampled)
    assert a.get_xlim() == b.get_xlim()  # both panels reach 10^4
    assert max(x for x, _ in _markers(a, hollow=True)) > 5000
    note = fig.get_suptitle()
    assert "20 of 10,000" in note and "1,000 of 10,000" in note and "mean" in note
    assert a.get_xscale() == a.get_yscale() == "log"
    assert _disjoint(fig, a) and _disjoint(fig, b)
    _labelled(fig)


def test_payout_scaling_totals_from_the_sample(tables):
    payout = tables.load("payout_scaling.csv")
    s = S.payout_scaling(payout)
    row = s[(s["method"] == "merkle_claim") & (s["n_recipients"] == 1000)].iloc[0]
    assert not row["measured"] and row["total_gas"] == 268_042 + 1000 * row["gas_per_recipient"]
    full = s[(s["method"] == "merkle_claim") & (s["n_recipients"] == 10)].iloc[0]
    assert full["measured"] and full["total_gas"] == payout["total_gas"].iloc[1]  # measured totals kept


def test_training_curves(tables):
    fig = P.training_curves(tables.load("curves.csv"))
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["validation", "training"]
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)  # rounds are whole numbers
    _labelled(fig)


# --------------------------------------------------------------------------------------------
# render / save / registry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(F.FIGURES))
def test_render_writes_png_pdf_and_summary(tables, tmp_path, name):
    r = F.render(tables, name, tmp_path)
    assert isinstance(r, F.Rendered)
    summary_csv = tmp_path / f"summary_{name}.csv"
    assert summary_csv in r.files and len(pd.read_csv(summary_csv)) == len(r.numbers) > 0
    if F.FIGURES[name].draw is None:
        assert r.figure is None and len(r.files) == 1
        return
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert r.png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_skips_missing_tables(tmp_path):
    empty = S.ResultTables.open(tmp_path, "demo")
    r = F.render(empty, "gas")
    assert isinstance(r, F.Skipped)
    assert repr(r) == "skipped gas: no demo/seed-*/*/economy/gas.csv"
    assert not (tmp_path / "demo").exists()  # nothing written for a skipped figure


def test_flipped_points_skipped_without_labelflip_settings(copied_root):
    for path in copied_root.glob("demo/seed-*/labelflip/valuation/labelflip.csv"):
        path.unlink()
    r = F.render(S.ResultTables.open(copied_root, "demo"), "flipped_points")
    assert isinstance(r, F.Skipped) and "no label-flip setting" in r.reason


def test_render_default_out_dir_is_preset_figures(copied_root):
    t = S.ResultTables.open(copied_root, "demo")
    r = F.render(t, "labelflip_values")
    assert all(f.parent == copied_root / "demo" / "figures" for f in r.files)


def test_figures_and_tables_are_readable_by_others(tables, tmp_path):
    """Written with the mode of a plain open() (0644 under umask 022), not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        r = F.render(tables, "labelflip_values", tmp_path)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(f.stat().st_mode) for f in r.files} == {0o644}


def test_save_is_byte_stable(tables, tmp_path):
    fig = P.labelflip_values(tables.load("labelflip.csv"))
    first = [p.read_bytes() for p in F.save(fig, tmp_path / "a")]
    second = [p.read_bytes() for p in F.save(P.labelflip_values(tables.load("labelflip.csv")), tmp_path / "b.png")]
    assert first == second  # no creation dates: re-drawing the same table gives the same files


def test_unknown_figure_is_a_clear_error(tables):
    with pytest.raises(KeyError, match="unknown figure 'nope'"):
        F.render(tables, "nope")


def test_labels_and_colours():
    assert P.label("client3", P.INSTITUTION_LABELS) == "Client 3"
    assert P.label("nih", P.INSTITUTION_LABELS) == "NIH"
    assert P.label("weird_name", {}) == "weird_name"
    assert len({plot_style.method_color(m) for m in S.METHODS}) == len(S.METHODS)
