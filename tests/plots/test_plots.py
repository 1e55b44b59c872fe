"""ddval.plots on the fixture tables: each figure has the expected panels and series, draws the summary
numbers, and is saved as PNG + PDF with its summary table (ddval.figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from ddval import figures as F
from ddval import plots as P
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
    for ax, setting in zip(fig.axes, ["noniid", "iid"]):
        bars = _bars(ax)
        assert len(bars) == 6 and all(len(b) == 3 for b in bars)  # 6 methods x 3 institutions
        ddval = s[(s["setting"] == setting) & (s["method"] == "ddval")]["value_pct"].to_numpy()
        assert np.allclose([r.get_height() for r in bars[1]], ddval)
    assert "[% macro-AUROC]" in fig.axes[0].get_ylabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [P.METHOD_LABELS[m] for m in S.METHODS]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["NIH", "CheXpert", "MIMIC-CXR"]
    _labelled(fig)


def test_similarity(tables):
    fig = P.similarity(tables.load("similarity.csv"))
    (ax,) = fig.axes
    assert len(_errorbars(ax)) == 2  # one series per setting
    assert [t.get_text() for t in ax.get_xticklabels()] == ["DDVal", "OR", "λ-MR", "GTG-Shapley", "SaFE"]
    assert "Cosine similarity" in ax.get_ylabel() and "[%]" in ax.get_ylabel()
    _labelled(fig)


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


def test_scalability(tables):
    fig = P.scalability(tables.load("scalability.csv"))
    a, b = fig.axes
    assert len(_errorbars(a)) == 6  # all six methods timed
    assert len(b.get_lines()) == 5  # DDVal evaluates no coalition utility
    assert a.get_yscale() == "log" and b.get_yscale() == "log"
    assert "500 data points each" in a.get_xlabel()
    _labelled(fig)


def test_dp_noise(tables):
    fig = P.dp_noise(tables.load("dp.csv"))
    (ax,) = fig.axes
    assert len(_errorbars(ax)) == 2 and ax.get_xscale() == "symlog"
    _labelled(fig)


def test_gas(tables):
    g = tables.load("gas.csv")
    fig = P.gas(g)
    (ax,) = fig.axes
    (bars,) = _bars(ax)
    s = S.gas(g)
    assert len(bars) == len(s) == 12
    assert np.allclose(sorted(r.get_width() for r in bars), sorted(s["gas_mean"] / 1000))
    _labelled(fig)


def test_payout_scaling(tables):
    fig = P.payout_scaling(tables.load("payout_scaling.csv"))
    a, b = fig.axes
    assert len(a.get_lines()) == len(b.get_lines()) == 2
    assert a.get_xscale() == a.get_yscale() == "log"
    _labelled(fig)


def test_training_curves(tables):
    fig = P.training_curves(tables.load("curves.csv"))
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["validation", "training"]
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
    assert len({P.method_color(m) for m in S.METHODS}) == len(S.METHODS)
