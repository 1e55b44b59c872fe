"""Run-directory store: atomic writes, parameter hashes and resumable stage records."""

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
