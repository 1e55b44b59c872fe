"""Jobs: the task manifest of a preset and its runners (local, SLURM job arrays).

``build_manifest`` lists every notebook run of a preset (one row per task); ``plan`` picks the
tasks whose outputs are missing or stale; ``run_local`` runs them here, ``slurm.submit`` as one
job array per stage chained with ``--dependency=afterok``; ``run_task`` runs one row with papermill.
The ``ddval`` command line (``ddval.cli``) wraps all of it.
"""

from ddval.jobs.local import LocalReport, run_local
from ddval.jobs.manifest import (
    STAGES,
    Task,
    build_manifest,
    coalition_ids,
    manifest_path,
    read_manifest,
    write_manifest,
)
from ddval.jobs.plan import Plan, missing_data, plan
from ddval.jobs.task import TaskOutcome, run_task, task_status

__all__ = [
    "STAGES",
    "LocalReport",
    "Plan",
    "Task",
    "TaskOutcome",
    "build_manifest",
    "coalition_ids",
    "manifest_path",
    "missing_data",
    "plan",
    "read_manifest",
    "run_local",
    "run_task",
    "task_status",
    "write_manifest",
]
