"""The training stage end to end on a tiny synthetic cohort (the real data layer, stages 01/02)."""

import pandas as pd
import pytest
import torch

from ddval import layout, store
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


def _differing(a, b) -> list[str]:
    """Files under folder ``a`` (relative paths; not the timings, nor the store's records, which hash them)
    whose bytes differ from those under ``b`` or are missing there."""
    names = sorted(
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "timing.json" and not p.name.startswith(".")
    )
    return [str(n) for n in names if not (b / n).is_file() or (a / n).read_bytes() != (b / n).read_bytes()]


def test_replicates_retrain_every_coalition_and_leave_replicate_0_unchanged(root, tmp_path):
    one = tiny()
    run_training_stage(one, 0, setting="pair", root=root)  # one replicate (done by the tests above: skipped)
    cfg = tiny(replicates=2, processes=2)  # replicates share the process pool
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "data").symlink_to(layout.data_dir(cfg, root), target_is_directory=True)
    out = run_training_stage(cfg, 0, setting="pair", root=tmp_path)
    assert sorted(set(zip(out["replicate"], out["coalition"]))) == [
        (r, c) for r in (0, 1) for c in ("mimic", "nih", "nih+mimic")
    ]

    # replicate 0 is the run without replicates: same folders, same parameter hashes, same bytes
    coalitions = [("nih",), ("mimic",), ("nih", "mimic")]
    for members in coalitions:
        mine, theirs = coalition_dir(cfg, 0, "pair", members, tmp_path), coalition_dir(one, 0, "pair", members, root)
        assert (mine / "best.pt").is_file() and _differing(theirs, mine) == [] and _differing(mine, theirs) == []
        hashes = {store.read_json(store.record_path(d, "train"))["params_hash"] for d in (mine, theirs)}
        assert len(hashes) == 1
    tdir = layout.train_dir(cfg, 0, "pair", tmp_path)
    assert (tdir / "utilities.csv").read_bytes() == (
        layout.train_dir(one, 0, "pair", root) / "utilities.csv"
    ).read_bytes()

    # replicate 1: every coalition retrained with other randomness on the same partition, tables only
    for members in coalitions:
        rdir = coalition_dir(cfg, 0, "pair", members, tmp_path, replicate=1)
        assert rdir.parent == tdir / "replicate-1"
        assert {"auroc.csv", "curve.csv", "rounds.csv", "timing.json"} <= {p.name for p in rdir.iterdir()}
        assert not (rdir / "best.pt").exists() and not (rdir / "rounds").exists()
        hashes = {
            store.read_json(store.record_path(d, "train"))["params_hash"] for d in (rdir, rdir.parents[1] / rdir.name)
        }
        assert len(hashes) == 2  # replicate 1 has its own parameter hash
    u0 = utility_map(load_utilities(cfg, 0, "pair", root=tmp_path))
    u1 = utility_map(load_utilities(cfg, 0, "pair", root=tmp_path, replicate=1))
    assert set(u0) == set(u1) and u0[frozenset()] == u1[frozenset()] == 0.5
    assert any(u0[c] != u1[c] for c in u0 if c), "replicate 1 trained the same models as replicate 0"
    c0, c1 = load_curves(cfg, 0, "pair", root=tmp_path), load_curves(cfg, 0, "pair", root=tmp_path, replicate=1)
    assert len(c0) == len(c1) and not c0["val_loss"].equals(c1["val_loss"])
    assert (tdir / "replicate-1" / "utilities.csv").is_file() and (tdir / "replicate-1" / "curves.csv").is_file()

    only = run_training_stage(cfg, 0, setting="pair", replicate=1, root=tmp_path)  # one replicate: a separate job
    assert set(only["replicate"]) == {1} and len(only) == 3 * 9
    with pytest.raises(ValueError, match=r"replicates 0\.\.1 .*not 2"):
        run_training_stage(cfg, 0, setting="pair", replicate=2, root=tmp_path)
    with pytest.raises(ValueError, match=r"replicate 1 not in 0\.\.0"):
        load_utilities(one, 0, "pair", root=root, replicate=1)

    # a setting that trains only its grand coalition has no ground truth to replicate
    flip = run_training_stage(cfg, 0, setting="flip", root=tmp_path)
    assert set(flip["replicate"]) == {0} and set(flip["coalition"]) == {"clean+noisy"}
    assert not (layout.train_dir(cfg, 0, "flip", tmp_path) / "replicate-1").exists()
    with pytest.raises(ValueError, match="no setting in scope trains it"):
        run_training_stage(cfg, 0, setting="flip", replicate=1, root=tmp_path)


def test_a_settings_own_replicate_count_changes_no_partition_and_no_model(root):
    from ddval.data.splits import load_partition
    from ddval.train.stage import coalition_params

    one = tiny()
    settings = [{**TINY["settings"][0], "replicates": 3}, TINY["settings"][1]]
    own = load_config("demo", {**TINY, "settings": settings})
    assert (layout.setting_replicates(own, "pair"), layout.setting_replicates(one, "pair")) == (3, 1)
    partition = load_partition(one, 0, "pair", root=root)
    record = store.record_path(layout.setting_dir(one, 0, "pair", root), "partition")
    before = record.read_bytes()
    pd.testing.assert_frame_equal(load_partition(own, 0, "pair", root=root), partition)
    assert record.read_bytes() == before  # the same partition stage: not cut again
    params = {r: store.param_hash(coalition_params(own, 0, "pair", ("nih",), partition, r)) for r in range(3)}
    assert params[0] == store.param_hash(coalition_params(one, 0, "pair", ("nih",), partition))
    assert len(set(params.values())) == 3
