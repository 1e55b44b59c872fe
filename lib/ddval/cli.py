"""``ddval`` command line: run the pipeline's notebooks locally or as SLURM job arrays.

    ddval reproduce [--preset demo]              the whole pipeline here, then the headline table
    ddval submit --preset P --backend slurm      one job array per stage, chained with afterok
    ddval submit --preset P --backend local      the same manifest on this machine (--jobs N)
    ddval status --preset P                      which tasks are complete, pending, queued
    ddval manifest --preset P                    write and show the task manifest
    ddval run-task MANIFEST ROW                  one manifest row (what each SLURM array task runs)

Every command resumes: only tasks whose outputs are missing or stale run (``--force`` runs all).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

from ddval import layout, store
from ddval.config import ConfigError, ExperimentConfig, anchor_path_env, load_config, preset_name
from ddval.jobs import local, slurm
from ddval.jobs.manifest import STAGES, Task, build_manifest, manifest_path, read_manifest, write_manifest
from ddval.jobs.plan import plan
from ddval.jobs.summary import format_summary
from ddval.jobs.task import run_task, task_status
from ddval.lock import ResultsLockedError, held_by_parent, results_lock, task_lock
from ddval.preflight import UsageError, check_data, check_not_running, os_error_message, parse_seeds


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run every pending task locally, then print where the figures are and the headline table."""
    cfg = load_config(args.preset)
    with results_lock(layout.preset_dir(cfg, args.results)):
        cfg, _, tasks = _manifest(args)
        status = _run_local(args, cfg, tasks)
    print()
    print(format_summary(cfg, args.results))
    return status


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the pending tasks to SLURM (or run them locally)."""
    with results_lock(layout.preset_dir(load_config(args.preset), args.results)):
        return _submit(args)


def _submit(args: argparse.Namespace) -> int:
    cfg, _, tasks = _manifest(args)
    if args.backend == "local":
        if args.dry_run:
            the_plan = plan(tasks, force=args.force)
            check_data(cfg, the_plan, warn_only=True)
            print(the_plan.counts())
            for t in the_plan.pending:
                print(f"  row {t.row:4d}  {t.task_id}  ({the_plan.reasons[t.task_id]})")
            return 0
        return _run_local(args, cfg, tasks)
    return _submit_slurm(args, cfg, tasks)


def cmd_status(args: argparse.Namespace) -> int:
    """Per stage: complete / pending tasks; the latest SLURM submission's job states."""
    cfg, _, tasks = _manifest(args, write=False)
    the_plan = plan(tasks)
    print(f"preset {cfg.preset}, results {layout.preset_dir(cfg, args.results)}: {the_plan.counts()}")
    for stage in STAGES:
        of_stage = [t for t in tasks if t.stage == stage]
        if of_stage:
            pending = [t for t in of_stage if t.task_id in the_plan.reasons]
            print(f"  {stage:16s} {len(of_stage) - len(pending):4d} complete  {len(pending):4d} pending")
    for t in the_plan.pending[: args.show]:
        print(f"  pending: {t.task_id} ({the_plan.reasons[t.task_id]})")
    if len(the_plan.pending) > args.show:
        print(f"  ... and {len(the_plan.pending) - args.show} more")
    _print_latest_submission(cfg, args.results)
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    """Write the manifest and list its rows."""
    cfg, _, tasks = _manifest(args, write=False)
    path = Path(args.out) if args.out else manifest_path(cfg, args.results)
    with results_lock(layout.preset_dir(cfg, args.results)):
        write_manifest(tasks, path)
    for t in tasks:
        print(f"{t.row:4d}  {t.stage:16s} {t.task_id}")
    print(f"manifest: {path} ({len(tasks)} tasks)")
    return 0


def cmd_run_task(args: argparse.Namespace) -> int:
    """Execute one manifest row (what ``slurm/papermill_job.sh`` runs); exit 0 only on success."""
    tasks = read_manifest(args.manifest)
    if not 0 <= args.row < len(tasks):
        raise UsageError(f"{args.manifest}: no row {args.row} (the manifest has rows 0-{len(tasks) - 1})")
    task = tasks[args.row]
    with _task_lock(task):
        if args.skip_complete and task_status(task) == "complete":
            print(f"{task.task_id}: complete, skipped")
            return 0
        print(f"{task.task_id}: {task.notebook} -> {task.output}", flush=True)
        outcome = run_task(task, manifest=str(Path(args.manifest).resolve()), force=args.force)
    print(
        f"{task.task_id}: {outcome.status} in {outcome.seconds:.1f} s"
        + (f": {outcome.message}" if outcome.message else ""),
        flush=True,
    )
    return 0 if outcome.status == "done" else 1


