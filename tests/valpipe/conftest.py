"""Fixtures of the valuation-pipeline tests: tiny models, synthetic features, and one tiny end-to-end
run (synthetic cohort → index → resize → training → valuation) shared by the stage tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import tiny_train_config

from ddval.config import LABELS, load_config
from ddval.repro import seed_everything
from ddval.valuation.features import InstitutionFeatures, SplitFeatures

HERE = Path(__file__).parent


def split(n: int, d: int, rng: np.random.Generator, prefix: str, patients: int | None = None) -> SplitFeatures:
    y = (rng.random((n, len(LABELS))) < 0.4).astype(np.float32)
    x = (rng.normal(size=(n, d)) + y[:, :1] * 1.5).astype(np.float32)  # label 0 is learnable
    pids = np.array([f"{prefix}-p{i % (patients or n)}" for i in range(n)])
    return SplitFeatures(
        x=x,
        y=y,
        ids=np.array([f"{prefix}-{i}" for i in range(n)]),
        patients=pids,
        sex=np.array(["F", "M"] * (n // 2) + ["U"] * (n % 2)),
        age=rng.uniform(20, 80, n),
    )


def make_features(
    names=("a", "b", "c"), n_train=(12, 9, 15), n_test=10, d=6, seed=0, shared_test=False
) -> dict[str, InstitutionFeatures]:
    rng = np.random.default_rng(seed)
    shared = split(n_test, d, rng, "shared")
    return {
        name: InstitutionFeatures(
            name,
            split(n, d, rng, f"{name}-train", patients=max(1, n // 2)),
            shared if shared_test else split(n_test, d, rng, f"{name}-test"),
        )
        for name, n in zip(names, n_train)
    }


@pytest.fixture(autouse=True)
def _deterministic():
    seed_everything(0, threads=1)
    yield


@pytest.fixture
def train_cfg_factory():
    return tiny_train_config


@pytest.fixture
def features_factory():
    return make_features


# --------------------------------------------------------------------------------------------
# One tiny end-to-end run (shared by the stage tests; ~ a minute on 2 cores)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(cfg, root)`` of the ``tiny`` preset after the data and training stages."""
    from ddval.data import run_index_stage, run_resize_stage
    from ddval.train import run_training_stage

    root = tmp_path_factory.mktemp("valpipe-results")
    cfg = load_config(HERE / "tiny.yaml")
    seed_everything(0, threads=1)
    run_index_stage(cfg, root)
    run_resize_stage(cfg, root)
    for s in cfg.settings:
        run_training_stage(cfg, 0, s.name, root=root)
    torch.use_deterministic_algorithms(False)
    return cfg, root
