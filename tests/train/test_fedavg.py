"""FedAvg on tiny in-memory clients: equivalences, early stopping, resume, determinism, checkpoints."""

import pytest
import torch

from ddval.train.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ddval.train.fedavg import train_fedavg, train_rounds
from ddval.train.local import Client, clone_state
from ddval.train.rounds import should_stop


def test_identical_clients_equal_single_client_training(cfg_factory, data_factory, model_factory, same_state):
    cfg = cfg_factory(max_rounds=3, patience=3)
    train, val = data_factory(20, seed=0), data_factory(8, seed=1)
    single = train_fedavg(model_factory(cfg), [Client("solo", train, val, seed_key="k")], cfg, seed=0)
    triple = train_fedavg(model_factory(cfg), [Client(n, train, val, seed_key="k") for n in "abc"], cfg, seed=0)
    assert len(single.history) == len(triple.history) == 3
    same_state(single.final_state, triple.final_state)
    assert [h["val_loss"] for h in single.history] == [h["val_loss"] for h in triple.history]


def test_different_clients_do_not_collapse(cfg_factory, clients_factory, model_factory):
    cfg = cfg_factory(max_rounds=2, patience=2)
    res = train_fedavg(model_factory(cfg), clients_factory(3), cfg, seed=0)
    hashes = res.history[0]["clients"]
    assert len({c["model_sha256"] for c in hashes.values()}) == 3  # three different local models
    assert res.history[0]["merged_sha256"] not in {c["model_sha256"] for c in hashes.values()}


def test_weighted_round_is_the_weighted_mean_of_local_models(cfg_factory, clients_factory, model_factory):
    cfg = cfg_factory(max_rounds=1, weighted=True)
    clients = [
        Client(c.name, torch.utils.data.Subset(c.train, range(8 + 6 * i)), c.val)
        for i, c in enumerate(clients_factory(3))
    ]
    seen = []
    res = train_fedavg(model_factory(cfg), clients, cfg, seed=0, on_round=seen.append)
    locals_ = seen[0].local_states
    sizes = torch.tensor([8.0, 14.0, 20.0], dtype=torch.float64)
    key = "classifier.0.weight"
    expected = sum(w * locals_[c.name][key].double() for w, c in zip(sizes / sizes.sum(), clients)).float()
    torch.testing.assert_close(res.final_state[key], expected, rtol=0, atol=1e-6)
    unweighted = sum(locals_[c.name][key].double() for c in clients).float() / 3
    assert not torch.allclose(res.final_state[key], unweighted, atol=1e-6)


@pytest.mark.parametrize(
    "losses, patience, max_rounds, stop",
    [
        ([], 2, 5, False),
        ([1.0, 0.9], 2, 5, False),
        ([1.0, 0.9, 0.95], 2, 5, False),
        ([1.0, 0.9, 0.95, 0.97], 2, 5, True),  # best is 2 rounds old
        ([1.0, 0.9, 0.95, 0.8], 2, 5, False),
        ([1.0, 0.9, 0.8, 0.7, 0.6], 2, 5, True),  # the cap
        ([0.5, 0.5, 0.5], 2, 9, True),  # a tie is no improvement
    ],
)
def test_should_stop(losses, patience, max_rounds, stop):
    assert should_stop(losses, patience, max_rounds) is stop


def test_early_stopping_keeps_the_best_round(cfg_factory, clients_factory, model_factory):
    # lr so large that the validation loss gets worse after the first rounds: training must stop
    # `patience` rounds after its best round, well before the cap, and return the best round's model
    cfg = cfg_factory(max_rounds=30, patience=2, lr=3.0)
    model = model_factory(cfg)
    res = train_fedavg(model, clients_factory(2), cfg, seed=0)
    losses = res.val_losses
    assert len(losses) < 30
    assert res.best_round == losses.index(min(losses)) + 1
    assert len(losses) == res.best_round + 2
    best_hash = res.history[res.best_round - 1]["merged_sha256"]
    from ddval.train.aggregate import state_sha256

    assert state_sha256(res.best_state) == best_hash
    assert state_sha256(clone_state(model)) == best_hash  # the model is left at its best state


class Killed(Exception):
    pass


def test_resume_after_a_killed_run_equals_an_uninterrupted_run(
    tmp_path, cfg_factory, clients_factory, model_factory, same_state
):
    cfg = cfg_factory(max_rounds=5, patience=5)
    clients = clients_factory(2)
    full = train_fedavg(model_factory(cfg), clients, cfg, seed=3, checkpoint=tmp_path / "full.pt", params_hash="h")

    def kill_after_two(record):
        if record.round == 2:
            raise Killed  # the process dies before round 2's checkpoint is written

    ckpt = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        train_fedavg(
            model_factory(cfg), clients, cfg, seed=3, checkpoint=ckpt, params_hash="h", on_round=kill_after_two
        )
    assert len(load_checkpoint(ckpt, "h")["history"]) == 1
    rounds_run = []
    resumed = train_fedavg(
        model_factory(cfg, seed=99),
        clients,
        cfg,
        seed=3,
        checkpoint=ckpt,
        params_hash="h",
        on_round=lambda r: rounds_run.append(r.round),
    )
    assert rounds_run == [2, 3, 4, 5]  # round 1 came from the checkpoint
    same_state(full.final_state, resumed.final_state)
    same_state(full.best_state, resumed.best_state)
    assert full.history == resumed.history


