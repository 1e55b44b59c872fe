"""Swarm learning: the decentralised variant of FedAvg, without a server.

Every peer holds its own copy of the merged model. In each round the peers train locally, publish
their serialised models with the SHA-256 of the state (:func:`~ddval.train.aggregate.state_sha256`),
verify what they receive, and each merges all models in peer order. The round's leader (rotating:
peer ``(round - 1) mod n``) announces its merged hash; every peer checks that its own merge has the
same hash, so the merged model is provably identical at every peer. Each peer then reports its
validation loss of the merged model; the mean decides early stopping exactly as in FedAvg.

The merge is the same function as FedAvg's (:func:`~ddval.train.aggregate.average_states`), so a swarm
with the same peers, seeds and weighting gives the same models as FedAvg. The per-round hashes (what
each peer contributed, what was merged, who led) are what the token economy registers on chain.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ddval.config import TrainConfig
from ddval.train.aggregate import State, average_states, state_sha256
from ddval.train.fedavg import train_rounds
from ddval.train.local import Client, local_train, validation_loss
from ddval.train.rounds import RoundRecord, TrainingResult


class SwarmConsensusError(RuntimeError):
    """A peer received a model whose hash does not match, or merged a different model than the leader."""


@dataclass(frozen=True)
class Message:
    """A model published by a peer: its serialised state and the hash it claims."""

    sender: str
    sha256: str
    payload: bytes


def leader_of(peers: Sequence[str], round_no: int) -> str:
    """The merge leader of round ``round_no`` (1-based): the peers take turns in their order."""
    return peers[(round_no - 1) % len(peers)]


def publish(sender: str, state: State) -> Message:
    """Serialise ``state`` for the other peers, with its hash."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return Message(sender, state_sha256(state), buffer.getvalue())


def receive(message: Message) -> State:
    """Deserialise a peer's model and verify it against the hash it was published with."""
    state = torch.load(io.BytesIO(message.payload), map_location="cpu", weights_only=True)
    if state_sha256(state) != message.sha256:
        raise SwarmConsensusError(
            f"model from peer {message.sender!r} does not match its published hash {message.sha256}"
        )
    return state


def merge_at_peer(
    peer: str, own: State, inbox: dict[str, Message], order: Sequence[str], weights: Sequence[float] | None
) -> State:
    """What ``peer`` merges: its own state and the verified received ones, in peer ``order``."""
    states = [own if name == peer else receive(inbox[name]) for name in order]
    return average_states(states, weights)


def swarm_round(
    model: nn.Module,
    clients: Sequence[Client],
    global_state: State,
    round_no: int,
    train_cfg: TrainConfig,
    *,
    seed: int,
    weights: Sequence[float] | None,
) -> RoundRecord:
    """One swarm round: local training, exchange, merge at every peer, leader check, validation."""
    order = [c.name for c in clients]
    local: dict[str, State] = {}
    train_losses: dict[str, float] = {}
    for client in clients:  # every peer starts from its own copy of the last merged model
        local[client.name], train_losses[client.name] = local_train(
            model, global_state, client, train_cfg, seed=seed, round_no=round_no
        )
    messages = {name: publish(name, state) for name, state in local.items()}
    leader = leader_of(order, round_no)
    merged_by = {
        name: merge_at_peer(name, local[name], {k: m for k, m in messages.items() if k != name}, order, weights)
        for name in order
    }
    announced = state_sha256(merged_by[leader])
    for name, state in merged_by.items():
        if state_sha256(state) != announced:
            raise SwarmConsensusError(
                f"round {round_no}: peer {name!r} merged a different model than leader {leader!r}"
            )
    merged = merged_by[leader]
    val = {c.name: validation_loss(model, merged_by[c.name], c.val, train_cfg) for c in clients}
    return RoundRecord(
        round=round_no,
        local_states=local,
        merged_state=merged,
        leader=leader,
        train_losses=train_losses,
        val_losses=val,
        local_hashes={name: m.sha256 for name, m in messages.items()},
        merged_hash=announced,
    )


def train_swarm(
    model: nn.Module, clients: Sequence[Client], train_cfg: TrainConfig, *, seed: int, **kwargs: Any
) -> TrainingResult:
    """Swarm-learning training of ``model`` (its current state is every peer's starting model); the
    loop, early stopping, checkpoints and callbacks are those of
    :func:`~ddval.train.fedavg.train_rounds`."""
    return train_rounds(model, clients, train_cfg, seed=seed, round_fn=swarm_round, **kwargs)
