"""Training replicates end to end on the tiny preset: the valuation's ground truth is the exact Shapley value
of the mean utilities of every replicate, its noise ceiling row is computed from the replicates' files, and
``replicates.csv`` lists every coalition of every replicate."""

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddval import layout, scorecard
from ddval.config import load_config
from ddval.train import run_training_stage, utility_map
from ddval.valuation import ground_truth, stage

HERE = Path(__file__).parent
SETTING = "noniid"


@pytest.fixture(scope="module")
def replicated(tiny_run, tmp_path_factory):
    """``(cfg, root)`` of the tiny preset with 2 replicates: replicate 0 copied from ``tiny_run`` (one
    replicate: the same parameters, so it is not retrained), replicate 1 trained here, then valued."""
    one, one_root = tiny_run
    cfg = load_config(HERE / "tiny.yaml", {"train": {"replicates": 2}})
    root = tmp_path_factory.mktemp("replicates")
    layout.preset_dir(cfg, root).mkdir(parents=True)
    layout.data_dir(cfg, root).symlink_to(layout.data_dir(one, one_root), target_is_directory=True)
    shutil.copytree(layout.train_dir(one, 0, SETTING, one_root), layout.train_dir(cfg, 0, SETTING, root))
    trained = run_training_stage(cfg, 0, SETTING, root=root)
    assert set(trained["replicate"]) == {0, 1}
    stage.run_valuation_stage(cfg, 0, setting=SETTING, root=root)
    return cfg, root


def _replicate_utilities(cfg, root) -> dict[int, dict[frozenset, float]]:
    """Every replicate's utilities, read from its ``utilities.csv`` (replicate 0: ``<S>/train``)."""
    tdir = layout.train_dir(cfg, 0, SETTING, root)
    files = {0: tdir / "utilities.csv", 1: tdir / "replicate-1" / "utilities.csv"}
    return {r: utility_map(pd.read_csv(f)) for r, f in files.items()}


def test_ground_truth_is_the_exact_value_of_the_mean_utilities(replicated):
    cfg, root = replicated
    players = [i.name for i in cfg.setting(SETTING).institutions]
    reps = _replicate_utilities(cfg, root)
    assert any(reps[0][c] != reps[1][c] for c in reps[0] if c)  # the replicates differ
    values = pd.read_csv(layout.valuation_dir(cfg, 0, SETTING, root) / "institution_values.csv")
    exact_rows = values[values["method"] == "exact"]
    assert set(exact_rows["n_utility_evals"]) == {2 * 7}  # every coalition trained in both replicates
    exact = exact_rows.set_index("institution")["value"].reindex(players)
    want = ground_truth.exact_values(reps, players)
    np.testing.assert_allclose(exact.to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)
    for r in (0, 1):  # not one replicate's values
        assert not np.allclose(exact.to_numpy(), ground_truth.exact_values(reps, players, [r]).to_numpy())
    mean_grand = np.mean([reps[r][frozenset(players)] for r in (0, 1)])
    assert exact.sum() == pytest.approx(mean_grand - 0.5, abs=1e-12)
    size = values[values["method"] == "size_split"]["value"]  # the reference splits share the same total
    assert size.sum() == pytest.approx(mean_grand - 0.5, abs=1e-12)


def test_noise_ceiling_row_is_computed_from_the_replicates_files(replicated):
    cfg, root = replicated
    players = [i.name for i in cfg.setting(SETTING).institutions]
    sim = pd.read_csv(layout.valuation_dir(cfg, 0, SETTING, root) / "similarity.csv")
    assert sim["method"].iloc[0] == layout.NOISE_CEILING
    row = sim.iloc[0]
    want = ground_truth.noise_ceiling(_replicate_utilities(cfg, root), players)
    for metric, value in want.items():
        assert math.isnan(value) == math.isnan(row[metric]), metric
        if not math.isnan(value):
            assert row[metric] == pytest.approx(value, abs=1e-12), metric
    headline = scorecard.headline(sim)
    assert (SETTING, layout.NOISE_CEILING) in headline.index and "vs ceiling" in headline.columns
    assert headline.loc[(SETTING, "ddval"), "vs ceiling"] != ""


def test_replicates_table_lists_every_coalition_of_every_replicate(replicated):
    cfg, root = replicated
    table = pd.read_csv(layout.valuation_dir(cfg, 0, SETTING, root) / "replicates.csv")
    assert len(table) == 2 * 7
    assert sorted(table["replicate"].value_counts().items()) == [(0, 7), (1, 7)]
    reps = _replicate_utilities(cfg, root)
    for _, r in table.iterrows():
        assert r["utility"] == reps[r["replicate"]][frozenset(r["coalition"].split("+"))]
    assert set(table["stop"]) <= {"patience", "round_cap"}
