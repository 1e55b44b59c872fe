"""Run-directory store: atomic writes, parameter hashes and resumable stage records."""

import os

import pandas as pd
import pytest

from ddval import layout, store


def test_param_hash_is_stable_and_order_free():
    assert store.param_hash({"a": 1, "b": [1, 2]}) == store.param_hash({"b": [1, 2], "a": 1})
    assert store.param_hash({"a": 1}) != store.param_hash({"a": 2})
    assert len(store.param_hash({})) == 16


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temporary file left behind


def test_atomic_path_keeps_the_message_of_an_error_without_errno(tmp_path):
    """An OSError that carries only a message (PIL's "encoder error -2 when writing image file") came
    out as "[Errno None] None: <path>": the message was lost. One with an errno but no file name (a full
    disk) is raised again naming the file."""
    with pytest.raises(OSError, match="encoder error -2 when writing image file"):
        with store.atomic_path(tmp_path / "x.png"):
            raise OSError("encoder error -2 when writing image file")
    with pytest.raises(OSError) as err:
        with store.atomic_path(tmp_path / "y.csv"):
            raise OSError(28, "No space left on device")
    assert (err.value.errno, err.value.filename) == (28, str(tmp_path / "y.csv"))


def test_tables_round_trip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for name in ("t.csv", "t.parquet"):
        store.write_table(tmp_path / name, frame)
        pd.testing.assert_frame_equal(store.read_table(tmp_path / name), frame)
    with pytest.raises(ValueError):
        store.write_table(tmp_path / "t.txt", frame)


def test_run_stage_skips_when_complete_and_reruns_when_stale(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        (tmp_path / "out.txt").write_text(str(len(calls)))
        return ["out.txt"]

    first = store.run_stage(tmp_path, "s", {"p": 1}, compute)
    second = store.run_stage(tmp_path, "s", {"p": 1}, compute)
    assert (first.skipped, second.skipped) == (False, True)
    assert len(calls) == 1
    assert store.stage_status(tmp_path, "s", {"p": 2}) == "stale"
    third = store.run_stage(tmp_path, "s", {"p": 2}, compute)
    assert not third.skipped and len(calls) == 2


def test_missing_output_makes_stage_incomplete(tmp_path):
    def compute():
        (tmp_path / "out.txt").write_text("x")
        return ["out.txt"]

    store.run_stage(tmp_path, "s", {}, compute)
    (tmp_path / "out.txt").unlink()
    assert store.stage_status(tmp_path, "s", {}) == "incomplete"
    assert not store.run_stage(tmp_path, "s", {}, compute).skipped


def test_crash_inside_compute_leaves_no_record(tmp_path):
    def compute():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run_stage(tmp_path, "s", {}, compute)
    assert store.stage_status(tmp_path, "s", {}) == "missing"


def test_declared_output_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="never.txt"):
        store.run_stage(tmp_path, "s", {}, lambda: ["never.txt"])


def test_layout_honours_environment(monkeypatch, tmp_path):
    from ddval.config import load_config

    monkeypatch.setenv("DDVAL_RESULTS", str(tmp_path))
    cfg = load_config("demo")
    assert layout.setting_dir(cfg, 1, "noniid") == tmp_path / "demo" / "seed-1" / "noniid"
    with pytest.raises(KeyError, match="known"):
        layout.setting_dir(cfg, 1, "nope")


def test_require_record_names_the_missing_stage_and_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.index\.done\.json not found: run stage 01 first"):
        store.require_record(tmp_path, "index", "run stage 01 first")
    store.mark_complete(tmp_path, "index", {"x": 1}, [])
    assert store.require_record(tmp_path, "index", "run stage 01 first")["params_hash"] == store.param_hash({"x": 1})


def test_report_is_written_only_with_rows_and_a_stale_one_is_removed(tmp_path):
    table, report = pd.DataFrame({"a": [1]}), pd.DataFrame({"path": ["bad.png"]})
    paths = store.write_table_and_report(tmp_path / "t.csv", table, tmp_path / "r.csv", report)
    assert [p.name for p in paths] == ["t.csv", "r.csv"] and (tmp_path / "r.csv").exists()
    paths = store.write_table_and_report(tmp_path / "t.csv", table, tmp_path / "r.csv", report.iloc[:0])
    assert [p.name for p in paths] == ["t.csv"] and not (tmp_path / "r.csv").exists()


# ---- verified completion records (issue 17, case 6) -------------------------------------------


def _stage(tmp_path, payload: bytes = b"x" * 1000, name: str = "s", params=None):
    def compute():
        (tmp_path / "out.bin").write_bytes(payload)
        return ["out.bin"]

    return store.run_stage(tmp_path, name, params or {}, compute)


def test_record_vouches_for_size_and_sha256(tmp_path):
    _stage(tmp_path)
    record = store.read_json(tmp_path / ".s.done.json")
    assert record["outputs"] == {"out.bin": {"size": 1000, "sha256": store.file_sha256(tmp_path / "out.bin")}}


def test_truncated_output_makes_the_stage_stale_naming_the_file(tmp_path):
    _stage(tmp_path)
    (tmp_path / "out.bin").write_bytes(b"x" * 500)  # e.g. a checkpoint cut off by a full disk
    status, why = store.stage_check(tmp_path, "s", {})
    assert status == "stale" and why == f"{tmp_path / 'out.bin'} has 500 bytes, its record says 1000"
    assert not _stage(tmp_path).skipped  # the skip checks it too: recomputed
    assert (tmp_path / "out.bin").stat().st_size == 1000


