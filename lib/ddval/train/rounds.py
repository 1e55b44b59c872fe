"""Round bookkeeping shared by FedAvg, swarm learning and the Flower server: what one communication
round produced (:class:`RoundRecord`), the early-stopping rule on the mean validation loss and the
outcome of a training (:class:`TrainingResult`).

Early stopping (the paper's rule): the global model's BCE loss on every client's validation set is
averaged over the clients; training stops when that average has not improved for ``patience`` rounds,
or after ``max_rounds``, and the best round's global model is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddval.train.aggregate import State, state_sha256


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

    @classmethod
    def merged_by_server(
        cls,
        round_no: int,
        local_states: dict[str, State],
        train_losses: dict[str, float],
        merged_state: State,
        val_losses: dict[str, float],
    ) -> RoundRecord:
        """The record of a FedAvg round (the server merged): hashes of every local and the merged state."""
        return cls(
            round=round_no,
            local_states=local_states,
            merged_state=merged_state,
            leader="server",
            train_losses=train_losses,
            val_losses=val_losses,
            local_hashes={name: state_sha256(state) for name, state in local_states.items()},
            merged_hash=state_sha256(merged_state),
        )

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
                name: {
                    "model_sha256": self.local_hashes[name],
                    "train_loss": self.train_losses[name],
                    "val_loss": self.val_losses[name],
                }
                for name in self.local_states
            },
        }


RoundFn = Callable[..., RoundRecord]


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
