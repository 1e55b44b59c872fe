"""Benchmark: the whole valuation stage (04) for one seed, step by step (budget: <= ~40 s on 2 cores).

    DDVAL_RESULTS=/scratch/root .venv/bin/python benchmarks/bench_valuation_stage.py --seed 0
    .venv/bin/python benchmarks/bench_valuation_stage.py --results /scratch/root --out -   # print only

Needs a results root in which stages 01-03 of the preset have run for the seed. The valuation
folders of the seed (``<S>/valuation``) are **deleted** first, so every step is timed from scratch:
point it at a scratch root, never at results you want to keep. Prints, per setting and step, the
wall time and the CPU time (user + sys of this process, less sensitive to other load on a shared
machine) recorded by the stage in ``timings.json``, the total, and writes the table to
``benchmarks/results/valuation_stage.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=None, help="results root (default $DDVAL_RESULTS)")
    parser.add_argument(
        "--out", default=str(HERE / "results" / "valuation_stage.md"), help="markdown table to write ('-': print only)"
    )
    args = parser.parse_args()
    os.environ.setdefault("DDVAL_PROGRESS", "off")

    import pandas as pd
    import torch

    from ddval import store
    from ddval.config import load_config
    from ddval.valuation.stage import run_valuation_stage, valuation_dir

    cfg = load_config(args.preset)
    root = args.results or os.environ.get("DDVAL_RESULTS")
    if not root:
        parser.error("give --results or set DDVAL_RESULTS (a scratch root: its valuation folders are deleted)")
    for s in cfg.settings:
        shutil.rmtree(valuation_dir(cfg, args.seed, s.name, root), ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    run_valuation_stage(cfg, args.seed, root=root)
    total_wall, total_cpu = time.perf_counter() - start, time.process_time() - cpu

    rows = []
    for s in cfg.settings:
        timings = store.read_json(valuation_dir(cfg, args.seed, s.name, root) / "timings.json")
        rows += [
            {"setting": s.name, "step": step, "wall_s": t["wall_s"], "cpu_s": t["cpu_s"]} for step, t in timings.items()
        ]
    table = pd.DataFrame(rows)
    table.loc[len(table)] = {
        "setting": "all",
        "step": "whole stage (incl. loading)",
        "wall_s": total_wall,
        "cpu_s": total_cpu,
    }
    header = (
        f"# Valuation stage, preset `{args.preset}`, seed {args.seed}\n\n"
        f"Measured {_dt.date.today().isoformat()} on {platform.machine()} / {os.cpu_count()} logical cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; `python benchmarks/bench_valuation_stage.py`.\n"
        "Wall time depends on other load on the machine; CPU time is this process's user + sys time.\n\n"
    )
    text = header + "```\n" + table.round(3).to_string(index=False) + "\n```\n"
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
