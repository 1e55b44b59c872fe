"""The demo preset end to end with the real notebooks, run once and shared by the tests below:

1. `ddval submit --preset demo --backend slurm` on the local SLURM cluster (real sbatch, one array
   per stage chained with afterok): no second run may start while it is queued; waited for, checked:
   states, exit codes, notebooks, tables, logs; re-submitting finds nothing to do;
2. `ddval reproduce` on the same results: the local backend finds every task complete (resume
   across backends) and prints the figures folder and the headline table;
3. a deleted valuation table: `ddval reproduce` re-runs exactly that valuation task and the figures
   (a real local-backend run of demo notebooks) and the table comes back identical;
4. the valuation of one setting split into test shards (array tasks) and reduced equals the
   unsharded values.

Seed 0 only (the CI budget runs the 3-seed demo once, in `make reproduce`)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from ddval import layout, store
from ddval.config import load_config
from ddval.jobs.manifest import build_manifest, read_manifest
from ddval.jobs.plan import plan
from ddval.jobs.slurm import wait_for
from ddval.jobs.task import run_task, task_status

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

WAIT = 2400  # seconds for the whole seed-0 chain (about 5 min on an idle 2-core machine)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, slurm_cluster, run_ddval):
    """Results root of the demo chain (seed 0) run on SLURM, its submission folder and the final job
    states. While the chain is queued or running, neither a second submission nor a local run of the
    same preset and results may start (they would run the same tasks into the same files)."""
    root = tmp_path_factory.mktemp("demo")
    args = ("--preset", "demo", "--seeds", "0", "--results", root)
    proc = run_ddval("submit", "--backend", "slurm", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ddval status --preset demo --seeds 0 --results {root}" in proc.stdout
    (jobs,) = sorted((root / "demo" / "slurm").glob("*/jobs.json"))
    ids = [a["job_id"] for a in store.read_json(jobs)["arrays"]]
    for command in ("submit", "reproduce"):
        clash = run_ddval(command, *args)
        assert clash.returncode == 2 and "are still queued or running" in clash.stderr, clash.stdout + clash.stderr
    states = wait_for(ids, timeout=WAIT)
    assert {s["JobState"] for s in states} == {"COMPLETED"}, _failed_logs(jobs.parent)
    return root, jobs.parent, states


def _failed_logs(folder: Path) -> str:
    logs = [p for p in sorted((folder / "logs").glob("*.out")) if "exit status 0" not in p.read_text()]
    return "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


def test_demo_chain_on_slurm(demo, run_ddval):
    root, folder, states = demo
    arrays = store.read_json(folder / "jobs.json")["arrays"]
    assert [a["stage"] for a in arrays] == ["index", "resize", "train", "valuation", "economy", "figures"]
    assert [a["after"] for a in arrays] == [
        [],
        ["index"],
        ["resize"],
        ["train"],
        ["valuation"],
        ["valuation", "economy"],
    ]
    tasks = read_manifest(folder / "manifest.jsonl")
    cfg = load_config("demo")
    trainings = sum(layout.setting_replicates(cfg, s.name) for s in cfg.settings)  # one task per replicate
    assert len(states) == len(tasks) == 2 + trainings + 3 + 2 and trainings == 5
    assert Counter((s["JobState"], s["ExitCode"]) for s in states) == {("COMPLETED", "0:0"): len(tasks)}
    for t in tasks:
        assert task_status(t) == "complete", t.task_id
        meta = nbformat.read(t.output, as_version=4).metadata["ddval"]
        assert meta["slurm_job"] and meta["task_hash"] == t.task_hash
    for setting in ("noniid", "iid"):
        sim = store.read_table(layout.setting_dir(cfg, 0, setting, root) / "valuation" / "similarity.csv")
        assert "ddval" in set(sim["method"]) and sim["cosine"].between(-1, 1).all()
    assert list(layout.figures_dir(cfg, root).glob("*.png"))
    logs = sorted((folder / "logs").glob("*.out"))
    assert len(logs) == len(tasks) and all("ddval task: exit status 0" in p.read_text() for p in logs)
    again = run_ddval("submit", "--preset", "demo", "--seeds", "0", "--results", root)  # resume: nothing left
    assert (
        again.returncode == 0
        and f"0 of {len(tasks)} tasks to run" in again.stdout
        and "nothing to submit" in again.stdout
    )
    status = run_ddval("status", "--preset", "demo", "--seeds", "0", "--results", root)
    assert f"0 of {len(tasks)} tasks to run" in status.stdout
    assert f"train               {trainings} complete     0 pending" in status.stdout
    assert "  figures          job" in status.stdout and "1 COMPLETED" in status.stdout


def test_reproduce_resumes_the_slurm_run(demo, run_ddval):
    root, folder, _ = demo
    n = len(read_manifest(folder / "manifest.jsonl"))
    proc = run_ddval("reproduce", "--preset", "demo", "--seeds", "0", "--results", root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"0 ran, {n} already complete, 0 failed" in proc.stdout
    assert f"figures:   {root / 'demo' / 'figures'}" in proc.stdout
    table = proc.stdout.split("headline: institution values against the exact Shapley values")[1]
    for row in ("ddval", "mr", "lambda_mr", "equal_split", "size_split", "positives_split"):
        assert row in table, row
    assert "noise_ceiling" in table  # the non-IID setting's 3 training replicates give it a ceiling
    assert "vs best reference" in table and "per seed" in table


def test_reproduce_reruns_a_missing_valuation_table(demo, run_ddval):
    root, _, _ = demo
    cfg = load_config("demo")
    table = layout.setting_dir(cfg, 0, "iid", root) / "valuation" / "similarity.csv"
    before = table.read_bytes()
    table.unlink()
    the_plan = plan(build_manifest(cfg, root, seeds=(0,)))
    assert the_plan.reasons == {
        "valuation/seed-0/iid": f"incomplete: {table} is missing",
        "figures": "complete, but valuation/seed-0/iid runs first",
    }
    proc = run_ddval("reproduce", "--preset", "demo", "--seeds", "0", "--results", root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 ran" in proc.stdout and table.read_bytes() == before


def test_sharded_valuation_equals_unsharded(demo, tmp_path):
    root, _, _ = demo
    cfg = load_config("demo")
    copy = tmp_path / "results"
    shutil.copytree(root / "demo", copy / "demo", ignore=shutil.ignore_patterns("notebooks", "slurm", "figures"))
    shutil.rmtree(layout.setting_dir(cfg, 0, "noniid", copy) / "valuation")
    sharded = load_config("demo", {"valuation": {"shards": 2}})
    tasks = [
        t
        for t in build_manifest(sharded, copy, seeds=(0,))
        if t.task_id.startswith(("valuation-shard/seed-0/noniid", "valuation/seed-0/noniid"))
    ]
    assert [t.parameters["shard"] for t in tasks] == [0, 1, None] and {t.parameters["n_shards"] for t in tasks} == {2}
    for t in tasks:  # the notebooks load "demo" (shards: 1): the split comes from the task parameters only
        outcome = run_task(t, progress_bar=False)
        assert outcome.status == "done", outcome.message
    ours = layout.setting_dir(cfg, 0, "noniid", copy) / "valuation"
    theirs = layout.setting_dir(cfg, 0, "noniid", root) / "valuation"
    a, b = pd.read_parquet(ours / "point_values.parquet"), pd.read_parquet(theirs / "point_values.parquet")
    assert list(a.columns) == list(b.columns) and (a["scan_id"] == b["scan_id"]).all()
    value_cols = [c for c in a.columns if c.startswith("value")]
    # KNN-Shapley sums are held in exact integer limbs: shards add up to the same bits
    np.testing.assert_array_equal(a[value_cols].to_numpy(), b[value_cols].to_numpy())
    iv_a, iv_b = (pd.read_csv(d / "institution_values.csv") for d in (ours, theirs))
    ddval_a, ddval_b = (iv[iv["method"] == "ddval"].sort_values("institution") for iv in (iv_a, iv_b))
    np.testing.assert_array_equal(ddval_a["value"].to_numpy(), ddval_b["value"].to_numpy())
