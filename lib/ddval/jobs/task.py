"""Run one manifest task with papermill, and decide whether an earlier run of it is still valid.

A task is *complete* when its completion record (``.<notebook stem>.done.json`` next to the
executed notebook, written with :mod:`ddval.store`) has the task's hash, the executed notebook and
every stage completion record the task wrote (found under the task's ``scope``) hold what it
recorded (size and SHA-256: an edited inner record counts), and every output of those stage records
holds what *they* recorded. Anything else — never run, other parameters or notebook source, an
output deleted, truncated or changed since — means the task runs again; the reason names the file.

While it runs, papermill writes ``<name>.partial.ipynb`` after every cell; only a successful run
is moved to ``<name>.ipynb`` (with the provenance in ``metadata.ddval``) and recorded, so a task
killed mid-way (SLURM time limit, Ctrl-C) leaves a partial notebook to look at and no record: it
simply runs again, and the stages inside it skip what they had already finished.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddval import store
from ddval.jobs.manifest import Task


@dataclass(frozen=True)
class TaskOutcome:
    """What :func:`run_task` did: ``status`` is ``"done"`` or ``"failed"``."""

    task_id: str
    status: str
    seconds: float
    message: str = ""


def partial_path(task: Task) -> Path:
    """Where papermill writes the notebook while the task runs."""
    out = Path(task.output)
    return out.with_name(out.stem + ".partial.ipynb")


def record_file(task: Task) -> Path:
    """The task's completion record."""
    out = Path(task.output)
    return store.record_path(out.parent, out.stem)


def task_status(task: Task) -> str:
    """``"complete"``, ``"missing"`` (never finished), ``"stale"`` (other hash, or a file that differs
    from its record) or ``"incomplete"`` (an output of the task, or of a stage it ran, has disappeared)."""
    return task_check(task)[0]


def task_check(task: Task) -> tuple[str, str]:
    """``(status, why)`` of :func:`task_status`; ``why`` names the file that makes it not complete."""
    out = Path(task.output)
    status, why = store.stage_check(out.parent, out.stem, _record_params(task))
    if status != "complete":
        return status, why
    for rel in store.record_outputs(store.read_json(record_file(task))):
        path = Path(os.path.normpath(out.parent / rel))
        if path.name.endswith(".done.json"):
            try:
                store.verify_outputs(path.parent, path.name[1 : -len(".done.json")])
            except store.StaleOutputError as exc:
                return ("incomplete" if str(exc).endswith(" is missing") else "stale"), str(exc)
    return "complete", why