# --------------------------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------------------------


def _task_lock(task: Task):
    """The lock a single task runs under: the task's own when it is a SLURM array task (its siblings
    run at the same time; it inherits ``ddval submit``'s environment, lock note included); none when
    its runner holds the results folder's lock; else the folder's."""
    folder = layout.results_root(task.parameters.get("results_root")) / preset_name(task.parameters["preset"])
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return task_lock(task.output)
    if held_by_parent(folder):
        return contextlib.nullcontext()
    return results_lock(folder)


def _manifest(args: argparse.Namespace, *, write: bool = True) -> tuple[ExperimentConfig, tuple[int, ...], list[Task]]:
    cfg = load_config(args.preset)
    seeds = parse_seeds(args.seeds) or cfg.seeds
    tasks = build_manifest(cfg, args.results, preset=args.preset, seeds=seeds, notebooks_dir=args.notebooks)
    if write:
        write_manifest(tasks, manifest_path(cfg, args.results))
    return cfg, seeds, tasks


def _run_local(args: argparse.Namespace, cfg: ExperimentConfig, tasks: list[Task]) -> int:
    the_plan = plan(tasks, force=args.force)
    check_data(cfg, the_plan)
    check_not_running(cfg, args.results)
    where = manifest_path(cfg, args.results)
    print(f"ddval {cfg.preset}: {the_plan.counts()}  (manifest {where})", flush=True)
    report = local.run_local(the_plan, where, jobs=args.jobs, force=args.force)
    counts = Counter(o.status for o in report.outcomes.values())
    print(
        f"ddval {cfg.preset}: {counts['done']} ran, {report.skipped} already complete, "
        f"{counts['failed']} failed, {counts['blocked']} not started (a dependency failed)"
    )
    for o in report.by_status("failed"):
        print(f"  FAILED {o.task_id}: {o.message}")
    return 0 if report.ok else 1


