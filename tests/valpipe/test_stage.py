"""The valuation stage end to end on the tiny preset: contract tables, resume, sharding, the
grand-coalition OR reconstruction on real recorded training, label flips, DP and scalability."""

import numpy as np
import pandas as pd
import pytest

from ddval.config import LABELS
from ddval.train import load_model, load_rounds, load_utilities, utility_map
from ddval.valuation import stage, views
from ddval.valuation.reconstruct import accumulated_updates, or_state


def _vdir(cfg, root, setting):
    return stage.valuation_dir(cfg, 0, setting, root)


@pytest.fixture(scope="module")
def valued(tiny_run):
    cfg, root = tiny_run
    result = stage.run_valuation_stage(cfg, 0, root=root)
    return cfg, root, result


def test_tables_follow_the_contract(valued):
    cfg, root, result = valued
    v = _vdir(cfg, root, "noniid")
    inst = pd.read_csv(v / "institution_values.csv")
    assert list(inst.columns) == ["setting", "seed", "method", "institution", "value", "n_utility_evals"]
    rows = ["exact", "ddval", "or", "mr", "lambda_mr", "gtg", "safe", "equal_split", "size_split", "positives_split"]
    assert inst["method"].unique().tolist() == rows
    assert (inst.groupby("method")["institution"].apply(list) == [["nih", "chexpert", "mimic"]] * len(rows)).all()
    sim = pd.read_csv(v / "similarity.csv")
    assert list(sim.columns) == [
        "setting",
        "seed",
        "method",
        "cosine",
        "pearson",
        "spearman",
        "l1_share",
        "max_abs_error",
    ]
    assert sim["method"].tolist() == rows[1:]  # one training replicate: no noise ceiling row
    exact = inst[inst["method"] == "exact"]["value"].to_numpy()
    equal = sim.set_index("method").loc["equal_split"]
    assert equal["cosine"] == pytest.approx(exact.sum() / np.sqrt(len(exact)) / np.linalg.norm(exact))
    assert views.similarity_view(sim).index[0] == ("noniid", "ddval")
    reps = pd.read_csv(v / "replicates.csv")
    assert list(reps.columns) == [
        "setting",
        "seed",
        "replicate",
        "coalition",
        "n_members",
        "utility",
        "rounds",
        "best_round",
        "stop",
    ]
    assert len(reps) == 7 and set(reps["stop"]) <= {"patience", "round_cap"} and (reps["replicate"] == 0).all()
    lam = pd.read_csv(v / "lambda_sensitivity.csv")
    assert lam["lambda"].tolist() == list(cfg.valuation.lambda_grid)
    mr = sim.set_index("method").loc["mr", "cosine"]
    assert lam.set_index("lambda").loc[1.0, "cosine"] == pytest.approx(mr, abs=1e-12)  # λ = 1 is MR
    bn = pd.read_csv(v / "or_batchnorm.csv").set_index("batchnorm")
    assert list(bn.index) == ["rebuilt", "grand", "initial"]
    assert bn.loc["rebuilt", "cosine"] == pytest.approx(sim.set_index("method").loc["or", "cosine"], abs=1e-12)
    points = pd.read_parquet(v / "point_values.parquet")
    assert list(points.columns) == [
        "institution",
        "scan_id",
        "patient_id",
        "sex",
        "age",
        "n_flipped",
        "value",
        *[f"value_{l}" for l in LABELS],
    ]
    patients = pd.read_csv(v / "patient_values.csv")
    assert list(patients.columns) == ["institution", "patient_id", "n_scans", "value"]
    with np.load(v / "features" / "nih.npz") as npz:
        assert {"train_x", "train_y", "train_ids", "test_x", "test_y", "test_ids"} <= set(npz.files)
        assert len(npz["train_x"]) == 24 and len(npz["test_x"]) == 12
    dp = pd.read_csv(v / "dp.csv")
    assert list(dp.columns) == ["setting", "seed", "noise_scale", "cosine", "pearson", "spearman"] and dp[
        "noise_scale"
    ].tolist() == [0.0, 10.0]
    assert result.settings == ("noniid", "labelflip")


def test_ddval_hierarchy_and_exact_values_on_the_real_run(valued):
    cfg, root, _ = valued
    v = _vdir(cfg, root, "noniid")
    util = utility_map(load_utilities(cfg, 0, "noniid", root))
    grand = util[frozenset({"nih", "chexpert", "mimic"})]
    inst = pd.read_csv(v / "institution_values.csv")
    for method in (
        "exact",
        "ddval",
        "or",
        "safe",
        "equal_split",
        "size_split",
        "positives_split",
    ):  # add up to U(grand) − 0.5
        assert inst.loc[inst["method"] == method, "value"].sum() == pytest.approx(grand - 0.5, abs=1e-6), method
    points = pd.read_parquet(v / "point_values.parquet")
    ddval = inst[inst["method"] == "ddval"].set_index("institution")["value"]
    assert points.groupby("institution")["value"].sum().reindex(ddval.index).to_numpy() == pytest.approx(
        ddval.to_numpy()
    )
    dp0 = pd.read_csv(v / "dp.csv").iloc[0]
    sim = pd.read_csv(v / "similarity.csv").set_index("method")
    assert dp0["cosine"] == pytest.approx(sim.at["ddval", "cosine"], abs=1e-12)  # scale 0 is DDVal itself


