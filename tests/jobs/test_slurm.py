"""The SLURM backend on the real single-node cluster (`tools/slurm-up.sh`) with the fixture notebooks:
`ddval submit` calls sbatch for real, one array per stage chained with afterok (per-coalition train
tasks, test-shard arrays); a failing task must cancel the arrays after it. The success path on the
real notebooks, resume and the no-second-run guard are in test_demo.py. No mock of sbatch anywhere."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from ddval import store
from ddval.jobs.manifest import read_manifest
from ddval.jobs.slurm import job_states
from ddval.jobs.task import partial_path

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = FIXTURES / "notebooks"
TINY = FIXTURES / "tiny.yaml"
WAIT = "900"  # seconds; the chain of 14 fixture tasks takes about 2 min on a busy 2-core machine


def submit(run_ddval, root: Path, preset: Path, *extra: str):
    return run_ddval(
        "submit",
        "--preset",
        preset,
        "--notebooks",
        NOTEBOOKS,
        "--results",
        root,
        "--backend",
        "slurm",
        *extra,
        timeout=float(WAIT) + 60,
    )


def submission(root: Path) -> tuple[Path, dict]:
    (path,) = sorted((root / "tiny" / "slurm").glob("*/jobs.json"))
    return path.parent, {a["stage"]: a for a in store.read_json(path)["arrays"]}


def states_by_stage(jobs: dict) -> dict[str, list[dict]]:
    return {stage: job_states([j["job_id"]]) for stage, j in jobs.items()}


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
    assert train == {
        row["train/seed-0/noniid/a"]: ("COMPLETED", "0:0"),
        row["train/seed-0/noniid/broken"]: ("FAILED", "1:0"),
        row["train/seed-0/noniid/a+broken"]: ("FAILED", "1:0"),
        row["train/seed-0/iid/c1+c2"]: ("COMPLETED", "0:0"),
    }
    for stage in ("valuation-shard", "valuation", "economy", "figures"):  # never started
        assert {(s["JobState"], s["Reason"]) for s in by_stage[stage]} == {("CANCELLED", "DependencyNeverSatisfied")}
        assert Counter(t.stage for t in tasks)[stage] and not any(
            Path(t.output).exists() or partial_path(t).exists() for t in tasks if t.stage == stage
        )
    failed = next(t for t in tasks if t.task_id == "train/seed-0/noniid/broken")
    assert "deliberate failure" in partial_path(failed).read_text()
    log = (folder / "logs" / f"train-{jobs['train']['job_id']}_{failed.row}.out").read_text()
    assert "PapermillExecutionError" in log and "ddval task: exit status 1" in log


def test_slurm_up_is_idempotent(slurm_cluster):
    """A second `tools/slurm-up.sh` finds the node up and restarts nothing (root's cluster, or the
    single-user cluster of a user without root)."""
    import os
    import subprocess

    own = Path(os.environ.get("DDVAL_SLURM_DIR", Path.home() / ".cache" / "ddval-slurm"))
    run = Path("/run") if os.getuid() == 0 else own / "run"
    pids = {name: (run / f"{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")}
    proc = subprocess.run(
        ["bash", str(Path(__file__).parents[2] / "tools" / "slurm-up.sh")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "starting" not in said and "wrote" not in said
    assert re.search(r"node \S+ is (idle|mixed|allocated|completing)", said), said
    assert pids == {name: (run / f"{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")}
