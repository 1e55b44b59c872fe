"""Fixtures of the valuation tests: oracles on the path, Hypothesis budget for a 2-core CI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # valuation_oracles (plain module, importlib mode)

os.environ.setdefault("DDVAL_PROGRESS", "off")

# Timing on a shared 2-core machine is noisy: no per-example deadline; a modest example count.
settings.register_profile(
    "ddval-valuation",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("ddval-valuation")
