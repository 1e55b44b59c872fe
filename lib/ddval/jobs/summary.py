"""The closing summary of ``ddval reproduce``: where the figures and executed notebooks are, and the
headline table (:func:`ddval.summary.headline`: per setting, every method and the reference splits against the exact Shapley values, with wins seed by seed) from the valuation tables
``similarity.csv`` of the run."""

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
        lines.append(
            "headline: institution values against the exact Shapley values (every coalition retrained), per setting: "
            "every method, the reference splits (and the noise ceiling with training replicates); cosine [%] mean "
            "[95 % bootstrap interval] over seeds and per seed, wins against the best reference split seed by seed "
            "(ddval.scorecard):"
        )
        lines.append(table.fillna("-").to_string())
    return "\n".join(lines)
