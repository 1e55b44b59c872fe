"""SLURM backend: one job array per stage, chained with ``--dependency=afterok``.

Every array runs ``slurm/papermill_job.sh MANIFEST REPO PYTHON``; array task ``i`` executes row
``i`` of the manifest (so ``--array`` lists exactly the pending rows of the stage, e.g. ``3-9,12``).
Resources come from the preset's ``slurm:`` section (with per-stage overrides) and the command
line; nothing is hard-coded in the script. ``--kill-on-invalid-dep=yes`` cancels the arrays after a
failed one instead of leaving them pending forever.

A submission writes ``<results>/<preset>/slurm/<id>/``: the frozen ``manifest.jsonl`` the tasks
read (a later submission never changes the rows of running jobs), ``submit.sh`` (the exact sbatch
commands), ``jobs.json`` (job ids) and ``logs/<stage>-<job>_<task>.out``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddval import layout
from ddval.config import ExperimentConfig, SlurmStageConfig, repo_root
from ddval.jobs.manifest import STAGES
from ddval.jobs.plan import Plan

#: Job states after which a job will not change any more.
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}

RESOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(SlurmStageConfig))


class SlurmError(RuntimeError):
    """sbatch/scontrol missing or refusing a job; the message says what to do."""


@dataclass(frozen=True)
class StageArray:
    """One job array: the stage, its manifest rows, the stages it waits for, its sbatch options."""

    stage: str
    rows: tuple[int, ...]
    after: tuple[str, ...]
    options: tuple[str, ...]  # sbatch options without --dependency


def resources(cfg: ExperimentConfig, stage: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resources of ``stage``: ``slurm:`` <- ``slurm.stages.<stage>`` <- ``overrides`` (command line)."""
    unknown = sorted(set(cfg.slurm.stages) - set(STAGES))
    if unknown:
        raise ValueError(f"preset {cfg.preset!r}: slurm.stages has unknown stage(s) {unknown}; known: {list(STAGES)}")
    res = {name: getattr(cfg.slurm, name) for name in RESOURCE_FIELDS}
    stage_cfg = cfg.slurm.stages.get(stage)
    for layer in (dataclasses.asdict(stage_cfg) if stage_cfg else {}, overrides or {}):
        res.update({k: v for k, v in layer.items() if v is not None})
    return res


def array_spec(rows: tuple[int, ...] | list[int], max_parallel: int | None = None) -> str:
    """``--array`` value for ``rows``: consecutive runs compressed (``0-3,7,9-10``), ``%K`` appended."""
    rows = sorted(set(rows))
    parts, start = [], None
    for i, r in enumerate(rows):
        start = r if start is None else start
        if i + 1 == len(rows) or rows[i + 1] != r + 1:
            parts.append(str(r) if start == r else f"{start}-{r}")
            start = None
    return ",".join(parts) + (f"%{max_parallel}" if max_parallel else "")


def stage_arrays(
    plan: Plan,
    cfg: ExperimentConfig,
    log_dir: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    extra_args: tuple[str, ...] = (),
) -> list[StageArray]:
    """The job arrays of the pending tasks, in stage order, each waiting for the arrays of the
    stages its tasks depend on."""
    stage_of = {t.task_id: t.stage for t in plan.pending}
    arrays = []
    for stage in STAGES:
        tasks = [t for t in plan.pending if t.stage == stage]
        if not tasks:
            continue
        after = sorted({stage_of[d] for t in tasks for d in t.depends_on if d in stage_of}, key=STAGES.index)
        res = resources(cfg, stage, overrides)
        options = [
            f"--job-name=ddval-{cfg.preset}-{stage}",
            f"--array={array_spec([t.row for t in tasks], res['max_parallel'])}",
            f"--cpus-per-task={res['cpus_per_task']}",
            f"--mem={res['mem']}",
            f"--time={res['time']}",
            f"--output={Path(log_dir) / stage}-%A_%a.out",
            "--kill-on-invalid-dep=yes",
        ]
        if res["gpus"]:
            options.append(f"--gres=gpu:{res['gpus']}")
        if res["partition"]:
            options.append(f"--partition={res['partition']}")
        if res["account"]:
            options.append(f"--account={res['account']}")
        options += [*cfg.slurm.extra_args, *extra_args]
        arrays.append(StageArray(stage, tuple(t.row for t in tasks), tuple(after), tuple(options)))
    return arrays


def job_script() -> Path:
    """``slurm/papermill_job.sh`` of this checkout."""
    return repo_root() / "slurm" / "papermill_job.sh"


def sbatch_argv(
    array: StageArray, manifest: str | Path, dependency_ids: list[str], *, python: str | None = None
) -> list[str]:
    """The sbatch command of one array (``dependency_ids`` may be shell variables for a script)."""
    argv = ["sbatch", "--parsable", *array.options]
    if dependency_ids:
        argv.append("--dependency=afterok:" + ":".join(dependency_ids))
    return argv + [str(job_script()), str(manifest), str(repo_root()), python or sys.executable]


