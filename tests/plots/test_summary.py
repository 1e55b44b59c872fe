"""ddval.summary: loading the tables of a preset over seeds, and mean ± 95 % t-CI summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ddval import summary as S

# --------------------------------------------------------------------------------------------
# mean_ci
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x", [[1.0, 2.0, 4.0], [0.99969, 0.99971, 0.99968, 0.9997], [5.0, 5.0], list(np.linspace(-1, 3, 12))]
)
def test_mean_ci_matches_scipy_t_interval(x):
    m, h = S.mean_ci(x)
    assert m == pytest.approx(np.mean(x))
    if np.std(x) == 0:
        assert h == 0.0
    else:
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
        assert h == pytest.approx((hi - lo) / 2)


def test_mean_ci_golden_three_seeds():
    # sd 10 over 3 values: sem = 10/sqrt(3); t.ppf(0.975, 2) = 4.302653
    m, h = S.mean_ci([90.0, 80.0, 100.0])
    assert m == 90.0
    assert h == pytest.approx(10 / math.sqrt(3) * 4.302652729911275)


def test_mean_ci_one_value_and_nans():
    assert S.mean_ci([3.0])[0] == 3.0 and math.isnan(S.mean_ci([3.0])[1])
    assert S.mean_ci([1.0, math.nan, 3.0]) == S.mean_ci([1.0, 3.0])
    assert all(math.isnan(v) for v in S.mean_ci([]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=15), st.floats(0.1, 10), st.floats(-100, 100))
def test_mean_ci_is_affine_equivariant(x, a, b):
    m, h = S.mean_ci(x)
    m2, h2 = S.mean_ci([a * v + b for v in x])
    assert m2 == pytest.approx(a * m + b, abs=1e-6)
    assert h2 == pytest.approx(a * h, rel=1e-6, abs=1e-6)
    assert h >= 0


def test_summarize_keeps_first_appearance_order_and_scales():
    frame = pd.DataFrame({"g": ["b", "a", "b", "a"], "v": [1.0, 2.0, 3.0, 4.0]})
    out = S.summarize(frame, ["g"], "v", scale=100.0, name="v_pct")
    assert list(out["g"]) == ["b", "a"]
    assert list(out["n_seeds"]) == [2, 2]
    assert list(out["v_pct"]) == [200.0, 300.0]
    assert out["v_pct_ci95"].iloc[0] == pytest.approx(S.mean_ci([100.0, 300.0])[1])


# --------------------------------------------------------------------------------------------
# ResultTables
# --------------------------------------------------------------------------------------------


def test_load_stacks_seeds_and_settings(tables):
    iv = tables.load("institution_values.csv")
    assert sorted(iv["seed"].unique()) == [0, 1, 2]
    assert S.order_settings(iv["setting"].unique()) == ["noniid", "iid", "labelflip"]
    only = tables.load("point_values.parquet", settings=["labelflip"])
    assert set(only["setting"]) == {"labelflip"} and set(only["seed"]) == {0, 1, 2}
    assert "setting" in only.columns and "seed" in only.columns  # stamped from the folders


def test_load_missing_table_is_none(tmp_path):
    assert S.ResultTables.open(tmp_path, "demo").load("gas.csv") is None


def test_inventory_counts_files(tables):
    inv = tables.inventory().set_index("table")
    assert inv.loc["institution_values.csv", "files"] == 9
    assert inv.loc["scalability.csv", "seeds"] == "0"
    assert inv.loc["labelflip.csv", "settings"] == "labelflip"


def test_seeds_sorted_numerically(tmp_path):
    for seed in (10, 2):
        d = tmp_path / "p" / f"seed-{seed}" / "iid" / "valuation"
        d.mkdir(parents=True)
        pd.DataFrame({"setting": ["iid"], "seed": [seed], "auroc": [0.7], "n_flipped": [1], "n_clean": [2]}).to_csv(
            d / "flip_detection.csv", index=False
        )
    assert list(S.ResultTables.open(tmp_path, "p").load("flip_detection.csv")["seed"]) == [2, 10]


def _write(tmp_path, frame, seed=0, setting="iid", name="labelflip.csv"):
    d = tmp_path / "p" / f"seed-{seed}" / setting / "valuation"
    d.mkdir(parents=True, exist_ok=True)
    frame.to_csv(d / name, index=False)
    return S.ResultTables.open(tmp_path, "p")


def test_bad_tables_name_file_row_and_field(tmp_path):
    good = {
        "setting": ["iid", "iid"],
        "seed": [0, 0],
        "institution": ["a", "b"],
        "flip_rate": [0.0, 0.1],
        "value": [0.1, 0.2],
    }
    t = _write(tmp_path, pd.DataFrame({k: v for k, v in good.items() if k != "flip_rate"}))
    with pytest.raises(ValueError, match=r"labelflip\.csv: missing column\(s\) \['flip_rate'\]"):
        t.load("labelflip.csv")
    t = _write(tmp_path, pd.DataFrame({**good, "value": [0.1, "oops"]}))
    with pytest.raises(ValueError, match=r"labelflip\.csv: row 2, field 'value': 'oops' is not a number"):
        t.load("labelflip.csv")
    t = _write(tmp_path, pd.DataFrame({**good, "seed": [0, 7]}))
    with pytest.raises(ValueError, match=r"row 2, field 'seed': .*7.* disagrees with the folder"):
        t.load("labelflip.csv")


def test_results_root_none_means_shipped_tables(monkeypatch, tmp_path):
    monkeypatch.setenv("DDVAL_RESULTS", str(tmp_path))
    t = S.ResultTables.open(None, "demo")
    assert t.root == S.shipped_results_root() and t.root.name == "results"
    assert t.figures_dir == t.root / "demo" / "figures"


# --------------------------------------------------------------------------------------------
# Per-figure summaries
# --------------------------------------------------------------------------------------------


def _sim(rows):
    return pd.DataFrame(rows, columns=["setting", "seed", "method", "cosine", "pearson", "spearman", "max_abs_error"])


def test_similarity_table_and_paper_comparison_golden():
    sim = _sim(
        [
            ("iid", s, m, c, 0.9, 0.8, 0.01)
            for s, row in enumerate([(0.9, 0.5, 0.7), (0.8, 0.6, 0.7), (1.0, 0.7, 0.7)])
            for m, c in zip(("ddval", "or", "safe"), row)
        ]
    )
    table = S.similarity_table(sim)
    assert list(table.index) == ["ddval", "or", "safe"] and list(table.columns) == ["iid"]
    # mean [percentile-bootstrap interval over seeds]: inside the per-seed range, never beyond 100 %
    mean, low, high = (
        float(x) for x in table.loc["ddval", "iid"].replace("[", "").replace("]", "").replace(",", "").split()
    )
    assert mean == 90.0 and 80.0 <= low < mean < high <= 100.0
    assert table.loc["safe", "iid"] == "70.000 [70.000, 70.000]"
    comp = S.paper_comparison(sim).set_index("row")
    assert comp.loc["best_baseline", "method"] == "safe"  # 70 % beats OR's 60 %
    assert comp.loc["ddval", "paper_pct"] == 99.969 and comp.loc["best_baseline", "paper_pct"] == 99.301


def test_institution_values_only_settings_with_exact(tables):
    s = S.institution_values(tables.load("institution_values.csv"))
    assert S.order_settings(s["setting"].unique()) == ["noniid", "iid"]
    assert list(s["method"].unique()) == [*S.METHODS, "equal_split", "size_split", "positives_split"]
    row = s[(s["setting"] == "noniid") & (s["method"] == "exact") & (s["institution"] == "nih")].iloc[0]
    raw = tables.load("institution_values.csv").query(
        "setting == 'noniid' and method == 'exact' and institution == 'nih'"
    )
    assert row["value_pct"] == pytest.approx(100 * raw["value"].mean())
    assert row["n_seeds"] == 3


def test_flipped_points_averages_each_seed_first():
    pts = pd.DataFrame(
        {
            "setting": "lf",
            "seed": [0, 0, 0, 1],
            "n_flipped": [0, 0, 1, 0],
            "value": [1e-4, 3e-4, -1e-4, 4e-4],
            "institution": "a",
            "scan_id": list("wxyz"),
        }
    )
    out = S.flipped_points(pts)
    clean = out[out["n_flipped"] == 0].iloc[0]
    assert clean["unit"] == "1e-04"
    assert clean["value"] == pytest.approx(3.0)  # seed means 2e-4 and 4e-4, not the pooled 2.67e-4
    assert clean["n_points"] == 3 and clean["n_seeds"] == 2


def test_training_curves_use_the_grand_coalition(tables):
    curves = tables.load("curves.csv")
    s = S.training_curves(curves)
    grand = curves[
        (curves["setting"] == "noniid") & (curves["coalition"] == "nih+chexpert+mimic") & (curves["round"] == 1)
    ]
    first = s[(s["setting"] == "noniid") & (s["round"] == 1)].iloc[0]
    assert first["val_loss"] == pytest.approx(grand["val_loss"].mean())
    assert first["n_seeds"] == 3


def test_gas_is_per_run():
    g = pd.DataFrame(
        {"seed": [0, 0, 1, 1], "setting": "x", "operation": ["claim"] * 4, "actor": "i", "gas_used": [10, 20, 30, 40]}
    )
    out = S.gas(g).iloc[0]
    assert out["n_tx"] == 2 and out["gas_per_run"] == 50 and out["gas_mean"] == 25


def test_scalability_keeps_settings_apart():
    scal = pd.DataFrame(
        {
            "setting": ["a", "b"],
            "seed": 0,
            "method": "ddval",
            "n_clients": 2,
            "n_points": 100,
            "wall_time_s": [1.0, 3.0],
            "n_utility_evals": 0,
        }
    )
    out = S.scalability(scal)
    assert list(out["wall_time_s"]) == [1.0, 3.0] and list(out["setting"]) == ["a", "b"]


def test_headline(fixture_root, tmp_path):
    table = S.headline(fixture_root, "demo")
    assert list(table.columns) == ["cosine [%]", "per seed", "Spearman", "L1 share", "vs best reference"]  # no ceiling
    assert list(table.index.get_level_values("setting").unique()) == ["noniid", "iid"]
    rows = ["ddval", "or", "mr", "lambda_mr", "gtg", "safe", "equal_split", "size_split", "positives_split"]
    assert list(table.loc["noniid"].index) == rows  # methods, then the reference splits (no ceiling: one replicate)
    assert all(len(cell.split()) == 3 for cell in table.loc["noniid", "per seed"])  # three seeds
    wins = table.loc[("noniid", "ddval"), "vs best reference"]
    assert wins.split(",")[0] in {f"{k}/3" for k in range(4)}  # wins out of the three seeds, then the difference
    assert (
        table.loc[("noniid", "size_split"), "vs best reference"] == ""
    )  # references are not judged against themselves
    assert S.headline(tmp_path, "demo") is None


def test_a_preset_not_run_under_a_results_root_is_read_from_the_shipped_tables(tmp_path):
    """Notebook 06 shows the benchmark beside any run: the run's own tables when the root holds a run of it,
    else the shipped ones."""
    from ddval.result_tables import ResultTables, shipped_results_root

    assert ResultTables.open_run_or_shipped(tmp_path, "benchmark").root == shipped_results_root()
    (tmp_path / "benchmark" / "seed-0").mkdir(parents=True)
    assert ResultTables.open_run_or_shipped(tmp_path, "benchmark").root == tmp_path.resolve()
