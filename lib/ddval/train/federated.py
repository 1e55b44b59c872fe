"""Federated averaging (FedAvg) as in the paper, plus the round loop shared with swarm learning.

One communication round: every client starts from the global state, trains ``local_epochs`` with a
fresh SGD optimiser (BCE loss), and the server averages the clients' *full* state dicts (BatchNorm
running statistics included; unweighted as in the paper, or weighted by training-set size). The new
global model's BCE loss on every client's validation set is averaged over the clients; training stops
when that average has not improved for ``patience`` rounds, or after ``max_rounds``, and the best
round's global model is kept. The same learning rate is used for every coalition (the original code
halved it for single-client coalitions only; ddval does not).

Determinism: every random choice of a round (shuffling, augmentation, dropout) is seeded from
``(seed, client name, round, epoch)`` by :func:`derive_seed`, so a client's batches in round ``r``
are the same in every coalition it belongs to, and a run resumed from a checkpoint continues exactly
as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ddval.config import TrainConfig
from ddval.progress import progress
from ddval.store import atomic_path

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]
CHECKPOINT_FORMAT = "ddval-train-checkpoint/1"


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


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0, num_workers: int = 0) -> DataLoader:
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
        ("small_block_config", len(train_cfg.small_block_config) == 4 and min(train_cfg.small_block_config) >= 1, "4 positive block sizes"),
    ]
    for name, ok, expected in rules:
        if not ok:
            raise ValueError(f"train.{name} must be {expected}, got {getattr(train_cfg, name)!r}")


def resolve_device(train_cfg: TrainConfig) -> torch.device:
    """``train.device``, with ``"auto"`` meaning CUDA when available."""
    if train_cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(train_cfg.device)


# --------------------------------------------------------------------------------------------
# States: copy, average, hash
# --------------------------------------------------------------------------------------------


def clone_state(model: nn.Module) -> State:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def average_states(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> State:
    """Weighted mean of state dicts, key by key (all keys, BatchNorm buffers included).

    ``weights`` default to equal (the paper's unweighted FedAvg) and are normalised to sum to 1.
    The mean is accumulated in float64 and cast back to each entry's dtype; integer buffers such as
    BatchNorm's ``num_batches_tracked`` get the weighted mean rounded to the nearest integer.
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    w = np.ones(len(states)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(states),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(states)} non-negative numbers with a positive sum, got {weights}")
    w = w / w.sum()
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys:
            raise ValueError(f"state {i} has other keys than state 0")
    out: State = {}
    for key in keys:
        ref = states[0][key]
        acc = sum(float(wi) * s[key].detach().to("cpu", torch.float64) for wi, s in zip(w, states))
        out[key] = (acc.round() if not ref.is_floating_point() else acc).to(ref.dtype)
    return out


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's canonical serialisation: for every entry, in state-dict order, the
    UTF-8 key, the dtype name, the shape and the tensor's contiguous little-endian bytes.

    Unlike the bytes of ``torch.save`` (which depend on storage sharing) this depends on the values
    only, so every peer computes the same hash for the same model."""
    h = hashlib.sha256()
    for key, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Local training and validation
# --------------------------------------------------------------------------------------------


def local_train(model: nn.Module, state: State, client: Client, train_cfg: TrainConfig, *, seed: int, round_no: int) -> tuple[State, float]:
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
        for x, y in progress(loader, desc=f"{client.name} round {round_no} epoch {epoch + 1}", leave=False, unit="batch"):
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


# --------------------------------------------------------------------------------------------
# One round
# --------------------------------------------------------------------------------------------


@dataclass
class RoundRecord:
    """What happened in one round: every client's local state, train loss and hash, the merged
    (global) state and hash, who merged (``"server"`` for FedAvg, a peer for swarm learning) and
    every client's validation loss of the merged model."""

    round: int
    local_states: dict[str, State]
    merged_state: State
    leader: str
    train_losses: dict[str, float]
    val_losses: dict[str, float]
    local_hashes: dict[str, str]
    merged_hash: str

    @property
    def train_loss(self) -> float:
        return float(np.mean(list(self.train_losses.values())))

    @property
    def val_loss(self) -> float:
        # paper: unweighted mean over the clients of the global model's validation loss
        return float(np.mean(list(self.val_losses.values())))

    def summary(self) -> dict[str, Any]:
        """Plain data (no tensors) for the checkpoint history and the tables."""
        return {
            "round": self.round,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "leader": self.leader,
            "merged_sha256": self.merged_hash,
            "clients": {
                name: {"model_sha256": self.local_hashes[name], "train_loss": self.train_losses[name], "val_loss": self.val_losses[name]}
                for name in self.local_states
            },
        }


RoundFn = Callable[..., RoundRecord]


def fedavg_round(model: nn.Module, clients: Sequence[Client], global_state: State, round_no: int, train_cfg: TrainConfig, *, seed: int, weights: Sequence[float] | None) -> RoundRecord:
    """One FedAvg round: local training at every client, averaging at the server, validation."""
    local = {}
    train_losses = {}
    for client in clients:
        local[client.name], train_losses[client.name] = local_train(model, global_state, client, train_cfg, seed=seed, round_no=round_no)
    merged = average_states(list(local.values()), weights)
    val = {c.name: validation_loss(model, merged, c.val, train_cfg) for c in clients}
    return RoundRecord(
        round=round_no,
        local_states=local,
        merged_state=merged,
        leader="server",
        train_losses=train_losses,
        val_losses=val,
        local_hashes={k: state_sha256(v) for k, v in local.items()},
        merged_hash=state_sha256(merged),
    )


# --------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------


def best_round_index(val_losses: Sequence[float]) -> int:
    """Index of the lowest validation loss (the first one on ties)."""
    if not val_losses:
        raise ValueError("no rounds yet")
    return int(np.argmin(np.asarray(val_losses, dtype=float)))


def should_stop(val_losses: Sequence[float], patience: int, max_rounds: int) -> bool:
    """Stop after ``max_rounds`` rounds, or when the best round is ``patience`` rounds old (the
    paper's rule: the minimum is no longer among the last ``patience`` rounds)."""
    if len(val_losses) >= max_rounds:
        return True
    return bool(val_losses) and len(val_losses) - 1 - best_round_index(val_losses) >= patience


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, or was written with other parameters; the message names the file."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], params_hash: str) -> Path:
    """Atomically write ``payload`` (tensors and plain data) with its parameter hash. Written through
    a file object: given a path, ``torch.save`` names the archive's records after the file (here a
    random temporary name), and the same checkpoint would get different bytes, hence CIDs, each time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "params_hash": params_hash, **payload}, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, params_hash: str | None) -> dict[str, Any]:
    """Read a checkpoint of :func:`save_checkpoint`; a corrupt file or one written with other
    parameters (``params_hash`` differs; ``None`` skips the check) raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc}); delete it to retrain") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ddval training checkpoint (format {data.get('format') if isinstance(data, dict) else type(data).__name__!r}); delete it to retrain")
    if params_hash is not None and data.get("params_hash") != params_hash:
        raise CheckpointError(
            f"{path}: written by a different configuration (params hash {data.get('params_hash')}, expected {params_hash}); "
            "it will not be reused: delete it (or its coalition folder) to retrain, or use another results root"
        )
    return data


