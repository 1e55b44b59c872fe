"""The training stage end to end on a tiny synthetic cohort (the real data layer, stages 01/02)."""

import pandas as pd
import pytest
import torch

from ddval import layout
from ddval.config import load_config
from ddval.train import load_curves, load_model, load_rounds, load_utilities, run_training_stage, utility_map
from ddval.layout import coalition_dir
from ddval.train.aggregate import state_sha256
from ddval.train.metrics import coalition_utility

TINY = {
    "data": {
        "image_size": 32,
        "workers": 1,
        "synthetic": {"patients": {"nih": 30, "chexpert": 30, "mimic": 40}, "image_size": 48},
    },
    "settings": [
        {
            "name": "pair",
            "scheme": "noniid",
            "institutions": [
                {"name": "nih", "datasets": ["nih"], "train": 24, "val": 8, "test": 12},
                {"name": "mimic", "datasets": ["mimic"], "train": 24, "val": 8, "test": 12},
            ],
        },
        {
            "name": "flip",
            "scheme": "shared_test",
            "coalitions": "grand",
            "institutions": [
                {"name": "clean", "datasets": ["mimic"], "train": 16, "val": 6, "test": 12},
                {"name": "noisy", "datasets": ["mimic"], "train": 16, "val": 6, "test": 12, "flip_rate": 0.3},
            ],
        },
    ],
    "train": {
        "max_rounds": 2,
        "patience": 2,
        "batch_size": 8,
        "lr": 0.1,
        "threads": 1,
        "processes": 1,
        "device": "cpu",
        "small_growth_rate": 4,
        "small_block_config": [1, 1, 1, 1],
        "small_init_features": 8,
    },
}


def tiny(**train):
    return load_config("demo", {**TINY, "train": {**TINY["train"], **train}})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from ddval.data import run_index_stage, run_resize_stage

    root = tmp_path_factory.mktemp("results")
    run_index_stage(tiny(), root)
    run_resize_stage(tiny(), root)
    return root


def test_stage_outputs_and_loaders(root):
    cfg = tiny()
    with pytest.raises(FileNotFoundError, match=r"nih \(missing\), mimic \(missing\), nih\+mimic \(missing\)"):
        load_utilities(cfg, 0, "pair", root=root)
    one = run_training_stage(cfg, 0, setting="pair", coalition="mimic", root=root)  # one papermill job
    assert set(one["coalition"]) == {"mimic"}
    with pytest.raises(FileNotFoundError, match="nih \\(missing\\), nih\\+mimic \\(missing\\)"):
        load_utilities(cfg, 0, "pair", root=root)
    out = run_training_stage(cfg, 0, root=root)
    assert set(zip(out["setting"], out["coalition"])) == {
        ("pair", "nih"),
        ("pair", "mimic"),
        ("pair", "nih+mimic"),
        ("flip", "clean+noisy"),
    }

    utilities = load_utilities(cfg, 0, "pair", root=root)
    assert list(utilities.columns) == ["setting", "seed", "coalition", "members", "n_members", "label", "auroc"]
    assert len(utilities) == 3 * 9
    u = utility_map(utilities)
    assert u[frozenset()] == 0.5 and set(u) == {
        frozenset(),
        frozenset({"nih"}),
        frozenset({"mimic"}),
        frozenset({"nih", "mimic"}),
    }
    curves = load_curves(cfg, 0, root=root)
    assert set(curves["coalition"]) == {"nih", "mimic", "nih+mimic", "clean+noisy"}
    assert (layout.setting_dir(cfg, 0, "pair", root) / "train" / "curves.csv").exists()

    # the best model reproduces its recorded utility, and the grand coalition's rounds load
    from ddval.train import test_sets

    model = load_model(cfg, 0, "pair", root=root)
    grand = utilities[(utilities["coalition"] == "nih+mimic") & (utilities["label"] == "mean")]["auroc"].iloc[0]
    assert coalition_utility(model, test_sets(cfg, 0, "pair", root)).value == pytest.approx(grand, abs=1e-12)
    rounds = load_rounds(cfg, 0, "pair", root=root)
    assert rounds.institutions == ("nih", "mimic") and rounds.n_train == {"nih": 24, "mimic": 24}
    assert state_sha256(rounds.global_state(rounds.best_round)) == state_sha256(model.state_dict())
    table = pd.read_csv(coalition_dir(cfg, 0, "pair", ("nih", "mimic"), root) / "rounds.csv")
    assert (
        state_sha256(rounds.local_state(1, "mimic"))
        == table[(table["round"] == 1) & (table["institution"] == "mimic")]["model_sha256"].iloc[0]
    )


def test_changed_config_is_never_reused_silently(root):
    cfg = tiny()
    run_training_stage(cfg, 0, setting="pair", root=root)
    other = tiny(lr=0.2)
    with pytest.raises(FileNotFoundError, match="not trained with the current config"):
        load_utilities(other, 0, "pair", root=root)
    with pytest.raises(FileNotFoundError, match="stale"):
        load_model(other, 0, "pair", root=root)
    best = coalition_dir(cfg, 0, "pair", ("nih",), root) / "best.pt"
    blob = best.read_bytes()
    best.write_bytes(blob[: len(blob) // 2])  # a corrupt model file: its record no longer vouches for it
    try:
        with pytest.raises(FileNotFoundError, match=rf"{best} has {len(blob) // 2} bytes, its record says {len(blob)}"):
            load_model(cfg, 0, "pair", coalition="nih", root=root)
    finally:
        best.write_bytes(blob)


def test_processes_give_the_same_results(root, tmp_path):
    cfg = tiny(processes=2)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "data").symlink_to(layout.data_dir(cfg, root), target_is_directory=True)
    parallel = run_training_stage(cfg, 0, setting="pair", root=tmp_path)
    serial = run_training_stage(tiny(), 0, setting="pair", root=root)
    pd.testing.assert_frame_equal(
        parallel.sort_values(["coalition", "label"]).reset_index(drop=True),
        serial.sort_values(["coalition", "label"]).reset_index(drop=True),
    )
    assert torch.equal(
        load_model(cfg, 0, "pair", root=tmp_path).classifier[0].weight,
        load_model(tiny(), 0, "pair", root=root).classifier[0].weight,
    )
