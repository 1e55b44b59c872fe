"""The local trainer: what one institution runs in a round, shared by FedAvg, swarm learning and the
Flower ClientApp. A client trains ``local_epochs`` from the global state with a fresh SGD optimiser
(BCE loss) and reports the validation loss of a state on its own validation set.

Determinism: every random choice of a round (shuffling, augmentation, dropout) is seeded from
``(seed, client name, round, epoch)`` by :func:`derive_seed`, so a client's batches in round ``r``
are the same in every coalition it belongs to, and a run resumed from a checkpoint continues exactly
as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ddval.config import TrainConfig
from ddval.progress import progress
from ddval.train.aggregate import State


# --------------------------------------------------------------------------------------------
# Clients, seeds, loaders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One institution: its name and its training and validation data (``(x, y)`` datasets).

    ``seed_key`` names the client's random streams (default: its name), so the same institution
    draws the same batches in every coalition."""

    name: str
    train: Dataset
    val: Dataset
    seed_key: str | None = None

    @property
    def stream(self) -> str:
        return self.seed_key if self.seed_key is not None else self.name

    @property
    def n_train(self) -> int:
        return len(self.train)


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (stable across processes and platforms)."""
    blob = repr((int(seed), *keys)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; give numpy / random the same seed.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose order and worker seeds follow ``seed``.

    When shuffling, a last batch of a single sample is dropped: BatchNorm cannot train on one sample
    once the feature map is 1×1 (small inputs)."""
    generator = torch.Generator().manual_seed(seed)
    drop_last = shuffle and len(dataset) % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers else None,
        persistent_workers=False,
    )


def check_train_config(train_cfg: TrainConfig) -> None:
    """Raise ``ValueError`` naming the ``train.`` field whose value cannot work."""
    rules = [
        ("max_rounds", train_cfg.max_rounds >= 1, ">= 1"),
        ("patience", train_cfg.patience >= 1, ">= 1"),
        ("local_epochs", train_cfg.local_epochs >= 1, ">= 1"),
        ("lr", train_cfg.lr > 0, "> 0"),
        ("lr_decay", 0 < train_cfg.lr_decay <= 1, "in (0, 1]"),
        ("momentum", 0 <= train_cfg.momentum < 1, "in [0, 1)"),
        ("batch_size", train_cfg.batch_size >= 1, ">= 1"),
        ("eval_batch_size", train_cfg.eval_batch_size >= 1, ">= 1"),
        ("threads", train_cfg.threads >= 1, ">= 1"),
        ("num_workers", train_cfg.num_workers >= 0, ">= 0"),
        ("processes", train_cfg.processes >= 1, ">= 1"),
        (
            "small_block_config",
            len(train_cfg.small_block_config) == 4 and min(train_cfg.small_block_config) >= 1,
            "4 positive block sizes",
        ),
    ]
    for name, ok, expected in rules:
        if not ok:
            raise ValueError(f"train.{name} must be {expected}, got {getattr(train_cfg, name)!r}")


def resolve_device(train_cfg: TrainConfig) -> torch.device:
    """``train.device``, with ``"auto"`` meaning CUDA when available."""
    if train_cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(train_cfg.device)


def clone_state(model: nn.Module) -> State:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Local training and validation
# --------------------------------------------------------------------------------------------


def local_train(
    model: nn.Module, state: State, client: Client, train_cfg: TrainConfig, *, seed: int, round_no: int
) -> tuple[State, float]:
    """Train ``model`` from ``state`` for ``local_epochs`` on ``client.train`` with a fresh SGD;
    return the new state (CPU copy) and the mean training BCE over the samples seen."""
    device = next(model.parameters()).device
    model.load_state_dict(state)
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=round_lr(train_cfg, round_no), momentum=train_cfg.momentum)
    loss_fn = nn.BCELoss()
    total, seen = 0.0, 0
    for epoch in range(train_cfg.local_epochs):
        # augmentation and dropout draw from the global RNG (main process) or the worker seeds
        torch.manual_seed(derive_seed(seed, "augment", client.stream, round_no, epoch))
        loader = make_loader(
            client.train,
            train_cfg.batch_size,
            shuffle=True,
            seed=derive_seed(seed, "shuffle", client.stream, round_no, epoch),
            num_workers=train_cfg.num_workers,
        )
        for x, y in progress(
            loader, desc=f"{client.name} round {round_no} epoch {epoch + 1}", leave=False, unit="batch"
        ):
            x, y = x.to(device), y.to(device).float()
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(x)
            seen += len(x)
    if seen == 0:
        raise ValueError(f"client {client.name!r}: empty training set")
    return clone_state(model), total / seen


def round_lr(train_cfg: TrainConfig, round_no: int) -> float:
    """Learning rate of round ``round_no`` (1-based): ``lr * lr_decay ** (round_no - 1)``; it
    depends on the round only, so every coalition follows the same rule and a resumed run too."""
    return train_cfg.lr * train_cfg.lr_decay ** (round_no - 1)


@torch.no_grad()
def validation_loss(model: nn.Module, state: State, data: Dataset, train_cfg: TrainConfig) -> float:
    """Mean BCE (over samples and labels) of ``state`` on ``data``, in eval mode."""
    device = next(model.parameters()).device
    model.load_state_dict(state)
    model.eval()
    loss_fn = nn.BCELoss(reduction="sum")
    total, count = 0.0, 0
    for x, y in make_loader(data, train_cfg.eval_batch_size, num_workers=train_cfg.num_workers):
        y = y.to(device).float()
        total += float(loss_fn(model(x.to(device)), y))
        count += y.numel()
    if count == 0:
        raise ValueError("empty validation set")
    return total / count