# --------------------------------------------------------------------------------------------
# The round loop
# --------------------------------------------------------------------------------------------


@dataclass
class TrainingResult:
    """Outcome of :func:`train_rounds`: the best round's global state, the last global state and the
    per-round history (``RoundRecord.summary()`` dicts)."""

    best_state: State
    best_round: int
    final_state: State
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_losses(self) -> list[float]:
        return [h["val_loss"] for h in self.history]


def train_rounds(
    model: nn.Module,
    clients: Sequence[Client],
    train_cfg: TrainConfig,
    *,
    seed: int,
    round_fn: RoundFn = fedavg_round,
    checkpoint: str | os.PathLike | None = None,
    params_hash: str = "",
    on_round: Callable[[RoundRecord], None] | None = None,
    desc: str = "rounds",
) -> TrainingResult:
    """Run communication rounds of ``round_fn`` from ``model``'s current state until early stopping.

    With ``checkpoint`` the loop state is saved atomically after every round and, when the file
    exists, training resumes from it (it must carry ``params_hash``). ``on_round`` sees every
    round's record (local and merged states) before the checkpoint is written, so what it stores
    is never behind the checkpoint.
    """
    if not clients:
        raise ValueError("train_rounds needs at least one client")
    check_train_config(train_cfg)
    names = [c.name for c in clients]
    weights = [c.n_train for c in clients] if train_cfg.weighted else None
    global_state = clone_state(model)
    best_state, history = global_state, []
    if checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, params_hash)
        if saved["clients"] != names:
            raise CheckpointError(f"{checkpoint}: written for clients {saved['clients']}, not {names}")
        global_state, best_state, history = saved["global_state"], saved["best_state"], saved["history"]
        log.info("%s: resuming after round %d", checkpoint, len(history))
    val_losses = [h["val_loss"] for h in history]
    bar = progress(total=train_cfg.max_rounds, initial=len(history), desc=desc, unit="round")
    try:
        while not should_stop(val_losses, train_cfg.patience, train_cfg.max_rounds):
            record = round_fn(model, clients, global_state, len(history) + 1, train_cfg, seed=seed, weights=weights)
            if not math.isfinite(record.val_loss):
                raise FloatingPointError(f"{desc}: round {record.round}: validation loss is {record.val_loss}; lower train.lr")
            global_state = record.merged_state
            history.append(record.summary())
            val_losses.append(record.val_loss)
            if best_round_index(val_losses) == len(val_losses) - 1:
                best_state = global_state
            if on_round is not None:
                on_round(record)
            if checkpoint is not None:
                save_checkpoint(checkpoint, {"clients": names, "global_state": global_state, "best_state": best_state, "history": history}, params_hash)
            bar.update(1)
            bar.set_postfix(val_loss=f"{record.val_loss:.4f}")
    finally:
        bar.close()
    model.load_state_dict(best_state)
    return TrainingResult(best_state=best_state, best_round=best_round_index(val_losses) + 1, final_state=global_state, history=history)


def train_fedavg(model: nn.Module, clients: Sequence[Client], train_cfg: TrainConfig, *, seed: int, **kwargs: Any) -> TrainingResult:
    """FedAvg training of ``model`` (its current state is the initial global model); see
    :func:`train_rounds` for ``checkpoint``, ``params_hash``, ``on_round`` and ``desc``."""
    return train_rounds(model, clients, train_cfg, seed=seed, round_fn=fedavg_round, **kwargs)
