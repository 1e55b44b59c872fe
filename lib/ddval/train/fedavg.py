"""Federated averaging (FedAvg) as in the paper, and the round loop it shares with swarm learning.

One communication round: every client starts from the global state, trains ``local_epochs`` with a
fresh SGD optimiser (BCE loss, :func:`~ddval.train.local.local_train`), and the server averages the
clients' *full* state dicts (BatchNorm running statistics included; unweighted as in the paper, or
weighted by training-set size; :func:`~ddval.train.aggregate.average_states`). The new global model's
validation loss decides early stopping (:mod:`ddval.train.rounds`). The same learning rate is used for
every coalition (the original code halved it for single-client coalitions only; ddval does not).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ddval.config import TrainConfig
from ddval.progress import progress
from ddval.train.aggregate import State, average_states
from ddval.train.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ddval.train.local import Client, check_train_config, clone_state, local_train, validation_loss
from ddval.train.rounds import RoundFn, RoundRecord, TrainingResult, best_round_index, should_stop

log = logging.getLogger(__name__)


def fedavg_round(
    model: nn.Module,
    clients: Sequence[Client],
    global_state: State,
    round_no: int,
    train_cfg: TrainConfig,
    *,
    seed: int,
    weights: Sequence[float] | None,
) -> RoundRecord:
    """One FedAvg round: local training at every client, averaging at the server, validation."""
    local = {}
    train_losses = {}
    for client in clients:
        local[client.name], train_losses[client.name] = local_train(
            model, global_state, client, train_cfg, seed=seed, round_no=round_no
        )
    merged = average_states(list(local.values()), weights)
    val = {c.name: validation_loss(model, merged, c.val, train_cfg) for c in clients}
    return RoundRecord.merged_by_server(round_no, local, train_losses, merged, val)


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
                raise FloatingPointError(
                    f"{desc}: round {record.round}: validation loss is {record.val_loss}; lower train.lr"
                )
            global_state = record.merged_state
            history.append(record.summary())
            val_losses.append(record.val_loss)
            if best_round_index(val_losses) == len(val_losses) - 1:
                best_state = global_state
            if on_round is not None:
                on_round(record)
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint,
                    {"clients": names, "global_state": global_state, "best_state": best_state, "history": history},
                    params_hash,
                )
            bar.update(1)
            bar.set_postfix(val_loss=f"{record.val_loss:.4f}")
    finally:
        bar.close()
    model.load_state_dict(best_state)
    return TrainingResult(
        best_state=best_state, best_round=best_round_index(val_losses) + 1, final_state=global_state, history=history
    )


def train_fedavg(
    model: nn.Module, clients: Sequence[Client], train_cfg: TrainConfig, *, seed: int, **kwargs: Any
) -> TrainingResult:
    """FedAvg training of ``model`` (its current state is the initial global model); see
    :func:`train_rounds` for ``checkpoint``, ``params_hash``, ``on_round`` and ``desc``."""
    return train_rounds(model, clients, train_cfg, seed=seed, round_fn=fedavg_round, **kwargs)
