"""The coalition stage on in-memory data: tables, recorded rounds, skip, resume, stale and corrupt files."""

import pandas as pd
import pytest
from tiny_training import TINY_TRAIN, tiny_setting_data

from ddval import store
from ddval.config import LABELS, load_config
from ddval.layout import all_coalitions, coalition_dir, coalition_id, parse_coalition, setting_coalitions
from ddval.train import record as coalition_record
from ddval.train import stage
from ddval.train.results import RoundHistory
from ddval.train.stage import train_coalition
from ddval.train.aggregate import state_sha256
from ddval.train.checkpoints import CheckpointError, load_checkpoint

GRAND = ("nih", "chexpert", "mimic")


def demo(**train):
    return load_config("demo", {"train": {**TINY_TRAIN, **train}})


@pytest.fixture
def data():
    return tiny_setting_data(GRAND)


def test_coalitions_are_enumerated_in_config_order():
    cfg = load_config("demo")
    assert all_coalitions(["a", "b", "c"]) == [
        ("a",),
        ("b",),
        ("c",),
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("a", "b", "c"),
    ]
    assert [coalition_id(c) for c in setting_coalitions(cfg.setting("noniid"))][3] == "nih+chexpert"
    assert setting_coalitions(cfg.setting("labelflip")) == [tuple(f"flip{p:02d}" for p in range(0, 30, 5))]
    assert parse_coalition(cfg.setting("noniid"), "mimic+nih") == ("nih", "mimic")
    with pytest.raises(ValueError, match="institutions are"):
        parse_coalition(cfg.setting("noniid"), "nih+cxr")
    with pytest.raises(ValueError, match="only the grand coalition"):
        parse_coalition(cfg.setting("labelflip"), "flip00")


def test_grand_coalition_tables_and_recorded_rounds(tmp_path, data):
    cfg = demo()
    res = train_coalition(cfg, 0, "noniid", GRAND, data, root=tmp_path)
    cdir = coalition_dir(cfg, 0, "noniid", GRAND, root=tmp_path)
    assert not res.skipped and not (cdir / "checkpoint.pt").exists()
    auroc = pd.read_csv(cdir / "auroc.csv")
    assert list(auroc.columns) == ["setting", "seed", "coalition", "members", "n_members", "label", "auroc"]
    assert auroc["label"].tolist() == [*LABELS, "mean"]
    assert set(auroc["coalition"]) == {"nih+chexpert+mimic"} and set(auroc["n_members"]) == {3}
    curve = pd.read_csv(cdir / "curve.csv")
    assert curve["round"].tolist() == [1, 2, 3] and curve["is_best"].sum() == 1
    rounds = pd.read_csv(cdir / "rounds.csv")
    assert list(rounds.columns) == ["round", "institution", "model_sha256", "merged_sha256", "leader", "val_loss"]
    assert len(rounds) == 9 and set(rounds["leader"]) == {"server"}
    history = RoundHistory(
        cdir,
        store.param_hash(stage.coalition_params(cfg, 0, "noniid", GRAND, data.partition)),
        GRAND,
        {n: 16 for n in GRAND},
        False,
        3,
        int(curve.loc[curve["is_best"], "round"].iloc[0]),
    )
    for r in (1, 2, 3):
        row = rounds[rounds["round"] == r]
        assert state_sha256(history.global_state(r)) == row["merged_sha256"].iloc[0]
        for name in GRAND:
            assert (
                state_sha256(history.local_state(r, name))
                == row.loc[row["institution"] == name, "model_sha256"].iloc[0]
            )
    best = load_checkpoint(cdir / "best.pt", history.params_hash)
    assert state_sha256(best["state"]) == state_sha256(history.global_state(history.best_round))
    # round 0 is the shared initial model: a single-institution coalition starts from it too
    train_coalition(cfg, 0, "noniid", ("nih",), data, root=tmp_path)
    solo = pd.read_csv(coalition_dir(cfg, 0, "noniid", ("nih",), root=tmp_path) / "rounds.csv")
    assert (
        solo.loc[0, "model_sha256"]
        == rounds[(rounds["round"] == 1) & (rounds["institution"] == "nih")]["model_sha256"].iloc[0]
    )
    assert not (
        coalition_dir(cfg, 0, "noniid", ("nih",), root=tmp_path) / "rounds"
    ).exists()  # only the grand one keeps states


