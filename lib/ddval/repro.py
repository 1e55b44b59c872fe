"""Determinism and provenance helpers shared by every stage."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from importlib import metadata

import numpy as np

from ddval import numerics
from ddval.config import repo_root

#: Packages whose versions go into every provenance record.
PROVENANCE_PACKAGES = ("ddval", "torch", "torchvision", "numpy", "pandas", "scikit-learn", "web3", "papermill")


def seed_everything(seed: int, threads: int | None = None, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; pin the CPU numerics (:mod:`ddval.numerics`); optionally fix torch's
    thread count and force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of training only
        return
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    numerics.apply_to_torch()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def git_commit(default: str = "unknown") -> str:
    """Commit of the checkout (with ``-dirty`` when the tree has changes), or ``default``."""
    try:
        root = repo_root()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return default


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"missing"`` when not installed)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out
