"""The closing summary of ``ddval reproduce``: where the figures and executed notebooks are, and the
headline table (cosine similarity of each method's institution values to the exact Shapley values,
per setting, mean ± 95 % CI over seeds) computed by :func:`ddval.summary.headline` from the
valuation tables ``similarity.csv`` of the run."""

from __future__ import annotations

import os

from ddval import layout
from ddval.config import ExperimentConfig
from ddval.summary import headline


def format_summary(cfg: ExperimentConfig, results_root: str | os.PathLike | None = None) -> str:
    """The text ``ddval reproduce`` prints at the end."""
    figures = layout.figures_dir(cfg, results_root)
    pngs = sorted(figures.glob("*.png")) if figures.exists() else []
    lines = [
        f"figures:   {figures}  ({len(pngs)} PNG + PDF, numbers behind each in summary_<name>.csv)",
        f"notebooks: {layout.preset_dir(cfg, results_root) / 'notebooks'}",
    ]
    table = headline(layout.results_root(results_root), cfg.preset)
    if table is None:
        lines.append("headline:  no similarity.csv yet (no setting with exact values has been valued)")
    else:
        lines.append("cosine similarity [%] of the institution values to the exact Shapley values (mean ± 95 % CI over seeds):")
        lines.append(table.fillna("-").to_string())
    return "\n".join(lines)
