"""What the ``ddval`` command line checks before it starts tasks, and how it words a problem the user can fix.

Used by :mod:`ddval.cli`: the seeds option, the raw datasets a run needs, SLURM jobs of an earlier
submission still running, and one line for a file-system error of the results folder.
"""

from __future__ import annotations

import errno
import sys

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.jobs import slurm
from ddval.jobs.plan import Plan, data_roots, missing_data


class UsageError(Exception):
    """A problem the user can fix (printed without a traceback, exit status 2)."""


#: What to say about the file-system errors a results folder runs into.
_OS_HINTS = {
    errno.EROFS: "the results folder is on a read-only file system",
    errno.ENOSPC: "the disk holding the results folder is full",
    errno.EDQUOT: "the disk quota of the results folder is exhausted",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
}


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: the path, the system's message, and what to do."""
    where = exc.filename if exc.filename is not None else "(no path)"
    text = f"{where}: {exc.strerror or exc}"
    hint = _OS_HINTS.get(exc.errno)
    return text + (f" ({hint}; choose another with --results or $DDVAL_RESULTS)" if hint else "")


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """The seeds of ``--seeds`` (``"0,2"``), or None when not given; :class:`UsageError` when not integers."""
    if not text:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise UsageError(f"--seeds: expected comma-separated integers, got {text!r}") from exc


def check_data(cfg: ExperimentConfig, the_plan: Plan, *, warn_only: bool = False) -> None:
    """Before the data stages run: print the data roots, and refuse (or with ``warn_only`` warn) when a
    real dataset the preset needs is missing."""
    if not any(t.stage in {"index", "resize"} for t in the_plan.pending):
        return  # the data stages are done; the raw datasets are not read again
    roots = data_roots(cfg)
    if roots:
        print(
            "data roots (DDVAL_<DATASET>_ROOT takes precedence over data.roots):\n  " + "\n  ".join(roots), flush=True
        )
    missing = missing_data(cfg)
    if not missing:
        return
    text = (
        f"preset {cfg.preset!r} runs on the real datasets, and these are missing:\n  "
        + "\n  ".join(missing)
        + "\nSee the README section on real data; `ddval reproduce --preset demo` runs the embedded synthetic cohort."
    )
    if warn_only:
        print(f"# warning: {text}".replace("\n", "\n# "), file=sys.stderr)
        return
    raise UsageError(text)


def check_not_running(cfg: ExperimentConfig, results: str | None) -> None:
    """Refuse to start tasks while the latest SLURM submission of the preset still has jobs queued or
    running: both would run the same tasks into the same files."""
    base = layout.preset_dir(cfg, results) / "slurm"
    subs = sorted(base.glob("*/jobs.json")) if base.exists() else []
    if not subs:
        return
    ids = [a["job_id"] for a in store.read_json(subs[-1]).get("arrays", [])]
    try:
        active = [s for s in slurm.job_states(ids) if s.get("JobState") not in slurm.FINAL_STATES]
    except slurm.SlurmError:  # no SLURM here: the submission was made elsewhere, nothing to check
        return
    if active:
        jobs = sorted({s.get("ArrayJobId") or s.get("JobId") for s in active})
        raise UsageError(
            f"SLURM jobs {', '.join(jobs)} of the submission in {subs[-1].parent} are still queued or running; "
            f"wait for them (squeue -j {','.join(jobs)}) or cancel them (scancel {' '.join(jobs)}) first"
        )
