"""Local backend: run the pending tasks of a manifest on this machine, in dependency order.

``jobs=1`` runs the tasks one after the other in this process (each in its own fresh kernel), with
an overall bar over tasks and papermill's bar over the cells of the running notebook. ``jobs>1``
runs up to that many tasks at once as ``ddval run-task`` subprocesses (one kernel each, never a
pool of kernels in one process), as soon as the tasks they depend on have finished; their output
goes to ``<results>/<preset>/logs/local/``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ddval.jobs.manifest import Task
from ddval.jobs.plan import Plan
from ddval.jobs.task import TaskOutcome, pythonpath_with_this_ddval, run_task
from ddval.procs import die_with_parent
from ddval.progress import progress


@dataclass
class LocalReport:
    """Outcome of a local run: per task ``done`` / ``failed`` / ``blocked`` (a dependency failed)."""

    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return all(o.status == "done" for o in self.outcomes.values())

    def by_status(self, status: str) -> list[TaskOutcome]:
        return [o for o in self.outcomes.values() if o.status == status]


def run_local(
    plan: Plan,
    manifest: str | os.PathLike,
    *,
    jobs: int = 1,
    log_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> LocalReport:
    """Run ``plan.pending`` (tasks of ``manifest``); a failed task blocks its dependents, the
    others go on. ``force`` redoes the stages inside each task too. Returns the report; never raises
    for a failing task."""
    report = LocalReport(skipped=len(plan.tasks) - len(plan.pending))
    if not plan.pending:
        return report
    if jobs <= 1:
        _run_sequential(plan.pending, str(manifest), report, force)
    else:
        log_dir = Path(log_dir) if log_dir else Path(manifest).parent / "logs" / "local"
        _run_parallel(plan.pending, str(manifest), jobs, log_dir, report, force)
    return report


def _blocker(task: Task, report: LocalReport) -> str | None:
    return next((d for d in task.depends_on if d in report.outcomes and report.outcomes[d].status != "done"), None)


def _run_sequential(pending: list[Task], manifest: str, report: LocalReport, force: bool) -> None:
    bar = progress(total=len(pending), unit="task", desc="ddval", position=0)
    with bar:
        for task in pending:
            blocker = _blocker(task, report)
            if blocker:
                report.outcomes[task.task_id] = TaskOutcome(task.task_id, "blocked", 0.0, f"{blocker} did not succeed")
            else:
                bar.set_postfix_str(task.label or task.task_id)
                outcome = run_task(task, manifest=manifest, force=force)
                report.outcomes[task.task_id] = outcome
                bar.write(_line(task, outcome))
            bar.update(1)


def _run_parallel(
    pending: list[Task], manifest: str, jobs: int, log_dir: Path, report: LocalReport, force: bool
) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting = list(pending)
    pending_ids = {t.task_id for t in pending}
    running: dict[str, tuple[Task, subprocess.Popen, float, Path]] = {}
    bar = progress(total=len(pending), unit="task", desc="ddval")
    with bar:
        while waiting or running:
            for task in list(waiting):  # block the dependents of failures, start what is ready
                blocker = _blocker(task, report)
                if blocker:
                    waiting.remove(task)
                    report.outcomes[task.task_id] = TaskOutcome(
                        task.task_id, "blocked", 0.0, f"{blocker} did not succeed"
                    )
                    bar.update(1)
                elif len(running) < jobs and all(d not in pending_ids or d in report.outcomes for d in task.depends_on):
                    waiting.remove(task)
                    log = log_dir / (task.task_id.replace("/", "__") + ".log")
                    running[task.task_id] = (task, _spawn(task, manifest, log, force), time.time(), log)
            for task_id, (task, proc, started, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[task_id]
                status = "done" if proc.returncode == 0 else "failed"
                message = "" if status == "done" else f"exit status {proc.returncode}; log: {log}"
                report.outcomes[task_id] = TaskOutcome(task_id, status, time.time() - started, message)
                bar.write(_line(task, report.outcomes[task_id]))
                bar.update(1)
            bar.set_postfix_str(", ".join(t.label or t.task_id for t, *_ in running.values())[:80])
            time.sleep(0.2)


def _spawn(task: Task, manifest: str, log: Path, force: bool) -> subprocess.Popen:
    """``ddval run-task MANIFEST ROW`` in a subprocess writing to ``log``."""
    env = dict(os.environ, DDVAL_PROGRESS="off", PYTHONPATH=pythonpath_with_this_ddval(os.environ.get("PYTHONPATH")))
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "ddval.cli", "run-task", manifest, str(task.row), *(["--force"] if force else [])],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )


def _line(task: Task, outcome: TaskOutcome) -> str:
    mark = {"done": "ok  ", "failed": "FAIL", "blocked": "skip"}[outcome.status]
    text = f"{mark} {task.label or task.task_id} ({outcome.seconds:.1f} s)"
    return text + (f"\n     {outcome.message}" if outcome.message else "")
