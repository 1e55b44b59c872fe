"""Swarm learning: equal to FedAvg when configured alike, rotating leaders, verified exchanges."""

import dataclasses

import pytest
import torch

from ddval.train.aggregate import state_sha256
from ddval.train.fedavg import train_fedavg
from ddval.train.swarm import SwarmConsensusError, leader_of, publish, receive, train_swarm


@pytest.mark.parametrize("weighted", [False, True])
def test_swarm_equals_fedavg_when_configured_alike(weighted, cfg_factory, clients_factory, model_factory, same_state):
    cfg = cfg_factory(max_rounds=3, patience=3, weighted=weighted)
    clients = clients_factory(3)
    clients[2] = dataclasses.replace(
        clients[2], train=torch.utils.data.Subset(clients[2].train, range(12))
    )  # unequal sizes
    fed = train_fedavg(model_factory(cfg), clients, cfg, seed=0)
    swarm = train_swarm(model_factory(cfg), clients, cfg, seed=0)
    same_state(fed.final_state, swarm.final_state)
    same_state(fed.best_state, swarm.best_state)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "leader"} for h in hist]  # noqa: E731
    assert strip(fed.history) == strip(swarm.history)
    assert [h["leader"] for h in fed.history] == ["server"] * 3
    assert [h["leader"] for h in swarm.history] == ["c0", "c1", "c2"]


def test_round_records_carry_the_hashes_of_the_exchanged_models(cfg_factory, clients_factory, model_factory):
    cfg = cfg_factory(max_rounds=2)
    records = []
    train_swarm(model_factory(cfg), clients_factory(2), cfg, seed=0, on_round=records.append)
    for r in records:
        assert r.merged_hash == state_sha256(r.merged_state)
        assert r.local_hashes == {name: state_sha256(s) for name, s in r.local_states.items()}


def test_leader_rotates():
    assert [leader_of(["a", "b", "c"], r) for r in range(1, 7)] == ["a", "b", "c", "a", "b", "c"]


def test_a_tampered_model_is_rejected():
    state = {"w": torch.arange(4.0)}
    message = publish("a", state)
    assert torch.equal(receive(message)["w"], state["w"])
    forged = dataclasses.replace(message, sha256=state_sha256({"w": torch.zeros(4)}))
    with pytest.raises(SwarmConsensusError, match="does not match"):
        receive(forged)