def test_done_coalition_is_skipped_and_a_changed_config_retrains(tmp_path, data, caplog):
    train_coalition(demo(), 0, "noniid", ("nih",), data, root=tmp_path)
    assert train_coalition(demo(), 0, "noniid", ("nih",), data, root=tmp_path).skipped
    res = train_coalition(demo(lr=0.02), 0, "noniid", ("nih",), data, root=tmp_path)
    assert not res.skipped
    assert any("other parameters" in r.message for r in caplog.records)


class Killed(Exception):
    pass


def test_resume_after_a_killed_run(tmp_path, data, monkeypatch):
    cfg = demo()
    train_coalition(cfg, 0, "noniid", GRAND, data, root=tmp_path / "full")
    save_round = coalition_record.save_round

    def die_in_round_3(cdir, record, h):
        if record.round == 3:
            raise Killed
        save_round(cdir, record, h)

    monkeypatch.setattr(coalition_record, "save_round", die_in_round_3)
    with pytest.raises(Killed):
        train_coalition(cfg, 0, "noniid", GRAND, data, root=tmp_path / "killed")
    cdir = coalition_dir(cfg, 0, "noniid", GRAND, root=tmp_path / "killed")
    assert (cdir / "checkpoint.pt").exists() and not (cdir / "best.pt").exists()
    # a half-trained coalition of another config is never continued
    with pytest.raises(CheckpointError, match="different configuration"):
        train_coalition(demo(lr=0.02), 0, "noniid", GRAND, data, root=tmp_path / "killed")
    monkeypatch.setattr(coalition_record, "save_round", save_round)
    assert not train_coalition(cfg, 0, "noniid", GRAND, data, root=tmp_path / "killed").skipped
    full = coalition_dir(cfg, 0, "noniid", GRAND, root=tmp_path / "full")
    for name in ("auroc.csv", "curve.csv", "rounds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(full / name), pd.read_csv(cdir / name))


def test_corrupt_checkpoint_is_an_error(tmp_path, data):
    cfg = demo()
    cdir = coalition_dir(cfg, 0, "noniid", ("nih",), root=tmp_path)
    cdir.mkdir(parents=True)
    (cdir / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_coalition(cfg, 0, "noniid", ("nih",), data, root=tmp_path)


def test_same_seed_same_utilities_other_seed_other_model(tmp_path, data):
    cfg = demo()
    for root in ("a", "b"):
        train_coalition(cfg, 0, "noniid", ("chexpert",), data, root=tmp_path / root)
    train_coalition(cfg, 1, "noniid", ("chexpert",), data, root=tmp_path / "c")

    def read(root, seed):
        return pd.read_csv(coalition_dir(cfg, seed, "noniid", ("chexpert",), root=tmp_path / root) / "rounds.csv")

    pd.testing.assert_frame_equal(read("a", 0), read("b", 0))
    assert read("a", 0)["merged_sha256"].iloc[-1] != read("c", 1)["merged_sha256"].iloc[-1]


def test_swarm_stage_records_rotating_leaders_and_the_fedavg_models(tmp_path, data):
    train_coalition(demo(), 0, "noniid", GRAND, data, root=tmp_path / "fedavg")
    train_coalition(demo(algorithm="swarm"), 0, "noniid", GRAND, data, root=tmp_path / "swarm")
    fed = pd.read_csv(coalition_dir(demo(), 0, "noniid", GRAND, root=tmp_path / "fedavg") / "rounds.csv")
    swarm = pd.read_csv(coalition_dir(demo(), 0, "noniid", GRAND, root=tmp_path / "swarm") / "rounds.csv")
    assert swarm.groupby("round")["leader"].first().tolist() == ["nih", "chexpert", "mimic"]
    pd.testing.assert_frame_equal(fed.drop(columns="leader"), swarm.drop(columns="leader"))


def test_model_hash_ignores_where_the_scans_lie_but_not_what_they_are(data):
    cfg = demo()
    here = data.partition.assign(path=lambda f: "/results/a/" + f["scan_id"] + ".png")
    there = data.partition.assign(path=lambda f: "/elsewhere/b/" + f["scan_id"] + ".png")
    relabelled = here.assign(split=here["split"].where(here.index != 0, "val"))

    def h(frame):
        return store.param_hash(stage.coalition_params(cfg, 0, "noniid", GRAND, frame))

    assert h(here) == h(there)
    assert h(relabelled) != h(here)
