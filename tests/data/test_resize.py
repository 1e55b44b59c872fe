"""Resize stage: round trip, resume, corrupt files under both policies, the stage record."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fixtures import tiny_image
from PIL import Image

from ddval import layout, store
from ddval.config import LABELS
from ddval.data import run_index_stage, run_resize_stage
from ddval.data.images import CorruptImageError, read_grayscale
from ddval.data.resize import resize_index, resized_paths


def make_index(tmp_path: Path, n: int = 6) -> pd.DataFrame:
    """Images of several sizes, modes and formats in nested folders."""
    rows = []
    for i in range(n):
        folder = tmp_path / "src" / f"p{i % 3}" / f"s{i}"
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        tiny_image(path, value=20 * i, size=(30 + i, 40 - i), fmt="PNG" if i % 2 else "JPEG")
        rows.append(
            {
                "dataset": "mimic",
                "scan_id": f"mimic:{i}",
                "path": str(path),
                "patient_id": f"mimic:{i % 3}",
                "study_id": f"mimic:s{i}",
                "sex": "F",
                "age": 40.0,
                "view": "frontal",
                "view_position": "PA",
                **{lab: 0.0 for lab in LABELS},
            }
        )
    return pd.DataFrame(rows)


def test_round_trip(tmp_path):
    index = make_index(tmp_path)
    out, quarantine = resize_index(index, tmp_path / "out", 16)
    assert quarantine.empty and len(out) == len(index)
    pd.testing.assert_frame_equal(out.drop(columns="path"), index.drop(columns="path"))
    for src, dst in zip(index["path"], out["path"]):
        # mirrors the folders below the dataset's common root, PNG, square, grayscale
        assert dst == str(tmp_path / "out" / "mimic" / Path(src).relative_to(tmp_path / "src").with_suffix(".png"))
        with Image.open(dst) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "L", (16, 16))
            expected = Image.open(src).convert("L").resize((16, 16), Image.Resampling.BILINEAR)
            assert np.array_equal(np.asarray(img), np.asarray(expected))  # squashed, as Resize((s, s))
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_modes_are_converted(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((8, 8, 3), 77, np.uint8), mode="RGB").save(rgb)
    assert np.asarray(read_grayscale(rgb)).max() == 77  # equal channels stay the same grey
    # 16-bit PNGs and DICOM: tests/data/test_images.py


def test_resume_skips_done_files(tmp_path, caplog):
    index = make_index(tmp_path)
    first, _ = resize_index(index, tmp_path / "out", 12)
    victim = Path(first["path"].iloc[2])
    victim.unlink()
    stamps = {p: Path(p).stat().st_mtime_ns for p in first["path"] if Path(p).exists()}
    with caplog.at_level(logging.INFO, logger="ddval.data.resize"):
        second, _ = resize_index(index, tmp_path / "out", 12)
    assert "1 of 6 scans to do" in caplog.text
    assert victim.exists()
    assert all(Path(p).stat().st_mtime_ns == t for p, t in stamps.items())
    pd.testing.assert_frame_equal(first, second)


def test_process_pool_gives_the_same_files(tmp_path):
    index = make_index(tmp_path, n=10)
    serial, _ = resize_index(index, tmp_path / "a", 8, workers=1)
    parallel, _ = resize_index(index, tmp_path / "b", 8, workers=2)
    for a, b in zip(serial["path"], parallel["path"]):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def _corrupt(index: pd.DataFrame) -> tuple[str, str]:
    truncated = Path(index["path"].iloc[0])  # a JPEG cut in half
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage = Path(index["path"].iloc[3])
    garbage.write_bytes(b"this is not a PNG file at all")
    return str(truncated), str(garbage)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_stops_with_its_path(tmp_path, workers):
    index = make_index(tmp_path, n=8)
    truncated, garbage = _corrupt(index)
    with pytest.raises(CorruptImageError) as err:
        resize_index(index, tmp_path / "out", 8, workers=workers, on_corrupt="error")
    assert truncated in str(err.value) or garbage in str(err.value)
    assert "quarantine" in str(err.value)


def test_corrupt_images_are_quarantined_never_replaced(tmp_path):
    index = make_index(tmp_path, n=8)
    truncated, garbage = _corrupt(index)
    out, quarantine = resize_index(index, tmp_path / "out", 8, on_corrupt="quarantine")
    assert sorted(quarantine["path"]) == sorted([truncated, garbage])
    assert set(quarantine.columns) == {"dataset", "scan_id", "path", "error"}
    assert quarantine["error"].str.contains("cannot decode").all()
    assert len(out) == 6 and not set(out["scan_id"]) & set(quarantine["scan_id"])
    dst = resized_paths(index, tmp_path / "out")
    assert not Path(dst.iloc[0]).exists() and not Path(dst.iloc[3]).exists()


def test_missing_image_is_named(tmp_path):
    index = make_index(tmp_path, n=3)
    Path(index["path"].iloc[1]).unlink()
    with pytest.raises(CorruptImageError, match="img1.png: image file not found"):
        resize_index(index, tmp_path / "out", 8)


def test_stage_writes_index_resized_and_skips_when_done(tmp_path, tiny_cfg):
    root = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="stage 01"):
        run_resize_stage(tiny_cfg, root)
    index = run_index_stage(tiny_cfg, root)
    resized = run_resize_stage(tiny_cfg, root)
    data = layout.data_dir(tiny_cfg, root)
    assert store.is_complete(
        data,
        "resize",
        {"image_size": 8, "on_corrupt": "error", "index": store.read_json(data / ".index.done.json")["params_hash"]},
    )
    assert len(resized) == len(index) and (resized["scan_id"] == index["scan_id"]).all()
    assert resized["path"].str.startswith(str(data / "resized" / "8") + "/").all()
    with Image.open(resized["path"].iloc[0]) as img:
        assert img.size == (8, 8)
    stamp = (data / "index_resized.parquet").stat().st_mtime_ns
    run_resize_stage(tiny_cfg, root)  # complete: nothing is redone
    assert (data / "index_resized.parquet").stat().st_mtime_ns == stamp
    # the cohort was written once and indexing is skipped too
    cohort_stamp = (data / "raw" / ".cohort.done.json").stat().st_mtime_ns
    run_index_stage(tiny_cfg, root)
    assert (data / "raw" / ".cohort.done.json").stat().st_mtime_ns == cohort_stamp


def test_stage_quarantine_report(tmp_path, tiny_cfg):
    root = tmp_path / "results"
    index = run_index_stage(tiny_cfg, root)
    bad = Path(index["path"].iloc[0])
    bad.write_bytes(bad.read_bytes()[:50])
    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, on_corrupt="quarantine"))
    resized = run_resize_stage(cfg, root)
    report = store.read_table(layout.data_dir(cfg, root) / "resize_quarantine.csv")
    assert report["path"].tolist() == [str(bad)]
    assert len(resized) == len(index) - 1


def test_a_rerun_with_another_decoder_rewrites_every_scan(tmp_path, tiny_cfg, monkeypatch):
    """Resized files survive a killed run and options that leave pixels alone, but not a new decoder:
    a scan written by an older decoder is never passed off as this run's."""
    from ddval.data import stage

    root = tmp_path / "results"
    run_index_stage(tiny_cfg, root)
    paths = run_resize_stage(tiny_cfg, root)["path"]
    before = _mtimes(paths)
    monkeypatch.setattr(stage, "DECODER_VERSION", stage.DECODER_VERSION + 1)
    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, on_corrupt="quarantine"))
    run_resize_stage(cfg, root)  # the stage runs again (other parameters) with the new decoder
    after = _mtimes(paths)
    assert all(after[p] != before[p] for p in before)