def run_task(
    task: Task, *, progress_bar: bool | None = None, manifest: str | None = None, force: bool = False
) -> TaskOutcome:
    """Execute ``task``'s notebook with papermill in a fresh ``ddval`` kernel; record completion.

    Never raises for a failing notebook: the outcome says ``failed`` and where the partial notebook
    with the traceback is. ``progress_bar`` defaults to on unless ``$DDVAL_PROGRESS=off``. ``force``
    (or ``$DDVAL_FORCE`` already set) redoes every stage inside the task's scope as well.
    """
    import nbformat
    import papermill

    out, partial, record = Path(task.output), partial_path(task), record_file(task)
    if not Path(task.notebook).exists():
        return TaskOutcome(task.task_id, "failed", 0.0, f"notebook {task.notebook} not found")
    previous = _previous_stage_records(task)
    record.unlink(missing_ok=True)  # from here on the task counts as not done until it succeeds
    out.unlink(missing_ok=True)  # an older executed notebook must not pass for this run's result
    out.parent.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(task, manifest)
    if progress_bar is None:
        progress_bar = os.environ.get("DDVAL_PROGRESS", "auto") != "off"
    records_before = _stage_records(Path(task.scope))
    started = time.time()
    try:
        with _kernel_environment(task.scope if force or os.environ.get(store.FORCE_ENV) else None):
            papermill.execute_notebook(
                task.notebook,
                str(partial),
                parameters=task.parameters,
                kernel_name=task.kernel,
                cwd=str(Path(task.notebook).parent),
                progress_bar={"desc": task.label or task.task_id, "leave": False} if progress_bar else False,
                request_save_on_cell_execute=True,
                # the kernel's own log ("running over TCP without encryption" on loopback, "KeyboardInterrupt
                # caught" at shutdown) would repeat in every task log; the notebook's errors are unaffected
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except Exception as exc:  # noqa: BLE001 - any failure of the notebook or its kernel fails the task
        seconds = time.time() - started
        message = _summary(exc)
        if type(exc).__name__ == "NoSuchKernel":
            message += (
                f" (install it with `make env`, or `python -m ipykernel install --sys-prefix --name {task.kernel}`)"
            )
        if partial.exists():
            message += f"; partial notebook: {partial}"
        return TaskOutcome(task.task_id, "failed", seconds, message)
    seconds = time.time() - started
    nb = nbformat.read(partial, as_version=4)
    nb.metadata["ddval"] = {**provenance, "seconds": round(seconds, 1)}
    store.write_text(out, nbformat.writes(nb))
    partial.unlink(missing_ok=True)
    records = sorted(set(previous) | set(_written_since(records_before, Path(task.scope))))
    outputs = [out.name] + [os.path.relpath(r, out.parent) for r in records if r.exists()]
    store.mark_complete(out.parent, out.stem, _record_params(task), outputs)
    return TaskOutcome(task.task_id, "done", seconds)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _record_params(task: Task) -> dict[str, Any]:
    return {"task_id": task.task_id, "task_hash": task.task_hash}


def _stage_records(scope: Path) -> dict[Path, int]:
    """Stage completion records under ``scope`` and their modification times (ns)."""
    if not scope.exists():
        return {}
    return {p.resolve(): p.stat().st_mtime_ns for p in scope.rglob(".*.done.json")}


def _written_since(before: dict[Path, int], scope: Path) -> list[Path]:
    """Records under ``scope`` that are new or rewritten compared with the snapshot ``before``
    (comparing snapshots, not clocks: file times on a cluster file system come from its server)."""
    return [p for p, t in _stage_records(scope).items() if before.get(p) != t]


def _previous_stage_records(task: Task) -> list[Path]:
    """Stage records claimed by the task's previous completion record (kept when a re-run of the
    notebook finds its stages complete and so rewrites none of them)."""
    record = record_file(task)
    if not record.exists():
        return []
    out_dir = Path(task.output).parent
    try:
        outputs = store.record_outputs(store.read_json(record))
    except (OSError, ValueError):
        return []
    return [(out_dir / o).resolve() for o in outputs if o.endswith(".done.json")]


def _provenance(task: Task, manifest: str | None) -> dict[str, Any]:
    from ddval.repro import git_commit, package_versions

    return {
        "task_id": task.task_id,
        "stage": task.stage,
        "row": task.row,
        "manifest": manifest,
        "task_hash": task.task_hash,
        "parameters": task.parameters,
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "host": platform.node(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def pythonpath_with_this_ddval(current: str | None) -> str:
    """``current`` (a ``PYTHONPATH``) with the ``lib/`` folder of the running ``ddval`` first, so
    kernels and subprocesses import the same code as the runner."""
    import ddval

    lib = str(Path(ddval.__file__).resolve().parents[1])
    parts = [p for p in (current or "").split(os.pathsep) if p and p != lib]
    return os.pathsep.join([lib, *parts])


@contextlib.contextmanager
def _kernel_environment(force_scope: str | None = None) -> Iterator[None]:
    """Kernels inherit this process's environment: point their ``PYTHONPATH`` at this ``ddval`` and,
    unless ``$DDVAL_PROGRESS`` is set (the SLURM job script sets ``text`` for its logs), switch the
    stages' progress bars off: the runner shows its own, and bars of a stage's worker processes
    would write straight into the terminal over them. A forced task's kernel gets ``$DDVAL_FORCE``
    (the task's scope): its stages run again instead of skipping."""
    wanted = {
        "PYTHONPATH": pythonpath_with_this_ddval(os.environ.get("PYTHONPATH")),
        "DDVAL_PROGRESS": os.environ.get("DDVAL_PROGRESS", "off"),
    }
    wanted[store.FORCE_ENV] = force_scope or ""
    old = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _summary(exc: Exception) -> str:
    """One line: the exception type and its message. For a failing cell (papermill's error, whose text
    is the whole traceback) the cell's own error and every line of its message, joined; otherwise the
    last line of the message."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename and evalue is not None:
        message = " ".join(line.strip() for line in str(evalue).splitlines() if line.strip())
        return f"{type(exc).__name__}: {ename}: {message}"[:500]
    text = str(exc).strip().splitlines()
    last = next((line for line in reversed(text) if line.strip()), "")
    return f"{type(exc).__name__}: {last}"[:500]
