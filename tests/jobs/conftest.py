"""Fixtures of the jobs tests: the fixture notebooks and presets, a `ddval` CLI runner, SLURM."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The fixture notebooks are inputs of the runner tests, not notebooks of the project: `make test`
# passes --nbval, which would otherwise execute them with their defaults (preset demo) and write
# their toy stage records into the test results of the real notebooks.
collect_ignore_glob = ["fixtures/*"]

HERE = Path(__file__).parent
REPO = HERE.parents[1]
FIXTURES = HERE / "fixtures"
FIXTURE_NOTEBOOKS = FIXTURES / "notebooks"
TINY = FIXTURES / "tiny.yaml"


@pytest.fixture(scope="session")
def fixture_notebooks() -> Path:
    """Folder of the fixture notebooks (same parameters as the real ones, tiny work)."""
    return FIXTURE_NOTEBOOKS


@pytest.fixture(scope="session")
def tiny_preset() -> Path:
    """The fixture preset (two settings, two test shards, one seed)."""
    return TINY


@pytest.fixture(scope="session")
def run_ddval():
    """``run_ddval(*args, timeout=..., env=...)``: the `ddval` CLI in a subprocess."""
    return ddval


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a `ddval` subprocess: this checkout's lib first, no progress bars."""
    env = dict(os.environ, DDVAL_PROGRESS="off", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def ddval(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ddval.cli ARGS` in a subprocess (as a user would), with :func:`cli_env` plus
    ``env``; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "ddval.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**(env or {})),
        cwd=REPO,
    )


def write_preset(path: Path, text: str) -> Path:
    """Write a preset file (tests derive variants of the fixture preset)."""
    path.write_text(text)
    return path


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    """A copy of the fixture preset that a test may edit (same name: tiny)."""
    return Path(shutil.copy(TINY, tmp_path / "tiny.yaml"))


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The local SLURM cluster must be up; the test fails (never skips) when it is not."""
    message = (
        "SLURM is not up: run `bash tools/slurm-up.sh` before the SLURM tests (as root; without root it "
        "starts a cluster of your own: export SLURM_CONF as it prints, or run `make test-nonroot`)"
    )
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.fail(message + " (sinfo/sbatch not installed)")
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*~#") in {"idle", "mixed", "allocated", "completing"} for s in states):
        pytest.fail(f"{message} (sinfo: {proc.stdout.strip() or proc.stderr.strip()})")
