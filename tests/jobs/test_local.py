"""Local backend end to end on the fixture notebooks (real papermill runs, one kernel per task):
full run with provenance, resume, re-runs after a deleted output or an edited config, a failing
task blocking its dependents (with --jobs 2), a killed task restarting. Sharded == unsharded is
tested on the real valuation notebook in test_demo.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ddval.config import load_config
from ddval.jobs.manifest import build_manifest, read_manifest
from ddval.jobs.plan import plan
from ddval.jobs.task import partial_path, record_file, run_task, task_status

REPO = Path(__file__).parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = FIXTURES / "notebooks"
TINY = FIXTURES / "tiny.yaml"
N_TASKS = 14  # index, resize, 3 + 1 train, 2 x 2 shards, 2 valuation, economy, figures


def _sleeping_training_env() -> dict[str, str]:
    """Environment of a `ddval` subprocess whose fixture training notebook sleeps 120 s (time for a test to
    act while it runs): this checkout's lib first, no progress bars."""
    return dict(
        os.environ,
        DDVAL_FIXTURE_SLEEP="120",
        DDVAL_PROGRESS="off",
        PYTHONPATH=os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]),
    )


def reproduce(run_ddval, root: Path, preset: Path = TINY, *extra: str, env: dict | None = None):
    return run_ddval("reproduce", "--preset", preset, "--notebooks", NOTEBOOKS, "--results", root, *extra, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, run_ddval):
    """One full local run of the fixture preset (shared by the tests of this module that only read it)."""
    root = tmp_path_factory.mktemp("tiny")
    proc = reproduce(run_ddval, root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, proc


def test_full_run_executes_every_task_with_provenance(tiny_run):
    root, proc = tiny_run
    assert f"{N_TASKS} ran, 0 already complete, 0 failed" in proc.stdout
    tasks = read_manifest(root / "tiny" / "manifest.jsonl")
    assert len(tasks) == N_TASKS
    for t in tasks:
        nb = nbformat.read(t.output, as_version=4)
        meta = nb.metadata["ddval"]
        assert meta["task_id"] == t.task_id and meta["task_hash"] == t.task_hash and meta["row"] == t.row
        assert meta["git_commit"] not in {"", "unknown"}
        assert meta["package_versions"]["papermill"] != "missing"
        assert nb.metadata["papermill"]["parameters"] == t.parameters
        assert nb.metadata["kernelspec"]["name"] == "ddval"
        assert task_status(t) == "complete"
        assert not partial_path(t).exists()
    # the stages really ran: shard files reduced, figures table over the settings
    figures = pd.read_csv(root / "tiny" / "figures" / "summary_similarity.csv")
    assert set(figures["method"]) == set(load_config(TINY).valuation.methods) - {"exact"}
    # the closing summary: where the figures are, and the headline table from similarity.csv
    assert f"figures:   {root / 'tiny' / 'figures'}" in proc.stdout
    headline = proc.stdout.split("(ddval.scorecard):")[1].splitlines()
    assert headline[1].split()[:2] == ["cosine", "[%]"] and headline[2].split() == ["setting", "method"]
    rows = [line.split() for line in headline[3:]]
    assert rows[0][:2] == ["noniid", "ddval"] and ["iid", "ddval"] in [r[:2] for r in rows]


def test_resume_then_rerun_after_a_deleted_output(tiny_run, run_ddval, tmp_path):
    root = tmp_path / "resume"
    shutil.copytree(tiny_run[0], root)  # same absolute layout is not needed: the manifest is rebuilt
    proc = reproduce(run_ddval, root)
    assert proc.returncode == 0, proc.stderr
    assert f"0 ran, {N_TASKS} already complete" in proc.stdout

    tasks = build_manifest(load_config(TINY), root, preset=TINY, notebooks_dir=NOTEBOOKS)
    before = {t.task_id: os.stat(t.output).st_mtime_ns for t in tasks}
    (root / "tiny" / "seed-0" / "noniid" / "train" / "b" / "model.json").unlink()
    the_plan = plan(tasks)
    model = root / "tiny" / "seed-0" / "noniid" / "train" / "b" / "model.json"
    assert the_plan.reasons["train/seed-0/noniid/b"] == f"incomplete: {model} is missing"
    assert set(the_plan.reasons) == {
        "train/seed-0/noniid/b",
        "valuation-shard/seed-0/noniid/0of2",
        "valuation-shard/seed-0/noniid/1of2",
        "valuation/seed-0/noniid",
        "economy/seed-0/noniid",
        "figures",
    }
    proc = reproduce(run_ddval, root)
    assert proc.returncode == 0, proc.stderr
    assert f"6 ran, {N_TASKS - 6} already complete" in proc.stdout
    assert (root / "tiny" / "seed-0" / "noniid" / "train" / "b" / "model.json").exists()
    after = {t.task_id: os.stat(t.output).st_mtime_ns for t in tasks}
    assert {i for i in before if before[i] != after[i]} == set(the_plan.reasons)


def test_edited_config_reruns_only_the_affected_stages(tiny_run, tmp_path):
    edited = tmp_path / "tiny.yaml"  # same preset name, one economy value changed
    edited.write_text(TINY.read_text() + "economy:\n  n_individuals: 5\n")
    tasks = build_manifest(load_config(edited), tiny_run[0], preset=edited, notebooks_dir=NOTEBOOKS)
    the_plan = plan(tasks)
    assert {k: v.split(":")[0] for k, v in the_plan.reasons.items()} == {
        "economy/seed-0/noniid": "stale",
        "figures": "stale",
    }
    assert the_plan.reasons["figures"].endswith("was written with other parameters")
    edited.write_text(TINY.read_text().replace("shards: 2", "shards: 2\n  k: 5"))  # valuation: k
    tasks = build_manifest(load_config(edited), tiny_run[0], preset=edited, notebooks_dir=NOTEBOOKS)
    assert {t.stage for t in plan(tasks).pending} == {"valuation-shard", "valuation", "economy", "figures"}


def test_failing_task_blocks_its_dependents_in_parallel_runs(run_ddval, tmp_path):
    broken = tmp_path / "tiny.yaml"  # institution "broken" makes the fixture training notebook raise
    broken.write_text(TINY.read_text().replace("{name: b, datasets: [chexpert]", "{name: broken, datasets: [chexpert]"))
    root = tmp_path / "results"
    proc = reproduce(run_ddval, root, broken, "--jobs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "4 failed" not in proc.stdout and "2 failed, 5 not started (a dependency failed)" in proc.stdout
    tasks = {t.task_id: t for t in read_manifest(root / "tiny" / "manifest.jsonl")}
    failed = ["train/seed-0/noniid/broken", "train/seed-0/noniid/a+broken"]
    for task_id in failed:
        t = tasks[task_id]
        assert f"FAILED {task_id}" in proc.stdout
        assert not Path(t.output).exists() and not record_file(t).exists()
        assert "deliberate failure" in partial_path(t).read_text()  # the traceback is kept to look at
    blocked = [
        "valuation-shard/seed-0/noniid/0of2",
        "valuation-shard/seed-0/noniid/1of2",
        "valuation/seed-0/noniid",
        "economy/seed-0/noniid",
        "figures",
    ]
    assert all(not Path(tasks[i].output).exists() and not partial_path(tasks[i]).exists() for i in blocked)
    # independent work still ran: the other setting to the end, the healthy coalition
    done = ["train/seed-0/noniid/a", "train/seed-0/iid/c1+c2", "valuation/seed-0/iid"]
    assert all(task_status(tasks[i]) == "complete" for i in done)
    assert (root / "tiny" / "logs" / "local" / "train__seed-0__noniid__broken.log").exists()


def test_killed_task_restarts_cleanly(tmp_path):
    cfg = load_config(TINY)
    tasks = build_manifest(cfg, tmp_path, preset=TINY, notebooks_dir=NOTEBOOKS)
    from ddval.jobs.manifest import write_manifest

    manifest = write_manifest(tasks, tmp_path / "manifest.jsonl")
    for t in tasks[:2]:  # index, resize
        assert run_task(t, progress_bar=False).status == "done"
    train = tasks[2]
    env = _sleeping_training_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddval.cli", "run-task", str(manifest), str(train.row)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _sleeping(partial_path(train)):  # papermill saved the notebook at the start of the sleep cell
            assert proc.poll() is None and time.monotonic() < deadline, "task did not reach its slow cell"
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # like SLURM at the time limit: no chance to clean up
        proc.wait()
    assert task_status(train) == "missing" and not Path(train.output).exists()
    assert partial_path(train).exists()
    assert run_task(train, progress_bar=False).status == "done"
    assert task_status(train) == "complete" and not partial_path(train).exists()
    assert json.loads(Path(train.output).read_text())["metadata"]["ddval"]["task_id"] == train.task_id


def _sleeping(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        nb = json.loads(path.read_text())
    except ValueError:  # being written (papermill writes in place)
        return False
    return any(
        "DDVAL_FIXTURE_SLEEP" in "".join(c["source"])
        and c.get("metadata", {}).get("papermill", {}).get("status") == "running"
        for c in nb["cells"]
    )


def test_missing_kernel_fails_the_task_with_a_hint(tmp_path):
    import dataclasses

    task = build_manifest(load_config(TINY), tmp_path, preset=TINY, notebooks_dir=NOTEBOOKS)[0]
    outcome = run_task(dataclasses.replace(task, kernel="no-such-kernel"), progress_bar=False)
    assert outcome.status == "failed"
    assert "No such kernel named no-such-kernel" in outcome.message and "make env" in outcome.message
    assert task_status(task) == "missing" and not Path(task.output).exists()


def test_a_second_run_on_the_same_results_is_refused_naming_the_first(tmp_path, run_ddval):
    """Issue 17, case 5: two `ddval reproduce` on one results folder both wrote into it."""
    root = tmp_path / "results"
    env = _sleeping_training_env()
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ddval.cli",
            "reproduce",
            "--preset",
            str(TINY),
            "--notebooks",
            str(NOTEBOOKS),
            "--results",
            str(root),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,
    )
    try:
        train = next(
            t
            for t in build_manifest(load_config(TINY), root, preset=TINY, notebooks_dir=NOTEBOOKS)
            if t.stage == "train"
        )
        deadline = time.monotonic() + 120
        while not _sleeping(partial_path(train)):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not reach training"
            time.sleep(0.3)
        second = reproduce(run_ddval, root)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"{root / 'tiny'} is in use by pid {first.pid} on " in second.stderr
        assert "ddval reproduce --preset" in second.stderr and "Traceback" not in second.stderr
        assert "ran" not in second.stdout  # it started nothing
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    after = reproduce(run_ddval, root)  # the killed run's lock is stale: detected, taken over, resumed
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"the previous writer of {root / 'tiny'}, pid {first.pid}" in after.stderr


def test_status_and_reruns_verify_what_records_vouch_for(tiny_run, run_ddval, tmp_path):
    """Issue 17, case 6: a truncated output and an edited inner record went unnoticed (`status` said
    complete, a re-run exited 0 with the old table), and --force re-ran tasks whose stages then skipped."""
    root = tmp_path / "verify"
    shutil.copytree(tiny_run[0], root)
    model = root / "tiny" / "seed-0" / "noniid" / "train" / "a" / "model.json"
    model.write_bytes(model.read_bytes()[:10])  # truncated
    inner = root / "tiny" / "seed-0" / "iid" / "valuation" / ".valuation.done.json"
    inner.write_text(inner.read_text().replace('"stage": "valuation"', '"stage": "Valuation"'))  # edited, same size
    args = ("--preset", TINY, "--notebooks", NOTEBOOKS, "--results", root)
    status = run_ddval("status", *args, "--show", "50")
    assert status.returncode == 0, status.stderr
    assert f"pending: train/seed-0/noniid/a (stale: {model} has 10 bytes, its record says" in status.stdout
    assert f"pending: valuation/seed-0/iid (stale: {inner} changed since its record was written" in status.stdout
    proc = reproduce(run_ddval, root)
    assert proc.returncode == 0 and "FAILED" not in proc.stdout, proc.stdout + proc.stderr
    assert json.loads(model.read_text())["coalition"] == "a"
    assert "0 of 14 tasks to run" in run_ddval("status", *args).stdout

    index_record = root / "tiny" / "data" / ".index.done.json"
    before = index_record.stat().st_mtime_ns
    forced = reproduce(run_ddval, root, TINY, "--force")
    assert forced.returncode == 0 and f"{N_TASKS} ran" in forced.stdout, forced.stdout + forced.stderr
    assert index_record.stat().st_mtime_ns != before  # the stage inside the forced task ran again


def test_a_failed_task_says_what_the_error_says_not_only_its_last_line(tmp_path):
    """The runner printed the last line of a failing cell's error: for the real-data check that was
    "See the README section 'Your own data', ..." without the lines naming the missing folder."""
    import dataclasses

    from nbformat.v4 import new_code_cell, new_notebook

    notebook = tmp_path / "fails.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell("preset = 'demo'\nresults_root = None"),
                new_code_cell(
                    "raise FileNotFoundError(\"preset 'x' uses the real datasets ['nih'], but:\\n"
                    "  nih: /data/nih is not a folder\\nSee the README section 'Your own data'.\")"
                ),
            ],
            metadata={"kernelspec": {"name": "ddval", "display_name": "Python (ddval)", "language": "python"}},
        ),
        notebook,
    )
    task = build_manifest(load_config(TINY), tmp_path, preset=TINY, notebooks_dir=NOTEBOOKS)[0]
    outcome = run_task(dataclasses.replace(task, notebook=str(notebook)), progress_bar=False)
    assert outcome.status == "failed"
    assert outcome.message.startswith("PapermillExecutionError: FileNotFoundError: preset 'x' uses the real datasets")
    assert "nih: /data/nih is not a folder See the README section 'Your own data'." in outcome.message
