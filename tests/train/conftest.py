"""Tiny in-memory clients and a tiny DenseNet, so the training unit tests run in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch
from tiny_training import tensor_dataset, tiny_train_config

from ddval.config import TrainConfig
from ddval.repro import seed_everything
from ddval.train.local import Client
from ddval.train.models import build_model


def tiny_cfg(**changes) -> TrainConfig:
    return tiny_train_config(**{"max_rounds": 4, "patience": 2, **changes})


def make_clients(n: int = 3, size: int = 20, **kwargs) -> list[Client]:
    return [
        Client(f"c{i}", tensor_dataset(size, seed=i, shift=0.1 * i), tensor_dataset(8, seed=100 + i), **kwargs)
        for i in range(n)
    ]


def fresh_model(cfg: TrainConfig, seed: int = 1):
    torch.manual_seed(seed)
    return build_model(cfg)


@pytest.fixture(autouse=True)
def _deterministic():
    seed_everything(0, threads=1)
    yield


def assert_same_state(a, b) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


# Test modules are imported with --import-mode=importlib and cannot import this file, so the helpers
# above reach them as fixtures.
@pytest.fixture
def cfg_factory():
    return tiny_cfg


@pytest.fixture
def clients_factory():
    return make_clients


@pytest.fixture
def model_factory():
    return fresh_model


@pytest.fixture
def data_factory():
    return tensor_dataset


@pytest.fixture
def same_state():
    return assert_same_state


@pytest.fixture(scope="session")
def build_cohort():
    """Run stages 01 and 02 (the real data layer) of a preset into a fresh results root; returns the root."""

    def build(cfg, tmp_path_factory):
        from ddval.data import run_index_stage, run_resize_stage

        root = tmp_path_factory.mktemp("results")
        run_index_stage(cfg, root)
        run_resize_stage(cfg, root)
        return root

    return build
