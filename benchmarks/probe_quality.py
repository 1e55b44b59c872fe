"""Probe: how close each method gets to the exact Shapley values when institutions differ in value.

    DDVAL_RESULTS=/scratch/root .venv/bin/python benchmarks/probe_quality.py      # ~10 min on 2 cores

The demo's three institutions are of nearly equal value (their exact values differ mostly by
training noise), so its cosine similarities cannot tell an informative method from an equal split.
``benchmarks/probe_quality.yaml`` (the demo with other settings) gives the exact values a real
spread: ``iid_flip`` (three exchangeable institutions, 0 / 20 / 40 % of their training labels
flipped) and ``noniid_size`` (one dataset each, 75 / 150 / 300 training scans). This script runs
stages 01-04 of that preset for its seeds (resumable, in ``$DDVAL_RESULTS``) and writes the summary
over seeds to ``benchmarks/results/probe_quality.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results" / "probe_quality.md"))
    args = parser.parse_args()
    os.environ.setdefault("DDVAL_PROGRESS", "off")
    if not os.environ.get("DDVAL_RESULTS"):
        parser.error("set DDVAL_RESULTS to a scratch root")

    import pandas as pd

    from ddval.config import load_config
    from ddval.data import run_index_stage, run_resize_stage
    from ddval.train import run_training_stage
    from ddval import layout, valuation
    from ddval.summary import ResultTables, summarize
    from ddval.valuation.views import equal_split_similarity

    cfg = load_config(HERE / "probe_quality.yaml")
    run_index_stage(cfg)
    run_resize_stage(cfg)
    for seed in cfg.seeds:
        for s in cfg.settings:
            run_training_stage(cfg, seed, s.name)
        valuation.run_valuation_stage(cfg, seed)
    tables = ResultTables.open(layout.results_root(), cfg.preset)
    values = tables.load("institution_values.csv")
    sims = pd.concat([tables.load("similarity.csv"), equal_split_similarity(values)], ignore_index=True)
    keys = ["setting", "method"]
    table = summarize(sims, keys, "cosine")
    for metric in ("pearson", "spearman"):
        table = table.merge(summarize(sims, keys, metric).drop(columns="n_seeds"), on=keys)
    means = values.pivot_table(
        index=["setting", "institution"], columns="method", values="value", aggfunc="mean", sort=False
    )
    text = (
        f"# Probe: DDVal and the baselines when institutions differ (seeds {list(cfg.seeds)})\n\n"
        "`DDVAL_RESULTS=<scratch> python benchmarks/probe_quality.py` (see its docstring). "
        "Mean ± 95 % t-CI half-width over seeds; `equal_split` gives every institution the same share.\n\n"
        "```\n" + table.round(4).to_string(index=False) + "\n```\n\n"
        "Mean institution values over seeds:\n\n```\n" + means.round(4).to_string() + "\n```\n"
    )
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
