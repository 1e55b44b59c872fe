"""Helpers that keep the notebooks thin: one call sets up a stage, one call shows a table."""

from __future__ import annotations

import logging
import os
from typing import Any

from ddval.config import ExperimentConfig, load_config


def setup(
    preset: str = "demo", results_root: str | None = None, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load the preset, point ``$DDVAL_RESULTS`` at ``results_root`` when given, quiet the logs.
    Returns the config."""
    if results_root:
        os.environ["DDVAL_RESULTS"] = str(results_root)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    import pandas as pd

    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.max_rows", 60)
    pd.set_option("display.max_colwidth", None)  # long text (a scalability row's `basis`) is not cut off
    return load_config(preset, overrides)


def show(frame: Any, digits: int = 4) -> Any:
    """``frame`` as a reader should see it (:func:`ddval.display.table`): display names as on the figures,
    settings in display order, cosine in percent, counts as integers, gas with thousands separators, other
    numbers rounded to ``digits`` decimals (so displayed tables are stable to the last printed digit)."""
    from ddval.display import table

    return table(frame, digits)