def test_or_reconstruction_of_the_grand_coalition_equals_the_trained_model(tiny_run):
    cfg, root = tiny_run
    hist = load_rounds(cfg, 0, "noniid", root)
    best = load_model(cfg, 0, "noniid", root=root).state_dict()
    grand = or_state(hist, hist.institutions, accumulated_updates(hist))
    for key, ref in best.items():
        assert np.allclose(grand[key].double().numpy(), ref.double().numpy(), rtol=1e-5, atol=1e-6), key


def test_a_second_run_is_skipped_and_equal(valued, caplog):
    cfg, root, result = valued
    before = {p: p.stat().st_mtime_ns for p in _vdir(cfg, root, "noniid").rglob("*.csv")}
    again = stage.run_valuation_stage(cfg, 0, root=root)
    pd.testing.assert_frame_equal(again.institution_values, result.institution_values)
    assert before == {p: p.stat().st_mtime_ns for p in _vdir(cfg, root, "noniid").rglob("*.csv")}


def test_sharded_equals_unsharded_exactly(valued, tmp_path):
    cfg, root, _ = valued
    v = _vdir(cfg, root, "noniid")
    with np.load(v / "knn_values.npz") as npz:
        whole = npz["label_values"]
    (v / "knn_values.npz").rename(tmp_path / "whole.npz")
    written = stage.run_valuation_stage(cfg, 0, setting="noniid", shard=0, n_shards=3, root=root)
    assert written.shard_files == (v / "shards" / "knn-0-of-3.npz",) and written.shard_files[0].exists()
    assert written.institution_values.empty and list(written.similarity.columns)[:3] == ["setting", "seed", "method"]
    with pytest.raises(FileNotFoundError, match=r"knn-1-of-3\.npz.*knn-2-of-3\.npz"):
        stage.run_valuation_stage(cfg, 0, setting="noniid", n_shards=3, root=root)
    for i in (1, 2):
        stage.run_valuation_stage(cfg, 0, setting="noniid", shard=i, n_shards=3, root=root)
    stage.run_valuation_stage(cfg, 0, setting="noniid", n_shards=3, root=root)
    with np.load(v / "knn_values.npz") as npz:
        assert np.array_equal(npz["label_values"], whole)


def test_label_flip_tables(valued):
    cfg, root, _ = valued
    v = _vdir(cfg, root, "labelflip")
    inst = pd.read_csv(v / "institution_values.csv")
    assert inst["method"].unique().tolist() == ["ddval"]  # grand-only: no exact values, no similarity rows
    assert pd.read_csv(v / "similarity.csv").empty
    flips = pd.read_csv(v / "labelflip.csv")
    assert list(flips.columns) == ["setting", "seed", "institution", "flip_rate", "value"]
    assert flips["flip_rate"].tolist() == [0.0, 0.3, 0.6]
    det = pd.read_csv(v / "flip_detection.csv")
    assert list(det.columns) == ["setting", "seed", "auroc", "n_flipped", "n_clean"]
    points = pd.read_parquet(v / "point_values.parquet")
    assert det["n_flipped"].iloc[0] == (points["n_flipped"] > 0).sum() > 0
    assert points.loc[points["institution"] == "flip00", "n_flipped"].eq(0).all()


def test_scalability_marks_extrapolations(valued):
    cfg, root, _ = valued
    scal = pd.read_csv(_vdir(cfg, root, "labelflip") / "scalability.csv")
    assert list(scal.columns) == [
        "method",
        "n_clients",
        "n_points",
        "wall_time_s",
        "n_utility_evals",
        "measured",
        "basis",
    ]
    assert set(scal["method"]) == {"ddval", "or", "lambda_mr", "gtg", "safe", "exact"}
    assert (
        scal.loc[scal["method"] == "ddval", "measured"].all()
        and not scal.loc[scal["method"] == "exact", "measured"].any()
    )
    # only three clients were recorded: four clients of OR can only be an extrapolation
    row = scal[(scal["method"] == "or") & (scal["n_clients"] == 4)].iloc[0]
    assert not row["measured"] and row["n_utility_evals"] == 15 and row["basis"].startswith("extrapolated")
    assert (scal["n_points"] == scal["n_clients"] * 20).all()
