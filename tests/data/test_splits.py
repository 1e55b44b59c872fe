"""Partitions: no patient leakage, exact sizes, schemes, label flips, determinism, the stage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from data_fixtures import fake_index
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddval import layout, store
from ddval.config import LABELS, InstitutionConfig, SettingConfig
from ddval.data import run_index_stage, run_resize_stage
from ddval.data.splits import (
    PartitionError,
    check_partition,
    load_partition,
    make_partition,
    partition_summary,
    patient_pools,
)

INDEX = fake_index({"nih": 120, "chexpert": 100, "mimic": 200}, seed=3)


def inst(name, datasets, train, val, test=None, flip=0.0):
    return InstitutionConfig(name=name, datasets=tuple(datasets), train=train, val=val, test=test, flip_rate=flip)


NONIID = SettingConfig(
    "noniid",
    "noniid",
    (
        inst("nih", ["nih"], 150, 30),
        inst("chexpert", ["chexpert"], 120, 30),
        inst("mimic", ["mimic"], 200, 50, test=60),
    ),
)
IID = SettingConfig("iid", "iid", tuple(inst(f"c{i}", ["nih", "chexpert", "mimic"], 90, 30, test=30) for i in range(3)))
FLIP = SettingConfig(
    "flip",
    "shared_test",
    tuple(inst(f"f{i}", ["mimic"], 70, 20, test=50, flip=0.1 * i) for i in range(4)),
    coalitions="grand",
)


def sizes(partition: pd.DataFrame) -> dict[tuple[str, str], int]:
    return partition.groupby(["institution", "split"], sort=False).size().to_dict()


def test_pools_are_patient_level_and_cut_at_test_fraction():
    pools = patient_pools(INDEX, seed=0, test_fraction=0.2)
    for dataset, (trainval, test) in pools.items():
        n = (INDEX["dataset"] == dataset).sum()
        assert len(trainval) + len(test) == n
        assert not set(trainval["patient_id"]) & set(test["patient_id"])
        assert 0.2 * n - 4 <= len(test) <= 0.2 * n  # whole patients: at most one patient's scans short


def test_noniid_sizes_and_test_pools():
    part = make_partition(INDEX, NONIID, seed=0)
    got = sizes(part)
    assert got[("nih", "train")] == 150 and got[("nih", "val")] == 30
    assert got[("chexpert", "train")] == 120 and got[("mimic", "val")] == 50 and got[("mimic", "test")] == 60
    pools = patient_pools(INDEX, seed=0, test_fraction=0.2)
    # test: null = the dataset's whole test pool
    assert set(part.query("institution == 'nih' and split == 'test'")["scan_id"]) == set(pools["nih"][1]["scan_id"])
    for name in ("nih", "chexpert", "mimic"):
        assert set(part.loc[part["institution"] == name, "dataset"]) == {name}
    check_partition(part)
    expected = [
        "dataset",
        "scan_id",
        "path",
        "patient_id",
        "study_id",
        "sex",
        "age",
        "view",
        "view_position",
        "institution",
        "split",
        *LABELS,
        *(f"orig_{lab}" for lab in LABELS),
        "n_flipped",
    ]
    assert list(part.columns) == expected


def test_iid_equal_shares_and_disjoint_tests():
    part = make_partition(INDEX, IID, seed=1)
    counts = part.groupby(["institution", "split", "dataset"]).size()
    assert (counts.xs("train", level="split") == 30).all() and (counts.xs("val", level="split") == 10).all()
    assert (counts.xs("test", level="split") == 10).all()
    tests = part.loc[part["split"] == "test"]
    assert tests["scan_id"].is_unique  # disjoint test blocks
    check_partition(part)


def test_shared_test_is_identical_and_flips_are_recorded():
    part = make_partition(INDEX, FLIP, seed=2)
    tests = [set(part.query(f"institution == 'f{i}' and split == 'test'")["scan_id"]) for i in range(4)]
    assert all(t == tests[0] for t in tests) and len(tests[0]) == 50
    orig = part[[f"orig_{lab}" for lab in LABELS]].to_numpy()
    used = part[list(LABELS)].to_numpy()
    flipped = orig != used
    assert (flipped.sum(axis=1) == part["n_flipped"]).all()
    assert np.array_equal(used[flipped], 1 - orig[flipped])
    assert part.loc[part["split"] != "train", "n_flipped"].sum() == 0  # val and test stay clean
    assert part.loc[part["institution"] == "f0", "n_flipped"].sum() == 0
    assert part.loc[part["institution"] == "f3", "n_flipped"].sum() > 0
    table = partition_summary(part)
    assert table.loc[("f3", "train"), "flipped_labels"] == part.query("institution == 'f3'")["n_flipped"].sum()


def test_flip_rate_is_the_probability_per_label():
    big = fake_index({"mimic": 3000}, seed=5, max_scans=2)
    setting = SettingConfig("f", "shared_test", (inst("a", ["mimic"], 2000, 0, test=10, flip=0.25),))
    part = make_partition(big, setting, seed=0)
    rate = part.loc[part["split"] == "train", "n_flipped"].sum() / (2000 * len(LABELS))
    assert abs(rate - 0.25) < 0.015  # 16,000 Bernoulli(0.25) draws: sd 0.0034


def test_deterministic_per_seed():
    a = make_partition(INDEX, FLIP, seed=4)
    pd.testing.assert_frame_equal(a, make_partition(INDEX, FLIP, seed=4))
    # the row order of the index does not matter
    shuffled = INDEX.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, make_partition(shuffled, FLIP, seed=4))
    b = make_partition(INDEX, FLIP, seed=5)
    assert set(a.loc[a["split"] == "train", "scan_id"]) != set(b.loc[b["split"] == "train", "scan_id"])


def test_too_small_pool_is_a_clear_error():
    greedy = SettingConfig("g", "noniid", (inst("nih", ["nih"], 10_000, 10),))
    with pytest.raises(PartitionError, match=r"nih train: needs 10000 more scans from the nih train/val pool"):
        make_partition(INDEX, greedy, seed=0)


@pytest.mark.parametrize(
    "setting, message",
    [
        (SettingConfig("x", "noniid", (inst("a", ["nih", "mimic"], 5, 5),)), "exactly one dataset"),
        (SettingConfig("x", "iid", (inst("a", ["nih", "mimic"], 5, 5), inst("b", ["nih"], 5, 5))), "same datasets"),
    ],
)
def test_scheme_violations(setting, message):
    with pytest.raises(PartitionError, match=message):
        make_partition(INDEX, setting, seed=0)


def test_check_partition_catches_leakage():
    part = make_partition(INDEX, NONIID, seed=0)
    leaked = part.copy()
    first_test = leaked.index[leaked["split"] == "test"][0]
    leaked.loc[first_test, "patient_id"] = leaked.loc[leaked["split"] == "train", "patient_id"].iloc[0]
    with pytest.raises(AssertionError, match="patient leakage"):
        check_partition(leaked)
    twice = pd.concat([part, part.loc[part["split"] == "train"].head(1)])
    with pytest.raises(AssertionError, match="used twice"):
        check_partition(twice)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    train=st.lists(st.integers(0, 60), min_size=1, max_size=4),
    val=st.integers(0, 15),
    test=st.one_of(st.none(), st.integers(0, 20)),
    scheme=st.sampled_from(["noniid", "iid", "shared_test"]),
    test_fraction=st.floats(0.05, 0.5),
)
def test_invariants_hold_for_any_feasible_setting(seed, train, val, test, scheme, test_fraction):
    datasets = ["nih", "chexpert", "mimic"]
    insts = tuple(
        inst(f"i{k}", [datasets[k % 3]] if scheme == "noniid" else datasets, n, val, test, flip=0.2)
        for k, n in enumerate(train)
    )
    setting = SettingConfig("h", scheme, insts, test_fraction=test_fraction)
    try:
        part = make_partition(INDEX, setting, seed)
    except PartitionError as exc:
        assert "needs" in str(exc)  # the only acceptable failure: a pool too small
        return
    check_partition(part)
    got = sizes(part)
    for i in insts:
        assert got.get((i.name, "train"), 0) == i.train and got.get((i.name, "val"), 0) == i.val
        if test is not None:
            assert got.get((i.name, "test"), 0) == test
    splits_per_patient = part.groupby("patient_id")["split"].nunique()
    assert (splits_per_patient == 1).all()


def test_load_partition_stage(tmp_path, tiny_cfg):
    root = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="stages 01 and 02"):
        load_partition(tiny_cfg, 0, "noniid", root)
    run_index_stage(tiny_cfg, root)
    run_resize_stage(tiny_cfg, root)
    part = load_partition(tiny_cfg, 0, "noniid", root)
    sdir = layout.setting_dir(tiny_cfg, 0, "noniid", root)
    assert (sdir / "partition.parquet").exists() and (sdir / ".partition.done.json").exists()
    assert sizes(part)[("nih", "train")] == 10 and sizes(part)[("mimic", "val")] == 3
    assert part["path"].str.contains("/resized/8/").all()  # points at the resized scans
    stamp = (sdir / "partition.parquet").stat().st_mtime_ns
    pd.testing.assert_frame_equal(part, load_partition(tiny_cfg, 0, "noniid", root))
    assert (sdir / "partition.parquet").stat().st_mtime_ns == stamp
    flip = load_partition(tiny_cfg, 1, "labelflip", root)
    assert flip.loc[flip["institution"] == "noisy", "n_flipped"].sum() > 0
    assert set(flip.query("institution == 'clean' and split == 'test'")["scan_id"]) == set(
        flip.query("institution == 'noisy' and split == 'test'")["scan_id"]
    )


def test_synthetic_stage_hashes_do_not_depend_on_the_results_folder(tmp_path, tiny_cfg):
    """The same preset in two folders (or re-run later) gives the same stage hashes, so checkpoints
    and everything pinned from them are byte-identical (notebook 05's gas table under nbval)."""
    hashes = []
    for name in ("a", "b"):
        root = tmp_path / name
        run_index_stage(tiny_cfg, root)
        run_resize_stage(tiny_cfg, root)
        load_partition(tiny_cfg, 0, "noniid", root)
        sdir = layout.setting_dir(tiny_cfg, 0, "noniid", root)
        hashes.append(store.read_json(store.record_path(sdir, "partition"))["params_hash"])
    assert hashes[0] == hashes[1]


def _patient_sex(partition: pd.DataFrame) -> pd.Series:
    return partition.groupby("patient_id", sort=False)["sex"].first()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sex_balance_takes_half_male_half_female_whole_patients(seed):
    """The paper's non-IID setting (sex_balance): every train and val block is n // 2 scans of male patients
    and the rest of female ones, no patient of unknown sex is used for them, patients stay whole and in one
    split, and the test pools are those of the unbalanced setting."""
    index = fake_index({"nih": 400, "chexpert": 400, "mimic": 400}, seed=5)
    index.loc[index.index % 7 == 0, "sex"] = "U"  # some scans of unknown sex
    unbalanced = SettingConfig("noniid", "noniid", tuple(inst(d, [d], 91, 30, test=40) for d in ("nih", "mimic")))
    balanced = dataclasses.replace(unbalanced, sex_balance=True)
    part, plain = make_partition(index, balanced, seed), make_partition(index, unbalanced, seed)
    sex = index.groupby("patient_id")["sex"].first()  # a patient's sex: their first scan's
    for (name, split), frame in part.groupby(["institution", "split"]):
        who = frame["patient_id"].map(sex)
        if split == "test":
            expected = plain[(plain["institution"] == name) & (plain["split"] == "test")]
            assert list(frame["scan_id"]) == list(expected["scan_id"])
            continue
        n = len(frame)
        assert n == {"train": 91, "val": 30}[split]
        assert (who == "M").sum() == n // 2 and (who == "F").sum() == n - n // 2, (name, split)
    check_partition(part)


def test_sex_balance_says_which_sex_runs_out():
    index = fake_index({"nih": 200}, seed=5)  # 200 patients, about 520 scans
    index["sex"] = np.where(index["patient_id"].rank(method="dense") % 5 == 0, "F", "M")  # a fifth female
    setting = SettingConfig("noniid", "noniid", (inst("nih", ["nih"], 240, 10, test=10),), sex_balance=True)
    make_partition(index, dataclasses.replace(setting, sex_balance=False), 0)  # enough scans, unbalanced
    with pytest.raises(PartitionError, match="female patients"):
        make_partition(index, setting, 0)
