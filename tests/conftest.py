"""Hypothesis profiles for the whole suite: deterministic by default, exploratory on request.

* ``ci`` (the default, for every run, CI included): derandomised, so a test draws the same examples
  on every run and machine (a failure is a change in the code, never a new draw); no example
  database (nothing read from or written to ``.hypothesis/``, so local history cannot change a
  run); no deadline (timing on a shared 2-core machine is noisy); failures print a reproduction blob.
* ``explore`` (by hand): fresh random examples on every run and more of them (tests that pin their
  own ``max_examples`` keep it), with the local example database so a failure replays::

      HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest -p no:cacheprovider tests/valuation
      # repeat a few times; a failure prints "@reproduce_failure(...)" and the falsifying example:
      # keep that example as an explicit @example(...) on the test, then fix the code or the premise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    print_blob=True,
    # assume()-heavy properties and slow brute-force oracles on a shared 2-core machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

settings.register_profile("ci", derandomize=True, database=None, max_examples=60, **_COMMON)
settings.register_profile("explore", derandomize=False, max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: tiny_training.py, shared helpers
