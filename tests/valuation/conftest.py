"""Fixtures of the valuation tests: oracles on the path. (Hypothesis profiles: ``tests/conftest.py``.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # valuation_oracles (plain module, importlib mode)

os.environ.setdefault("DDVAL_PROGRESS", "off")