def test_same_size_change_is_caught_by_the_hash(tmp_path):
    _stage(tmp_path)
    (tmp_path / "out.bin").write_bytes(b"y" * 1000)
    assert store.stage_check(tmp_path, "s", {}) == (
        "stale",
        f"{tmp_path / 'out.bin'} changed since its record was written (SHA-256 differs)",
    )


def test_fast_mode_hashes_only_files_whose_size_or_time_changed(tmp_path, monkeypatch):
    _stage(tmp_path)
    out = tmp_path / "out.bin"
    monkeypatch.setenv("DDVAL_VERIFY", "fast")
    assert store.is_complete(tmp_path, "s", {})
    stamp = out.stat().st_mtime_ns
    out.write_bytes(b"y" * 1000)  # same size, new time: hashed, caught
    assert store.stage_status(tmp_path, "s", {}) == "stale"
    os.utime(out, ns=(stamp, stamp))  # the one thing fast mode misses: an edit that restores the time
    assert store.stage_status(tmp_path, "s", {}) == "complete"
    monkeypatch.setenv("DDVAL_VERIFY", "sha256")
    assert store.stage_status(tmp_path, "s", {}) == "stale"
    monkeypatch.setenv("DDVAL_VERIFY", "sha-1")
    with pytest.raises(ValueError, match=r"\$DDVAL_VERIFY='sha-1': expected one of \['sha256', 'fast'\]"):
        store.stage_status(tmp_path, "s", {})


def test_record_without_checksums_is_stale(tmp_path):
    (tmp_path / "out.bin").write_bytes(b"x")
    old = {"stage": "s", "params_hash": store.param_hash({}), "outputs": ["out.bin"]}  # an older ddval's record
    store.write_json(tmp_path / ".s.done.json", old)
    assert store.stage_check(tmp_path, "s", {}) == (
        "stale",
        f"{tmp_path / '.s.done.json'} has no checksums (written by an older ddval)",
    )


def test_a_failed_rerun_removes_what_the_outdated_record_vouched_for(tmp_path):
    def old():
        (tmp_path / "old.csv").write_text("a\n1\n")
        return ["old.csv"]

    store.run_stage(tmp_path, "s", {"p": 1}, old)

    def failing():
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        store.run_stage(tmp_path, "s", {"p": 2}, failing)
    # nothing of the old parameters is left for a reader to take for this run's result
    assert not (tmp_path / "old.csv").exists() and not (tmp_path / ".s.done.json").exists()


def test_resumable_outputs_survive_a_failure_unless_damaged(tmp_path):
    """Outputs a stage resumes from (resized scans) are kept by a failed re-run while intact, and a
    damaged one is removed before the stage runs again, so nothing resumes from it."""
    pieces = [tmp_path / "pieces" / f"{i}.bin" for i in range(3)]

    def first():
        for i, piece in enumerate(pieces):
            store.write_bytes(piece, bytes([i]) * 10)
        return [store.write_text(tmp_path / "table.csv", "a\n1\n"), *pieces]

    resumable = lambda rel: rel.startswith("pieces/")  # noqa: E731
    store.run_stage(tmp_path, "s", {"p": 1}, first, resumable=resumable)
    pieces[0].write_bytes(b"damaged")
    seen = {}

    def second():
        seen["left"] = sorted(p.name for p in pieces if p.exists())
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        store.run_stage(tmp_path, "s", {"p": 2}, second, resumable=resumable)
    assert seen["left"] == ["1.bin", "2.bin"]  # the damaged piece was gone before the stage ran
    assert not (tmp_path / "table.csv").exists()  # the old table is not left for a reader
    assert [p.read_bytes() for p in pieces[1:]] == [b"\x01" * 10, b"\x02" * 10]  # intact pieces stay


def test_verify_outputs_and_verify_file_before_publishing(tmp_path):
    stage_dir = tmp_path / "coalition"
    _stage(stage_dir)
    out = stage_dir / "out.bin"
    store.verify_outputs(stage_dir, "s")
    assert store.verify_file(out) == stage_dir / ".s.done.json"
    out.write_bytes(b"x" * 10)
    with pytest.raises(store.StaleOutputError, match=rf"{out} has 10 bytes, its record says 1000"):
        store.verify_file(out)
    with pytest.raises(store.StaleOutputError, match=r"no completion record vouches for it"):
        store.verify_file(tmp_path / "stray.bin")
    with pytest.raises(store.StaleOutputError, match=r"not an output of"):
        store.verify_outputs(stage_dir, "s", ["other.bin"])


def test_force_env_redoes_each_stage_inside_its_folder_once(tmp_path, monkeypatch):
    inside, outside = tmp_path / "task" / "a", tmp_path / "other"
    for d in (inside, outside):
        _stage(d)
    monkeypatch.setenv(store.FORCE_ENV, str(tmp_path / "task"))
    monkeypatch.setattr(store, "_forced_here", set())
    assert not _stage(inside).skipped  # forced
    assert _stage(inside).skipped  # once per process: a second call in the same task skips
    assert _stage(outside).skipped  # outside the forced task's folder