def _submit_slurm(args: argparse.Namespace, cfg: ExperimentConfig, tasks: list[Task]) -> int:
    the_plan = plan(tasks, force=args.force)
    print(f"ddval {cfg.preset}: {the_plan.counts()}")
    if not the_plan.pending:
        print("nothing to submit")
        return 0
    check_data(cfg, the_plan, warn_only=args.dry_run)
    if not args.dry_run:
        check_not_running(cfg, args.results)
    overrides = {k: getattr(args, k) for k in slurm.RESOURCE_FIELDS if getattr(args, k) is not None}
    extra = tuple(args.sbatch_arg or ())
    force = (f"--export=ALL,{store.FORCE_ENV}=1",) if args.force else ()  # the tasks redo their stages too
    if args.dry_run:
        where = manifest_path(cfg, args.results)
        arrays = slurm.stage_arrays(
            the_plan, cfg, where.parent / "slurm" / "logs", overrides=overrides, extra_args=extra + force
        )
        print(f"# dry run: nothing submitted; manifest written to {where}")
        print(slurm.render_script(arrays, where, python=args.python), end="")
        return 0
    submission = slurm.new_submission_dir(cfg, args.results)
    frozen = write_manifest(tasks, submission / "manifest.jsonl")
    arrays = slurm.stage_arrays(the_plan, cfg, submission / "logs", overrides=overrides, extra_args=extra + force)
    store.write_text(submission / "submit.sh", slurm.render_script(arrays, frozen, python=args.python))
    ids = slurm.submit(arrays, frozen, python=args.python)
    store.write_json(
        submission / "jobs.json",
        {
            "arrays": [
                {"stage": a.stage, "job_id": ids[a.stage], "rows": list(a.rows), "after": list(a.after)} for a in arrays
            ]
        },
    )
    for a in arrays:
        after = f" (after {', '.join(a.after)})" if a.after else ""
        print(f"  {a.stage:16s} job {ids[a.stage]:>8s}  {len(a.rows):4d} task(s){after}")
    print(slurm.watch_hint(ids, submission, _status_command(args)))
    if args.wait is None:
        return 0
    states = slurm.wait_for(list(ids.values()), timeout=args.wait)
    counts = Counter(s.get("JobState") for s in states)
    print("finished: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0 if set(counts) == {"COMPLETED"} else 1


def _status_command(args: argparse.Namespace) -> str:
    """The ``ddval status`` command that looks at the same run as ``args``."""
    parts = ["ddval", "status", "--preset", str(args.preset)]
    for option in ("seeds", "results", "notebooks"):
        if getattr(args, option):
            parts += [f"--{option}", str(getattr(args, option))]
    return shlex.join(parts)


def _print_latest_submission(cfg: ExperimentConfig, results: str | None) -> None:
    base = layout.preset_dir(cfg, results) / "slurm"
    subs = sorted(base.glob("*/jobs.json")) if base.exists() else []
    if not subs:
        return
    arrays = store.read_json(subs[-1]).get("arrays", [])
    print(f"latest SLURM submission: {subs[-1].parent}")
    try:
        states = slurm.job_states([a["job_id"] for a in arrays])
    except slurm.SlurmError:
        print("  (scontrol not available here)")
        return
    by_job = {}
    for s in states:
        by_job.setdefault(s.get("ArrayJobId") or s.get("JobId"), Counter())[s.get("JobState")] += 1
    for a in arrays:
        c = by_job.get(a["job_id"])
        text = ", ".join(f"{n} {st}" for st, n in sorted(c.items())) if c else "no longer known to SLURM"
        print(f"  {a['stage']:16s} job {a['job_id']:>8s}: {text}")


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, preset_default: str | None = "demo") -> None:
    p.add_argument(
        "--preset",
        default=preset_default,
        required=preset_default is None,
        help="preset name in configs/ or a YAML file (default: %(default)s)",
    )
    p.add_argument("--seeds", help="comma-separated seeds to run (default: the preset's)")
    p.add_argument("--results", help="results root (default: $DDVAL_RESULTS, else results/)")
    p.add_argument("--notebooks", help="folder of the notebooks (default: notebooks/ of this checkout)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=1, help="local backend: tasks run at once (default 1)")
    p.add_argument(
        "--force", action="store_true", help="run every task, complete or not, and redo the stages inside each task"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``ddval`` argument parser."""
    parser = argparse.ArgumentParser(prog="ddval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="run 01 -> 06 here (resumes), print the figures folder and headline table")
    _common(p)
    _run_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("submit", help="run the manifest as SLURM job arrays chained with afterok, or locally")
    _common(p, preset_default=None)
    _run_options(p)
    p.add_argument("--backend", choices=("slurm", "local"), default="slurm")
    p.add_argument(
        "--dry-run", action="store_true", help="print the sbatch commands (or the local task list); submit nothing"
    )
    g = p.add_argument_group("SLURM resources (override the preset's slurm: section for every stage)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--cpus-per-task", dest="cpus_per_task", type=int)
    g.add_argument("--mem", help="e.g. 64G")
    g.add_argument("--gpus", type=int, help="GPUs per task (--gres=gpu:N)")
    g.add_argument("--time", help="time limit per task, e.g. 12:00:00")
    g.add_argument("--max-parallel", dest="max_parallel", type=int, help="at most K tasks of an array at once (%%K)")
    g.add_argument(
        "--sbatch-arg",
        action="append",
        metavar="ARG",
        help="extra sbatch option, e.g. --sbatch-arg=--qos=long (repeatable)",
    )
    g.add_argument("--python", help="interpreter of the environment on the compute nodes (default: this one)")
    g.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for the jobs; exit 1 unless all complete"
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="complete / pending tasks, and the latest SLURM submission")
    _common(p)
    p.add_argument("--show", type=int, default=20, help="list at most this many pending tasks")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("manifest", help="write the task manifest and list it")
    _common(p)
    p.add_argument("--out", help="file to write (default: <results>/<preset>/manifest.jsonl)")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("run-task", help="run one manifest row (used by slurm/papermill_job.sh)")
    p.add_argument("manifest")
    p.add_argument("row", type=int)
    p.add_argument("--skip-complete", action="store_true", help="do nothing when the task is already complete")
    p.add_argument("--force", action="store_true", help="redo the stages inside the task too (also: $DDVAL_FORCE set)")
    p.set_defaults(func=cmd_run_task)

    from ddval.federation.commands import add_federate_parser

    add_federate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    anchor_path_env()  # the notebooks run in notebooks/: DDVAL_NIH_ROOT=data/nih means data/nih from here
    try:
        return args.func(args)
    except (
        UsageError,
        ConfigError,
        slurm.SlurmError,
        ResultsLockedError,
        FileNotFoundError,
        ValueError,
        TimeoutError,
    ) as exc:
        print(f"ddval: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ddval status | head`: the reader has gone, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # what a shell reports for a command ended by SIGPIPE
    except OSError as exc:  # a read-only or full results folder, no permission: one line naming the path
        print(f"ddval: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddval: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