def render_script(arrays: list[StageArray], manifest: str | Path, *, python: str | None = None) -> str:
    """A bash script that submits ``arrays`` exactly like :func:`submit` (printed by ``--dry-run``,
    kept as ``submit.sh`` by a real submission)."""
    lines = ["#!/usr/bin/env bash", f"# ddval: {len(arrays)} job array(s) over {manifest}", "set -euo pipefail"]
    for a in arrays:
        var = _var(a.stage)
        argv = sbatch_argv(a, manifest, [f"${{{_var(s)}}}" for s in a.after], python=python)
        cmd = " ".join(shlex.quote(x) if not x.startswith("--dependency=") else x for x in argv)
        lines.append(f"{var}=$({cmd})")
        lines.append(f'{var}=${{{var}%%;*}}; echo "{a.stage}: job ${var}"')
    return "\n".join(lines) + "\n"


def submit(arrays: list[StageArray], manifest: str | Path, *, python: str | None = None) -> dict[str, str]:
    """Submit the arrays in order; returns ``{stage: job id}``. Raises :class:`SlurmError` with
    sbatch's message when it refuses one (the arrays already submitted stay queued)."""
    _require("sbatch")
    ids: dict[str, str] = {}
    for a in arrays:
        argv = sbatch_argv(a, manifest, [ids[s] for s in a.after], python=python)
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            done = ", ".join(f"{s} {j}" for s, j in ids.items()) or "none"
            raise SlurmError(
                f"sbatch refused the {a.stage} array: {proc.stderr.strip()}\n  command: {shlex.join(argv)}\n"
                f"  already submitted: {done}"
            )
        ids[a.stage] = proc.stdout.strip().split(";")[0]
    return ids


def new_submission_dir(cfg: ExperimentConfig, results_root: str | Path | None = None) -> Path:
    """``<results>/<preset>/slurm/<YYYYmmdd-HHMMSS>[-n]/`` (created, with ``logs/``)."""
    base = layout.preset_dir(cfg, results_root) / "slurm"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = base / stamp, 1
    while path.exists():
        path, n = base / f"{stamp}-{n}", n + 1
    (path / "logs").mkdir(parents=True)
    return path


# --------------------------------------------------------------------------------------------
# Watching
# --------------------------------------------------------------------------------------------


def job_states(job_ids: list[str]) -> list[dict[str, str]]:
    """One dict per job / array task as ``scontrol show job -o`` reports it (``JobId``,
    ``ArrayJobId``, ``ArrayTaskId``, ``JobState``, ``ExitCode``, ``Reason``, ...). Jobs SLURM has
    already purged (after ``MinJobAge``) are absent."""
    _require("scontrol")
    out = []
    for job in job_ids:
        proc = subprocess.run(["scontrol", "show", "job", "-o", str(job)], capture_output=True, text=True)
        if proc.returncode != 0:
            continue
        for line in proc.stdout.splitlines():
            if line.strip():
                out.append(dict(re.findall(r"(\w+)=(\S*)", line)))
    return out


def wait_for(job_ids: list[str], timeout: float, poll: float = 2.0) -> list[dict[str, str]]:
    """Poll until every job (all array tasks) is in a final state; return their states.
    Raises ``TimeoutError`` listing the unfinished ones."""
    deadline = time.monotonic() + timeout
    while True:
        states = job_states(job_ids)
        open_ = [s for s in states if s.get("JobState") not in FINAL_STATES]
        if not open_:
            return states
        if time.monotonic() > deadline:
            left = ", ".join(f"{s.get('JobId')}[{s.get('ArrayTaskId', '')}] {s.get('JobState')}" for s in open_)
            raise TimeoutError(f"SLURM jobs not finished after {timeout:.0f} s: {left}")
        time.sleep(poll)


def watch_hint(ids: dict[str, str], submission: Path, status_command: str) -> str:
    """How to follow a submission (``status_command``: the ``ddval status`` line for this run)."""
    joined = ",".join(ids.values())
    return (
        f"watch:   squeue -j {joined}\n"
        f"         {status_command}\n"
        f"logs:    {submission / 'logs'}/<stage>-<job>_<task>.out\n"
        f"details: scontrol show job <id>   (sacct -j {joined}, where accounting is enabled)\n"
        f"cancel:  scancel {' '.join(ids.values())}"
    )


def _var(stage: str) -> str:
    return "JOB_" + stage.replace("-", "_")


def _require(command: str) -> None:
    if shutil.which(command) is None:
        raise SlurmError(
            f"{command} not found: on a cluster, load SLURM (e.g. `module load slurm`); "
            "on this machine, start the local cluster with `bash tools/slurm-up.sh` (as root, or as "
            "yourself for a single-user cluster, then export SLURM_CONF as it prints)"
        )
