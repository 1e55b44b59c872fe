"""Rebuild the committed contract artifacts: ``python contracts/build.py``.

The compiler pin (npm solc 0.8.37), optimizer and EVM version live in
``ddval.economy.contracts`` (one place); this script only runs that build and writes
``contracts/artifacts/``. Commit the artifacts with the sources: a test recompiles and fails
when they are stale.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ddval.economy.contracts import build  # noqa: E402

if __name__ == "__main__":
    for path in build():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
