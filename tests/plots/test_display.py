"""ddval.display.table (what ddval.notebook.show and notebook 06 show): numbers rounded even after a
concatenation turned them into `object`, cosine in percent, settings in display order, names as on the
figures, counts as integers, gas with thousands separators; and the cut views under long figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ddval import display as D
from ddval import figures as F
from ddval import summary as S
from ddval.notebook import show


def _similarity(setting: str, cosine: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"setting": [setting], "seed": [0], "method": ["lambda_mr"], "cosine": [cosine], "pearson": [0.123456789]}
    )


def test_object_columns_from_a_concatenation_are_rounded():
    empty = pd.DataFrame(columns=["setting", "seed", "method", "cosine", "pearson"])  # a setting without rows
    frame = pd.concat([_similarity("iid", 0.96511), _similarity("noniid", 0.974539), empty], ignore_index=True)
    assert frame["cosine"].dtype == object  # what 04 met: .round() does nothing on these
    shown = show(frame, 2)
    assert list(shown["cosine_pct"]) == [97.45, 96.51] and list(shown["pearson"]) == [0.12, 0.12]


def test_settings_in_display_order_with_figure_names():
    frame = pd.concat([_similarity(s, 0.5) for s in ("iid", "labelflip", "noniid", "other")], ignore_index=True)
    shown = show(frame)
    assert list(shown["setting"]) == ["non-IID", "IID", "label flip", "other"]
    assert list(shown.index) == [0, 1, 2, 3] and set(shown["method"]) == {"λ-MR"}
    indexed = show(frame.set_index(["setting", "method"]))
    assert list(indexed.index.get_level_values("setting")) == ["non-IID", "IID", "label flip", "other"]


def test_institutions_counts_and_gas():
    frame = pd.DataFrame(
        {
            "institution": ["nih", "client3"],
            "n_tx": [1.0, 336.0],
            "n_seeds": [3, 3],
            "gas_mean": [580154.0, 1206907.6],
            "gas_per_recipient": [np.nan, 29601.1],
            "value": [0.123456, 2.0],
        }
    )
    shown = show(frame)
    assert list(shown["institution"]) == ["NIH", "Client 3"]
    assert str(shown["n_tx"].dtype) == "Int64" and list(shown["n_tx"]) == [1, 336]
    assert list(shown["gas_mean"]) == ["580,154", "1,206,908"] and list(shown["gas_per_recipient"]) == ["–", "29,601"]
    assert list(shown["value"]) == [0.1235, 2.0]
    assert "e+" not in shown.to_string()  # no scientific notation next to integers


def test_fractions_shown_in_percent_as_on_the_figures():
    shown = show(pd.DataFrame({"flip_rate": [0.05], "cosine": [0.96511], "cosine_pct": [1.0]}))
    assert list(shown.columns) == ["flip_rate_pct", "cosine", "cosine_pct"]  # an existing *_pct is not overwritten
    assert shown["flip_rate_pct"][0] == 5.0 and shown["cosine"][0] == 0.9651


def test_fractional_counts_stay_numbers():
    shown = show(pd.DataFrame({"n_tx": [1.5, 2.0]}))
    assert list(shown["n_tx"]) == [1.5, 2.0]


def test_pivot_headers_get_display_names():
    frame = pd.DataFrame(
        {
            "setting": ["noniid", "noniid"],
            "institution": ["nih", "mimic"],
            "method": ["ddval", "or"],
            "value": [0.1, 0.2],
        }
    )
    pivot = frame.pivot_table(index=["setting", "institution"], columns="method", values="value", sort=False)
    shown = show(pivot)
    assert list(shown.columns) == ["DDVal", "OR"]
    assert list(shown.index) == [("non-IID", "NIH"), ("non-IID", "MIMIC-CXR")]
    wide = show(pd.DataFrame({"noniid": ["1 ± 2"], "iid": ["3 ± 4"]}, index=pd.Index(["ddval"], name="method")))
    assert list(wide.columns) == ["non-IID", "IID"] and list(wide.index) == ["DDVal"]


def test_input_is_not_modified_and_series_work():
    frame = _similarity("iid", 0.5)
    show(frame)
    assert list(frame.columns) == ["setting", "seed", "method", "cosine", "pearson"] and frame["cosine"][0] == 0.5
    assert list(show(pd.Series([0.123456], name="x"))) == [0.1235]


def test_location_is_relative_in_the_checkout(tmp_path, monkeypatch):
    root = tmp_path / "clone"
    (root / "configs").mkdir(parents=True)
    (root / "lib" / "ddval").mkdir(parents=True)
    monkeypatch.chdir(root / "configs")
    assert D.location(root / "results" / "demo" / "figures") == "results/demo/figures (relative to the repository root)"
    assert D.location(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


# --------------------------------------------------------------------------------------------
# the views under long figures in notebook 06
# --------------------------------------------------------------------------------------------


def test_long_tables_are_cut_and_say_where_the_full_one_is(tables, tmp_path):
    for name, most in (("institution_values", 6), ("scalability", 6), ("training_curves", 9)):
        r = F.render(tables, name, tmp_path)
        assert r.view is not None and len(r.view) <= most < len(r.numbers), name
        assert len(pd.read_csv(r.files[0])) == len(r.numbers)  # the full table on disk


def test_scalability_view_marks_extrapolated_cells(tables):
    s = S.scalability(tables.load("scalability.csv"))
    view = F.scalability_view(s)
    assert view.loc["exact", "2 clients [s]"].startswith("≈")
    assert not view.loc["ddval", "8 clients [s]"].startswith("≈")
    assert view.loc["or", "extrapolated (≈)"].startswith("at 8 clients:")
    assert view.loc["ddval", "extrapolated (≈)"] == "none: all measured"
    n_marked = sum(str(c).startswith("≈") for c in view.drop(columns="extrapolated (≈)").to_numpy().ravel())
    assert n_marked == int((~s["measured"]).sum())


def test_institution_values_view_is_a_pivot_of_mean_and_ci(tables):
    s = S.institution_values(tables.load("institution_values.csv"))
    view = F.institution_values_view(s)
    row = s[(s["setting"] == "noniid") & (s["method"] == "ddval") & (s["institution"] == "nih")].iloc[0]
    assert view.loc[("noniid", "nih"), "ddval"] == f"{row['value_pct']:.2f} ± {row['value_pct_ci95']:.2f}"
    assert list(view.columns) == [*S.METHODS, "equal_split", "size_split", "positives_split"]  # methods, references


def test_training_curves_view_names_each_round(tables):
    s = S.training_curves(tables.load("curves.csv"))
    view = F.training_curves_view(s)
    for setting, part in view.groupby("setting"):
        full = s[s["setting"] == setting]
        assert part["round"].min() == full["round"].min() and part["round"].max() == full["round"].max()
        best = full.loc[full["val_loss"].idxmin(), "round"]
        assert "lowest validation loss" in part.loc[part["round"] == best, "row"].iloc[0]
