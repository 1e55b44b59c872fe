"""Institutions that differ in quality (issue 11, ``ddval.data.degrade``): each kind's effect measured on
rendered synthetic scans, cut through the real partition stage; determinism, kept sizes, untouched
validation and test rows, config errors, and presets without kinds cut exactly as before."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pandas as pd
import pytest
from data_fixtures import tiny_overrides
from scipy import ndimage, stats

from ddval import layout, store
from ddval.config import ConfigError, InstitutionConfig, load_config
from ddval.data import degrade, run_index_stage, run_resize_stage
from ddval.data.images import read_grayscale
from ddval.data.splits import load_partition, make_partition
from ddval.data.views import quality_montage
from ddval.train.setting_data import frame_digest

KINDS = ("clean", "degraded", "shifted", "duplicates", "ood")
TRAIN, VAL, TEST = 9, 2, 3  # 9 training scans: a duplicates institution holds ceil(9 / 4) = 3 distinct ones


def quality_overrides() -> dict:
    """The tiny preset at the demo's image sizes (64 px written, 32 px resized) plus a setting of five
    equal-size institutions, one per quality kind."""
    over = tiny_overrides(patients=(16, 14, 60), image_size=64, resize=32)
    institutions = [
        {"name": kind, "datasets": ["mimic"], "train": TRAIN, "val": VAL, "test": TEST, "quality": kind}
        for kind in KINDS
    ]
    institutions[0]["flip_rate"] = 0.25  # label noise: the clean institution's images, some labels flipped
    over["settings"].append({"name": "quality", "scheme": "shared_test", "institutions": institutions})
    return over


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """(config, results root, the quality setting's partition, the resized index), cut once."""
    cfg = load_config("demo", quality_overrides())
    root = tmp_path_factory.mktemp("quality") / "results"
    run_index_stage(cfg, root)
    run_resize_stage(cfg, root)
    partition = load_partition(cfg, 0, "quality", root)
    return cfg, root, partition, store.read_table(layout.resized_index_path(cfg, root))


def pixels(path) -> np.ndarray:
    return np.asarray(read_grayscale(path), dtype=np.float64)


def pairs(cut, kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original, as the ``kind`` institution holds it) for each of its training scans."""
    _, _, partition, index = cut
    source = index.set_index("scan_id")["path"]
    rows = partition.query("institution == @kind and split == 'train'")
    ids = rows["scan_id"].str.split(degrade.COPY_SEPARATOR).str[0]
    return [(pixels(source[i]), pixels(p)) for i, p in zip(ids, rows["path"])]


def high_frequency_energy(img: np.ndarray) -> float:
    return float(np.mean(ndimage.laplace(img / 255.0) ** 2))


def test_every_kind_keeps_the_number_of_training_scans_and_marks_its_rows(cut):
    _, _, partition, _ = cut
    sizes = partition.groupby(["institution", "split"]).size()
    for kind in KINDS:
        assert (sizes[(kind, "train")], sizes[(kind, "val")], sizes[(kind, "test")]) == (TRAIN, VAL, TEST)
        rows = partition.loc[partition["institution"] == kind]
        train = rows["split"] == "train"
        assert (rows.loc[train, degrade.QUALITY_COLUMN] == kind).all()
        assert (rows.loc[~train, degrade.QUALITY_COLUMN] == "clean").all()
        assert (rows.loc[train, degrade.PARAMS_COLUMN] != "").all() == (kind != "clean")


def test_degraded_scans_have_lower_contrast_and_less_high_frequency_energy(cut):
    for original, held in pairs(cut, "degraded"):
        assert held.std() < 0.7 * original.std()
        assert high_frequency_energy(held) < 0.5 * high_frequency_energy(original)


def test_shifted_scans_have_a_black_frame_and_another_field_of_view(cut):
    b = max(1, round(degrade.FRAME * 32))
    inner = (slice(b, 32 - b), slice(b, 32 - b))
    for original, held in pairs(cut, "shifted"):
        frame = np.ones_like(held, dtype=bool)
        frame[inner] = False
        assert (held[frame] == 0).all() and held[inner].mean() > 20
        # the central 1/ZOOM of the original, enlarged, is what the other site sees (up to its display curve)
        zoomed = degrade.shift(original.astype(np.uint8))  # the same rewrite: held is exactly this
        assert np.array_equal(zoomed, held)
        as_is = stats.spearmanr(held[inner].ravel(), original[inner].ravel())[0]
        enlarged = np.asarray(ndimage.zoom(original, degrade.ZOOM, order=1))
        top = (enlarged.shape[0] - 32) // 2
        crop = enlarged[top : top + 32, top : top + 32]
        assert stats.spearmanr(held[inner].ravel(), crop[inner].ravel())[0] > max(0.8, as_is + 0.1)


def test_duplicates_hold_a_quarter_of_distinct_scans_each_four_times(cut):
    _, _, partition, index = cut
    rows = partition.query("institution == 'duplicates' and split == 'train'")
    parts = rows["scan_id"].str.split(degrade.COPY_SEPARATOR, regex=False)
    source, copy = parts.str[0], parts.str[1]
    assert source.nunique() == math.ceil(TRAIN / 4) and rows["scan_id"].is_unique  # the documented contract
    assert sorted(copy.astype(int).value_counts().index) == [0, 1, 2, 3]
    labels = index.set_index("scan_id").loc[source, ["patient_id", "atelectasis", "edema"]].to_numpy()
    assert (rows[["patient_id", "orig_atelectasis", "orig_edema"]].to_numpy() == labels).all()
    for original, held in pairs(cut, "duplicates"):
        assert np.corrcoef(original.ravel(), held.ravel())[0, 1] > 0.7  # a near copy
        assert not np.array_equal(original, held)  # not an exact one


def test_ood_scans_are_less_like_their_original_than_any_other_chest_scan(cut):
    found = pairs(cut, "ood")
    others = pairs(cut, "clean")
    for (original, held), (_, other) in zip(found, others):
        r_ood = abs(np.corrcoef(original.ravel(), held.ravel())[0, 1])
        assert r_ood < np.corrcoef(original.ravel(), other.ravel())[0, 1]
    assert np.median([abs(np.corrcoef(o.ravel(), h.ravel())[0, 1]) for o, h in found]) < 0.3


def test_clean_training_and_all_validation_and_test_rows_are_untouched(cut):
    cfg, _, partition, index = cut
    plain = make_partition(index, cfg.setting("quality"), 0)  # the cut without quality kinds, row for row
    same = partition.drop(columns=[degrade.QUALITY_COLUMN, degrade.PARAMS_COLUMN])
    untouched = ((same["split"] != "train") | (same["institution"] == "clean")).to_numpy()
    pd.testing.assert_frame_equal(same.loc[untouched], plain.loc[untouched])
    rewritten = same.loc[~untouched & (same["institution"] != "duplicates").to_numpy()]
    pd.testing.assert_frame_equal(rewritten.drop(columns="path"), plain.loc[rewritten.index].drop(columns="path"))
    assert same.loc[~untouched, "path"].str.contains("/scans/").all()


def test_two_cuts_are_identical(cut, tmp_path):
    cfg, root, partition, _ = cut
    other = tmp_path / "results"
    run_index_stage(cfg, other)
    run_resize_stage(cfg, other)
    again = load_partition(cfg, 0, "quality", other)
    pd.testing.assert_frame_equal(partition.drop(columns="path"), again.drop(columns="path"))
    for a, b in zip(partition["path"], again["path"]):
        assert os.path.relpath(a, root) == os.path.relpath(b, other)
        assert open(a, "rb").read() == open(b, "rb").read()
    records = [
        store.read_json(store.record_path(layout.setting_dir(cfg, 0, "quality", r), "partition")) for r in (root, other)
    ]
    assert records[0]["params_hash"] == records[1]["params_hash"]
    assert frame_digest(partition) == frame_digest(again)


def test_rewritten_scans_are_vouched_for_by_the_stage_record(cut):
    cfg, root, partition, _ = cut
    sdir = layout.setting_dir(cfg, 0, "quality", root)
    outputs = store.record_outputs(store.read_json(store.record_path(sdir, "partition")))
    rewritten = partition.loc[partition["path"].str.contains("/scans/"), "path"]
    assert len(rewritten) == 4 * TRAIN and {str((sdir / o).resolve()) for o in outputs} >= set(rewritten)
    victim = rewritten.iloc[0]
    good = open(victim, "rb").read()
    with open(victim, "wb") as fh:
        fh.write(b"not a png")
    again = load_partition(cfg, 0, "quality", root)  # stale: the stage runs again and rewrites the scan
    assert open(victim, "rb").read() == good and again.equals(partition)


def test_the_digest_follows_the_kinds_and_the_parameters(cut, monkeypatch, tmp_path):
    cfg, _, partition, index = cut
    setting = cfg.setting("quality")

    def digest(s) -> str:
        return frame_digest(degrade.apply_qualities(make_partition(index, s, 0), s, 0, tmp_path)[0])

    assert digest(setting) == frame_digest(partition)
    inst = [dataclasses.replace(i, quality="ood") if i.name == "degraded" else i for i in setting.institutions]
    other = dataclasses.replace(setting, institutions=tuple(inst))
    assert store.param_hash(other) != store.param_hash(setting) and digest(other) != digest(setting)
    monkeypatch.setitem(degrade.PARAMETERS, "blur_sigma", 0.05)
    assert digest(setting) != frame_digest(partition)


def test_a_preset_without_kinds_cuts_exactly_as_before(tmp_path, tiny_cfg):
    """The hash the partition stage had before quality kinds existed (the setting without the field), the
    partition the cut without quality handling gives, and the config's plain form without the key."""
    root = tmp_path / "results"
    run_index_stage(tiny_cfg, root)
    run_resize_stage(tiny_cfg, root)
    record = store.read_json(store.record_path(layout.data_dir(tiny_cfg, root), "resize"))
    index = store.read_table(layout.resized_index_path(tiny_cfg, root))
    for setting in tiny_cfg.settings:
        partition = load_partition(tiny_cfg, 0, setting.name, root)
        pd.testing.assert_frame_equal(partition, make_partition(index, setting, 0))
        old = dataclasses.asdict(setting)
        # none of these fields existed (and a setting's replicates are not part of its partition)
        del old["replicates"], old["sex_balance"]
        for inst in old["institutions"]:
            del inst["quality"]
        params = {"setting": old, "seed": 0, "index": record["params_hash"]}
        sdir = layout.setting_dir(tiny_cfg, 0, setting.name, root)
        assert store.read_json(store.record_path(sdir, "partition"))["params_hash"] == store.param_hash(params)
        assert not (sdir / "scans").exists()
    assert "quality" not in repr(tiny_cfg.to_dict())


def test_an_unknown_kind_is_an_error_naming_setting_and_institution(tmp_path, tiny_cfg):
    over = quality_overrides()
    over["settings"][-1]["institutions"][2]["quality"] = "blurry"
    with pytest.raises(
        ConfigError, match=r"settings\[2\] \(quality\): institutions\[2\] \(shifted\): quality: 'blurry'"
    ):
        load_config("demo", over)
    setting = tiny_cfg.setting("noniid")
    bad = dataclasses.replace(setting, institutions=(InstitutionConfig("x", ("nih",), 1, 1, quality="blurry"),))
    with pytest.raises(ValueError, match=r"setting 'noniid', institution 'x': unknown quality 'blurry'"):
        degrade.apply_qualities(pd.DataFrame(columns=["institution", "split"]), bad, 0, tmp_path)


def test_the_montage_shows_each_institution_as_it_holds_a_scan_and_nothing_without_kinds(cut, tiny_cfg):
    import matplotlib.pyplot as plt

    cfg, _, _, index = cut
    open_figures = plt.get_fignums()
    assert quality_montage(tiny_cfg, index) is None and plt.get_fignums() == open_figures
    fig = quality_montage(cfg, index)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["clean\nclean, flip 0.25"] + [f"{kind}\n{kind}" for kind in KINDS[1:]]
    shown = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len({np.asarray(a).tobytes() for a in shown}) == len(KINDS)  # each kind draws the scan differently
    plt.close(fig)
