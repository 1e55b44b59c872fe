"""The scorecard over seeds: per-seed best reference, paired wins, the headline and the README blocks."""

import numpy as np
import pandas as pd
import pytest

from ddval import readme, scorecard


def _sim(rows):
    cols = ["setting", "seed", "method", "cosine", "pearson", "spearman", "l1_share", "max_abs_error"]
    return pd.DataFrame([(*r[:3], r[3], 0.0, r[4], r[5], 0.0) for r in rows], columns=cols)


# seed-by-seed values: the size split is the best reference in seed 0, the equal split in seeds 1 and 2
SIM = _sim(
    [
        ("quality", 0, "noise_ceiling", 0.99, 0.9, 0.05),
        ("quality", 0, "ddval", 0.97, 0.8, 0.10),
        ("quality", 0, "or", 0.90, 0.5, 0.30),
        ("quality", 0, "equal_split", 0.90, np.nan, 0.40),
        ("quality", 0, "size_split", 0.98, 0.6, 0.20),
        ("quality", 1, "noise_ceiling", 0.98, 0.9, 0.05),
        ("quality", 1, "ddval", 0.96, 0.9, 0.10),
        ("quality", 1, "or", 0.70, 0.1, 0.50),
        ("quality", 1, "equal_split", 0.93, np.nan, 0.30),
        ("quality", 1, "size_split", 0.92, 0.5, 0.35),
        ("quality", 2, "noise_ceiling", 0.97, 0.8, 0.06),
        ("quality", 2, "ddval", 0.99, 0.9, 0.04),
        ("quality", 2, "or", 0.95, 0.7, 0.20),
        ("quality", 2, "equal_split", 0.94, np.nan, 0.25),
        ("quality", 2, "size_split", 0.91, 0.4, 0.30),
    ]
)


def test_best_reference_is_taken_seed_by_seed():
    here = SIM[SIM["setting"] == "quality"]
    assert scorecard.best_reference_by_seed(here, "cosine").tolist() == [0.98, 0.93, 0.94]
    assert scorecard.best_reference_by_seed(here, "l1_share").tolist() == [0.20, 0.30, 0.25]  # smaller is better


def test_versus_counts_wins_and_paired_differences():
    v = scorecard.versus(SIM, "ddval").set_index("versus")
    assert list(v.index) == ["best_reference", "or", "equal_split", "size_split"]
    assert v.at["best_reference", "wins"] == 2 and v.at["best_reference", "n"] == 3  # loses seed 0 to the size split
    assert v.at["best_reference", "diff"] == pytest.approx(100 * np.mean([0.97 - 0.98, 0.96 - 0.93, 0.99 - 0.94]))
    assert v.at["or", "wins"] == 3 and v.at["size_split", "wins"] == 2
    ceiling = scorecard.versus(SIM, "ddval", ["noise_ceiling"]).iloc[0]
    assert ceiling["wins"] == 1 and ceiling["diff"] == pytest.approx(100 * np.mean([-0.02, -0.02, 0.02]))


def test_headline_rows_cells_and_bounds():
    h = scorecard.headline(SIM)
    assert [m for _, m in h.index] == ["noise_ceiling", "ddval", "or", "equal_split", "size_split"]
    ddval = h.loc[("quality", "ddval")]
    assert ddval["per seed"] == "97.0 96.0 99.0" and ddval["vs best reference"].startswith("2/3, +")
    assert h.loc[("quality", "equal_split"), "vs best reference"] == ""  # references are not credited
    summ = scorecard.similarity_summary(SIM)
    # bootstrap intervals stay inside the per-seed values (and so inside the metric's range)
    for _, r in summ.iterrows():
        seeds = SIM[(SIM["method"] == r["method"])]["cosine"] * 100
        assert (
            seeds.min() - 1e-9 <= r["cosine_pct_low"] <= r["cosine_pct"] <= r["cosine_pct_high"] <= seeds.max() + 1e-9
        )


def test_readme_blocks_are_checked_against_the_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(readme, "_similarity", lambda tables: SIM)
    good = readme.render("headline", "demo")
    text = f"# R\n\n<!-- results:headline:demo -->\n{good}<!-- /results -->\n\nrest\n"
    path = tmp_path / "README.md"
    path.write_text(text)
    assert readme.stale_blocks(path) == []
    path.write_text(text.replace("97.0 96.0 99.0", "97.0 96.0 99.1"))  # one number typed by hand
    assert readme.stale_blocks(path) == ["headline:demo"]
    assert readme.update(path) == 1 and path.read_text() == text
    assert good.splitlines()[0].startswith("| setting | method | cosine [%] |")