def _mtimes(paths) -> dict[str, int]:
    return {str(p): Path(p).stat().st_mtime_ns for p in paths}


def test_a_damaged_resized_scan_makes_the_stage_stale_and_is_rewritten(tmp_path, tiny_cfg, monkeypatch):
    """A resized scan emptied or truncated after the stage went unnoticed: the record vouched for
    index_resized.parquet only, so `ddval status` said complete, and even a forced re-run kept the
    damaged file (the stage resumes from the files it finds)."""
    root = tmp_path / "results"
    run_index_stage(tiny_cfg, root)
    resized = run_resize_stage(tiny_cfg, root)
    data = layout.data_dir(tiny_cfg, root)
    victim = Path(resized["path"].iloc[0])
    good = victim.read_bytes()
    victim.write_bytes(b"")
    with pytest.raises(store.StaleOutputError, match=rf"{victim} has 0 bytes"):
        store.verify_outputs(data, "resize")
    run_resize_stage(tiny_cfg, root)
    assert victim.read_bytes() == good
    victim.write_bytes(good[: len(good) // 2])  # and when the whole stage is forced to run again
    monkeypatch.setenv(store.FORCE_ENV, str(data))
    run_resize_stage(tiny_cfg, root)
    assert victim.read_bytes() == good


def test_switching_to_quarantine_keeps_the_scans_already_resized(tmp_path, tiny_cfg):
    """The corrupt-scan error advises `data.on_corrupt: quarantine`; the re-run it asks for threw away
    every scan already resized (hours at paper scale), though the setting changes no pixel."""
    root = tmp_path / "results"
    index = run_index_stage(tiny_cfg, root)
    bad = Path(index["path"].iloc[-1])
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CorruptImageError, match="set data.on_corrupt: quarantine"):
        run_resize_stage(tiny_cfg, root)
    written = sorted(p for p in layout.resized_dir(tiny_cfg, root).rglob("*.png"))
    assert len(written) == len(index) - 1
    before = _mtimes(written)
    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, on_corrupt="quarantine"))
    assert len(run_resize_stage(cfg, root)) == len(index) - 1
    assert _mtimes(written) == before


def test_a_failed_rerun_keeps_the_resized_scans_to_resume_from(tmp_path, tiny_cfg):
    """A re-run that fails (here: a scan to redo whose source became unreadable) removes the old
    index_resized.parquet, so no reader takes it for this run's, but keeps the intact resized scans:
    the next run resumes from them instead of decoding every scan again."""
    root = tmp_path / "results"
    index = run_index_stage(tiny_cfg, root)
    resized = run_resize_stage(tiny_cfg, root)
    data = layout.data_dir(tiny_cfg, root)
    Path(resized["path"].iloc[0]).unlink()
    source = Path(index["path"].iloc[0])
    source.write_bytes(source.read_bytes()[:50])
    kept = [Path(p) for p in resized["path"].iloc[1:]]
    before = _mtimes(kept)
    with pytest.raises(CorruptImageError):
        run_resize_stage(tiny_cfg, root)
    assert not (data / "index_resized.parquet").exists()
    assert _mtimes(kept) == before