def test_training_is_deterministic(cfg_factory, clients_factory, model_factory, same_state):
    cfg = cfg_factory(max_rounds=2)
    a = train_fedavg(model_factory(cfg), clients_factory(2), cfg, seed=5)
    b = train_fedavg(model_factory(cfg), clients_factory(2), cfg, seed=5)
    c = train_fedavg(model_factory(cfg), clients_factory(2), cfg, seed=6)
    same_state(a.final_state, b.final_state)
    assert a.history == b.history
    assert a.history[0]["merged_sha256"] != c.history[0]["merged_sha256"]


def test_a_client_draws_the_same_batches_in_every_coalition(cfg_factory, clients_factory, model_factory):
    cfg = cfg_factory(max_rounds=1)
    clients = clients_factory(3)
    alone = train_fedavg(model_factory(cfg), clients[1:2], cfg, seed=0)
    together = train_fedavg(model_factory(cfg), clients, cfg, seed=0)
    # round 1 starts from the same initial model, so c1's local model is the same in both
    assert alone.history[0]["clients"]["c1"]["model_sha256"] == together.history[0]["clients"]["c1"]["model_sha256"]


def test_corrupt_checkpoint_is_an_error(tmp_path, cfg_factory, clients_factory, model_factory):
    cfg = cfg_factory(max_rounds=1)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_fedavg(model_factory(cfg), clients_factory(1), cfg, seed=0, checkpoint=ckpt, params_hash="h")
    save_checkpoint(ckpt, {"clients": ["c0"], "global_state": {}, "best_state": {}, "history": []}, "h")
    ckpt.write_bytes(ckpt.read_bytes()[:-40])  # truncated, as after a full disk
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt, "h")
    torch.save({"some": "thing"}, ckpt)
    with pytest.raises(CheckpointError, match="not a ddval training checkpoint"):
        load_checkpoint(ckpt, "h")


def test_checkpoint_of_another_config_or_other_clients_is_an_error(
    tmp_path, cfg_factory, clients_factory, model_factory
):
    cfg = cfg_factory(max_rounds=1)
    ckpt = tmp_path / "checkpoint.pt"
    train_fedavg(model_factory(cfg), clients_factory(2), cfg, seed=0, checkpoint=ckpt, params_hash="old")
    with pytest.raises(CheckpointError, match="different configuration"):
        train_fedavg(
            model_factory(cfg),
            clients_factory(2),
            cfg_factory(max_rounds=2),
            seed=0,
            checkpoint=ckpt,
            params_hash="new",
        )
    with pytest.raises(CheckpointError, match="clients"):
        train_rounds(
            model_factory(cfg),
            clients_factory(3),
            cfg_factory(max_rounds=2),
            seed=0,
            checkpoint=ckpt,
            params_hash="old",
        )


def test_learning_rate_rule_is_the_same_for_every_coalition(cfg_factory, clients_factory, model_factory):
    from ddval.train.local import round_lr

    cfg = cfg_factory(lr=0.2, lr_decay=0.5)
    assert [round_lr(cfg, r) for r in (1, 2, 3)] == [0.2, 0.1, 0.05]
    assert round_lr(cfg_factory(lr=0.2), 50) == 0.2  # paper: constant
    # a single-client coalition and a three-client one take the same steps in round 1
    alone = train_fedavg(model_factory(cfg), clients_factory(3)[:1], cfg_factory(max_rounds=1), seed=0)
    together = train_fedavg(model_factory(cfg), clients_factory(3), cfg_factory(max_rounds=1), seed=0)
    assert alone.history[0]["clients"]["c0"]["model_sha256"] == together.history[0]["clients"]["c0"]["model_sha256"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("patience", 0),
        ("lr", 0.0),
        ("lr_decay", 1.5),
        ("momentum", 1.0),
        ("batch_size", 0),
        ("small_block_config", (1, 1, 1)),
    ],
)
def test_bad_train_settings_are_named(field, value, cfg_factory, clients_factory, model_factory):
    with pytest.raises(ValueError, match=f"train.{field}"):
        train_fedavg(model_factory(cfg_factory()), clients_factory(1), cfg_factory(**{field: value}), seed=0)


def test_the_same_checkpoint_has_the_same_bytes_wherever_it_is_written(tmp_path):
    """Checkpoints are pinned to IPFS by content: equal payloads must give equal files (and CIDs)."""
    from ddval.train.checkpoints import save_checkpoint

    payload = {"state": {"w": torch.arange(6, dtype=torch.float32)}, "round": 1}
    a = save_checkpoint(tmp_path / "a" / "nih.pt", payload, "h")
    b = save_checkpoint(tmp_path / "b" / "other.pt", payload, "h")
    assert a.read_bytes() == b.read_bytes()
