"""What a run has to do: which manifest tasks are pending, and whether the data they need is there."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ddval.config import ROOT_ENV_VARS, ExperimentConfig
from ddval.jobs.manifest import STAGES, Task
from ddval.jobs.task import task_check


@dataclass(frozen=True)
class Plan:
    """``pending`` tasks in manifest order, and why each one runs (``reasons[task_id]``)."""

    tasks: list[Task]
    pending: list[Task]
    reasons: dict[str, str]

    def counts(self) -> str:
        """e.g. ``"7 of 23 tasks to run (train 3, valuation 3, figures 1); 16 complete"``."""
        per_stage = Counter(t.stage for t in self.pending)
        stages = ", ".join(f"{s} {per_stage[s]}" for s in STAGES if per_stage[s])
        done = len(self.tasks) - len(self.pending)
        return (
            f"{len(self.pending)} of {len(self.tasks)} tasks to run"
            + (f" ({stages})" if stages else "")
            + f"; {done} complete"
        )


def plan(tasks: list[Task], *, force: bool = False) -> Plan:
    """Pending tasks: those not complete (see :func:`ddval.jobs.task.task_check`; the reason names the
    file that is missing or differs from its record), and every task
    that depends on a pending one (its inputs are about to change; the stages inside it still skip
    whatever is unchanged). ``force`` marks every task pending."""
    reasons: dict[str, str] = {}
    for t in tasks:  # manifest order is a topological order
        if force:
            reasons[t.task_id] = "forced"
            continue
        status, why = task_check(t)
        upstream = next((d for d in t.depends_on if d in reasons), None)
        if status != "complete":
            reasons[t.task_id] = status if status == "missing" else f"{status}: {why}"
        elif upstream is not None:
            reasons[t.task_id] = f"complete, but {upstream} runs first"
    return Plan(tasks, [t for t in tasks if t.task_id in reasons], reasons)


def missing_data(cfg: ExperimentConfig) -> list[str]:
    """For a real-data preset, one line per dataset whose root folder is not configured or absent
    (empty for the synthetic cohort, which the pipeline writes itself)."""
    if cfg.data.source != "real":
        return []
    lines = []
    for name in cfg.data.datasets:
        root, origin = cfg.dataset_root_origin(name)
        if root is None:
            var = ROOT_ENV_VARS[name]
            lines.append(f"{name}: not configured; set {var}=/path/to/{name} or data.roots.{name} in a preset file")
        elif not root.is_dir():
            lines.append(f"{name}: {root} ({origin}) is not a folder")
    return lines


def data_roots(cfg: ExperimentConfig) -> list[str]:
    """For a real-data preset, one line per dataset: the root a run reads and why that one
    (``DDVAL_<DATASET>_ROOT`` takes precedence over ``data.roots``)."""
    if cfg.data.source != "real":
        return []
    lines = []
    for name in cfg.data.datasets:
        root, origin = cfg.dataset_root_origin(name)
        lines.append(f"{name}: {root if root is not None else '-'} ({origin})")
    return lines
