"""Benchmark: time of the training stage (notebook 03) for one seed of a preset.

    .venv/bin/python benchmarks/bench_training.py                      # demo, seed 0, as configured
    .venv/bin/python benchmarks/bench_training.py --processes 1 2      # compare process counts
    .venv/bin/python benchmarks/bench_training.py --out -              # print only

Stages 01/02 (cohort, index, resize; not timed) run once into a scratch results root; then, for each
variant, every setting's coalitions are trained from scratch into a fresh folder by one call of
``ddval.train.run_training_stage`` (as ``ddval reproduce`` does). Reported per variant: wall time of
the call, CPU time (user + sys of this process and its worker processes; less sensitive than wall
time to other load on the machine), the rounds trained, and the grand coalitions' utilities; per
coalition: rounds, wall and CPU time of its training (``timing.json``) and its utility. The machine's
core count and load average are printed with the table, since a loaded machine stretches wall time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import pandas as pd  # noqa: E402

from ddval import layout  # noqa: E402
from ddval.config import load_config  # noqa: E402
from ddval.data import run_index_stage, run_resize_stage  # noqa: E402
from ddval.train import run_training_stage  # noqa: E402
from ddval.layout import coalition_dir, setting_coalitions  # noqa: E402


def cpu_seconds() -> float:
    """User + sys CPU of this process and of its finished children (the worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def prepare_data(cfg, root: Path) -> None:
    run_index_stage(cfg, root)
    run_resize_stage(cfg, root)


def run_variant(cfg, seed: int, data_root: Path, work: Path) -> tuple[dict, pd.DataFrame]:
    """Train everything into ``work`` (whose data folder links to the prepared one), timed."""
    layout.data_dir(cfg, work).parent.mkdir(parents=True, exist_ok=True)
    layout.data_dir(cfg, work).symlink_to(layout.data_dir(cfg, data_root), target_is_directory=True)
    wall, cpu = time.perf_counter(), cpu_seconds()
    utilities = run_training_stage(cfg, seed, root=work)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    rows = []
    for s in cfg.settings:
        for members in setting_coalitions(s):
            cdir = coalition_dir(cfg, seed, s.name, members, work)
            timing = json.loads((cdir / "timing.json").read_text())
            mean = utilities[
                (utilities["setting"] == s.name)
                & (utilities["coalition"] == "+".join(members))
                & (utilities["label"] == "mean")
            ]
            rows.append(
                {
                    "setting": s.name,
                    "coalition": "+".join(members),
                    "rounds": timing["rounds"],
                    "wall_s": timing["wall_s"],
                    "cpu_s": timing["cpu_s"],
                    "utility": float(mean["auroc"].iloc[0]),
                }
            )
    per = pd.DataFrame(rows)
    grand = per.groupby("setting", sort=False).last()["utility"]  # the grand coalition is listed last
    summary = {
        "processes": cfg.train.processes,
        "threads": cfg.train.threads,
        "coalitions": len(per),
        "rounds": int(per["rounds"].sum()),
        "wall_s": wall,
        "cpu_s": cpu,
        **{f"grand_{k}": v for k, v in grand.items()},
    }
    return summary, per


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.astype(object).itertuples(index=False):  # object: ints stay ints
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes", type=int, nargs="*", help="train.processes values to compare (default: the preset's)"
    )
    parser.add_argument("--scratch", type=Path, default=None, help="scratch results root (default: a temporary folder)")
    parser.add_argument(
        "--out",
        default=str(REPO / "benchmarks" / "results" / "bench_training.md"),
        help="Markdown result file, '-' for none",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DDVAL_PROGRESS", "off")

    base = load_config(args.preset)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ddval-bench-training-"))
    data_root = scratch / "data-root"
    t = time.perf_counter()
    prepare_data(base, data_root)
    print(f"stages 01/02 ready in {time.perf_counter() - t:.1f} s (not counted)", flush=True)

    summaries, details = [], []
    for processes in args.processes or [base.train.processes]:
        cfg = load_config(args.preset, {"train": {"processes": processes}})
        summary, per = run_variant(cfg, args.seed, data_root, scratch / f"processes-{processes}")
        summaries.append(summary)
        details.append(per.assign(processes=processes))
        print(f"processes={processes}: {summary['wall_s']:.1f} s wall, {summary['cpu_s']:.1f} s CPU", flush=True)

    load1, load5, _ = os.getloadavg()
    header = (
        f"# Training stage benchmark ({args.preset}, seed {args.seed})\n\n"
        f"{_dt.date.today().isoformat()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
        f"load average {load1:.1f} / {load5:.1f} (1 / 5 min) at the end · torch threads per process = train.threads\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_training.py{' --processes ' + ' '.join(map(str, args.processes)) if args.processes else ''}`\n"
    )
    text = (
        header
        + "\n## Whole stage (every setting, one call)\n\n"
        + markdown(pd.DataFrame(summaries), 3)
        + "\n\n## Per coalition\n\n"
        + markdown(
            pd.concat(details, ignore_index=True)[
                ["processes", "setting", "coalition", "rounds", "wall_s", "cpu_s", "utility"]
            ],
            3,
        )
        + "\n"
    )
    print(text)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"written to {args.out}")
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
