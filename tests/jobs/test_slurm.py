"""The SLURM backend on the real single-node cluster (`tools/slurm-up.sh`): `ddval submit` calls
sbatch for real, one array per stage chained with afterok; the tests wait (bounded) and check job
states, exit codes, executed notebooks and logs. No mock of sbatch anywhere."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from ddval import store
from ddval.jobs.manifest import read_manifest
from ddval.jobs.slurm import job_states, wait_for
from ddval.jobs.task import partial_path, task_status

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = FIXTURES / "notebooks"
TINY = FIXTURES / "tiny.yaml"
WAIT = "900"  # seconds; the chain of 14 fixture tasks takes about 2 min on a busy 2-core machine


def submit(run_ddval, root: Path, preset: Path, *extra: str):
    return run_ddval("submit", "--preset", preset, "--notebooks", NOTEBOOKS, "--results", root,
                     "--backend", "slurm", *extra, timeout=float(WAIT) + 60)


def submission(root: Path) -> tuple[Path, dict]:
    (path,) = sorted((root / "tiny" / "slurm").glob("*/jobs.json"))
    return path.parent, {a["stage"]: a for a in store.read_json(path)["arrays"]}


def states_by_stage(jobs: dict) -> dict[str, list[dict]]:
    return {stage: job_states([j["job_id"]]) for stage, j in jobs.items()}


def test_chain_runs_on_slurm_and_resumes(slurm_cluster, run_ddval, tmp_path):
    root = tmp_path / "results"
    proc = submit(run_ddval, root, TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "squeue -j" in proc.stdout
    assert f"ddval status --preset {TINY} --results {root} --notebooks {NOTEBOOKS}" in proc.stdout
    folder, jobs = submission(root)
    # while the chain is queued or running, neither a second submission nor a local run may start
    for command in ("submit", "reproduce"):
        clash = run_ddval(command, "--preset", TINY, "--notebooks", NOTEBOOKS, "--results", root)
        assert clash.returncode == 2 and "are still queued or running" in clash.stderr, clash.stdout + clash.stderr
    states = wait_for([j["job_id"] for j in jobs.values()], timeout=float(WAIT))
    assert Counter(s["JobState"] for s in states) == {"COMPLETED": 14}
    assert list(jobs) == ["index", "resize", "train", "valuation-shard", "valuation", "economy", "figures"]
    assert jobs["figures"]["after"] == ["valuation", "economy"]
    states = [s for per_stage in states_by_stage(jobs).values() for s in per_stage]
    assert len(states) == 14 and {(s["JobState"], s["ExitCode"]) for s in states} == {("COMPLETED", "0:0")}
    for t in read_manifest(folder / "manifest.jsonl"):
        assert task_status(t) == "complete", t.task_id
        meta = nbformat.read(t.output, as_version=4).metadata["ddval"]
        assert meta["slurm_job"] and meta["manifest"] == str(folder / "manifest.jsonl")
    logs = sorted((folder / "logs").glob("*.out"))
    assert len(logs) == 14 and all("ddval task: exit status 0" in p.read_text() for p in logs)

    again = submit(run_ddval, root, TINY)  # resume: nothing left to do, nothing submitted
    assert again.returncode == 0 and "0 of 14 tasks to run" in again.stdout and "nothing to submit" in again.stdout
    status = run_ddval("status", "--preset", TINY, "--notebooks", NOTEBOOKS, "--results", root)
    assert "0 of 14 tasks to run" in status.stdout and "7 COMPLETED" not in status.stdout
    assert "train               4 complete     0 pending" in status.stdout
    local = run_ddval("reproduce", "--preset", TINY, "--notebooks", NOTEBOOKS, "--results", root)
    assert "0 ran, 14 already complete" in local.stdout  # the same records serve both backends


def test_failing_task_blocks_dependent_arrays(slurm_cluster, run_ddval, tmp_path):
    broken = tmp_path / "tiny.yaml"  # institution "broken" makes the fixture training notebook raise
    broken.write_text(TINY.read_text().replace("{name: b, datasets: [chexpert]", "{name: broken, datasets: [chexpert]"))
    root = tmp_path / "results"
    proc = submit(run_ddval, root, broken, "--wait", WAIT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    folder, jobs = submission(root)
    by_stage = states_by_stage(jobs)
    tasks = read_manifest(folder / "manifest.jsonl")
    row = {t.task_id: t.row for t in tasks}
    train = {int(s["ArrayTaskId"]): (s["JobState"], s["ExitCode"]) for s in by_stage["train"]}
    assert train == {row["train/seed-0/noniid/a"]: ("COMPLETED", "0:0"),
                     row["train/seed-0/noniid/broken"]: ("FAILED", "1:0"),
                     row["train/seed-0/noniid/a+broken"]: ("FAILED", "1:0"),
                     row["train/seed-0/iid/c1+c2"]: ("COMPLETED", "0:0")}
    for stage in ("valuation-shard", "valuation", "economy", "figures"):  # never started
        assert {(s["JobState"], s["Reason"]) for s in by_stage[stage]} == {("CANCELLED", "DependencyNeverSatisfied")}
        assert Counter(t.stage for t in tasks)[stage] and not any(
            Path(t.output).exists() or partial_path(t).exists() for t in tasks if t.stage == stage)
    failed = next(t for t in tasks if t.task_id == "train/seed-0/noniid/broken")
    assert "deliberate failure" in partial_path(failed).read_text()
    log = (folder / "logs" / f"train-{jobs['train']['job_id']}_{failed.row}.out").read_text()
    assert "PapermillExecutionError" in log and "ddval task: exit status 1" in log


def test_slurm_up_is_idempotent(slurm_cluster):
    """A second `tools/slurm-up.sh` finds the node up and restarts nothing."""
    import subprocess

    pids = {name: Path(f"/run/{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")}
    proc = subprocess.run(["bash", str(Path(__file__).parents[2] / "tools" / "slurm-up.sh")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "starting" not in proc.stdout and "wrote" not in proc.stdout
    assert re.search(r"node \S+ is (idle|mixed|allocated|completing)", proc.stdout), proc.stdout
    assert pids == {name: Path(f"/run/{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")}
