"""OR / round-model reconstruction from recorded rounds (BatchNorm buffers included) and the
utility of a state."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from tiny_training import TINY_TRAIN, tiny_setting_data

from ddval import store
from ddval.config import load_config
from ddval.layout import coalition_dir
from ddval.train import stage
from ddval.train.results import RoundHistory
from ddval.train.stage import train_coalition
from ddval.train.aggregate import average_states
from ddval.train.checkpoints import load_checkpoint
from ddval.train.metrics import coalition_utility
from ddval.train.models import build_model
from ddval.valuation.reconstruct import UtilityEvaluator, accumulated_updates, or_state, round_state

GRAND = ("nih", "chexpert", "mimic")


@dataclass
class FakeHistory:
    """The RoundHistory interface over in-memory states."""

    globals_: list
    locals_: list  # locals_[r - 1][name]
    institutions: tuple
    best_round: int
    weights: dict | None = None

    def global_state(self, r):
        return self.globals_[r]

    def local_state(self, r, name):
        return self.locals_[r - 1][name]

    def local_states(self, r):
        return dict(self.locals_[r - 1])

    def aggregation_weights(self, members):
        return None if self.weights is None else [self.weights[m] for m in members]


def _bn_state(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    model(torch.randn(16, 3) * (1 + seed))  # move the running statistics
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_reconstruction_math_includes_batchnorm_buffers():
    names = ("a", "b", "c")
    g0 = _bn_state(0)
    locals_, globals_ = [], [g0]
    for r in (1, 2):
        loc = {n: _bn_state(10 * r + i) for i, n in enumerate(names)}
        locals_.append(loc)
        globals_.append(average_states(list(loc.values())))
    hist = FakeHistory(globals_, locals_, names, best_round=2)
    updates = accumulated_updates(hist)
    for members in (("a",), ("a", "c"), names):
        state = or_state(hist, members, updates)
        for key, ref in g0.items():
            expected = g0[key].double() + sum(
                sum(locals_[r - 1][m][key].double() - globals_[r - 1][key].double() for m in members) / len(members)
                for r in (1, 2)
            )
            if ref.is_floating_point():
                torch.testing.assert_close(state[key], expected.to(ref.dtype), rtol=0, atol=1e-6)
            else:
                assert torch.equal(state[key], expected.round().to(ref.dtype))
        # the BatchNorm running statistics are reconstructed, not left at the initial values
        assert not torch.equal(state["1.running_mean"], g0["1.running_mean"])
        assert not torch.equal(state["1.running_var"], g0["1.running_var"])
    # the grand coalition telescopes to the recorded global model
    grand = or_state(hist, names, updates)
    for key in g0:
        torch.testing.assert_close(grand[key], globals_[2][key], rtol=1e-5, atol=1e-6)
    # round models: the FedAvg merge of the members' local models of that round
    assert all(torch.equal(round_state(hist, 2, names)[k], globals_[2][k]) for k in g0)
    assert all(torch.equal(round_state(hist, 2, ())[k], globals_[1][k]) for k in g0)
    assert all(torch.equal(round_state(hist, 1, ("b",))[k], locals_[0]["b"][k]) for k in g0)


def test_weighted_training_is_reconstructed_with_its_weights():
    names = ("a", "b")
    g0 = _bn_state(0)
    loc = {"a": _bn_state(1), "b": _bn_state(2)}
    hist = FakeHistory(
        [g0, average_states([loc["a"], loc["b"]], [1.0, 3.0])], [loc], names, 1, weights={"a": 1.0, "b": 3.0}
    )
    state = or_state(hist, names, accumulated_updates(hist))
    expected = (
        g0["0.weight"].double()
        + 0.25 * (loc["a"]["0.weight"].double() - g0["0.weight"].double())
        + 0.75 * (loc["b"]["0.weight"].double() - g0["0.weight"].double())
    )
    torch.testing.assert_close(state["0.weight"], expected.float())


@pytest.fixture
def trained(tmp_path, data_factory_local):
    cfg = load_config("demo", {"train": TINY_TRAIN})
    data = data_factory_local
    train_coalition(cfg, 0, "noniid", GRAND, data, root=tmp_path)
    cdir = coalition_dir(cfg, 0, "noniid", GRAND, root=tmp_path)
    curve = pd.read_csv(cdir / "curve.csv")
    h = store.param_hash(stage.coalition_params(cfg, 0, "noniid", GRAND, data.partition))
    hist = RoundHistory(
        cdir, h, GRAND, {n: 16 for n in GRAND}, False, 3, int(curve.loc[curve["is_best"], "round"].iloc[0])
    )
    return cfg, data, hist, load_checkpoint(cdir / "best.pt", h)["state"]


@pytest.fixture
def data_factory_local():
    return tiny_setting_data(GRAND)


def _tensors(data):
    return {
        n: (np.array([f"{n}-{i}" for i in range(len(d))]), d.tensors[0], d.tensors[1].numpy())
        for n, d in data.test.items()
    }


def test_or_reconstruction_of_the_grand_coalition_is_the_real_model(trained):
    cfg, data, hist, best = trained
    grand = or_state(hist, GRAND, accumulated_updates(hist))
    for key, ref in best.items():
        torch.testing.assert_close(grand[key], ref, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(round_state(hist, hist.best_round, GRAND)[k], best[k]) for k in best)
    model = build_model(cfg.train)
    ev = UtilityEvaluator(model, _tensors(data))
    model.load_state_dict(best)
    real = coalition_utility(model, data.test, batch_size=16).value
    assert ev(grand) == pytest.approx(real, abs=1e-6)
    assert ev(best) == pytest.approx(real, abs=1e-12) and ev.n_evals == 2


def test_evaluator_forwards_identical_test_sets_once_and_matches_the_training_utility(trained):
    cfg, data, hist, best = trained
    model = build_model(cfg.train)
    model.load_state_dict(best)
    shared = data.test["nih"]
    sets = {"x": shared, "y": shared, "z": data.test["mimic"]}
    tensors = {"x": _tensors(data)["nih"], "y": _tensors(data)["nih"], "z": _tensors(data)["mimic"]}
    ev = UtilityEvaluator(build_model(cfg.train), tensors)
    assert len(ev._images) == 20  # the duplicated set is forwarded once
    assert ev(best) == pytest.approx(coalition_utility(model, sets, batch_size=16).value, abs=1e-12)


class CountingEvaluator:
    """A stand-in utility: a deterministic number from the state, counting the calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, state):
        self.calls += 1
        return float(state["0.weight"].double().sum())


def _history(n_rounds=3, names=("a", "b", "c")):
    globals_, locals_ = [_bn_state(0)], []
    for r in range(1, n_rounds + 1):
        loc = {n: _bn_state(10 * r + i) for i, n in enumerate(names)}
        locals_.append(loc)
        globals_.append(average_states(list(loc.values())))
    return FakeHistory(globals_, locals_, names, best_round=n_rounds)


def test_model_games_score_each_model_once_and_charge_every_method_its_own_cost():
    from ddval.valuation.baselines import GTGOptions, gtg_values, lambda_mr_values, or_values
    from ddval.valuation.reconstruct import ModelGames

    hist = _history()
    ev = CountingEvaluator()
    games = ModelGames(hist, ev)
    lam = lambda_mr_values(games, list(hist.institutions), 0.5)
    # 3 rounds x 8 coalitions, but a global model ends one round and starts the next: 4 + 3 x 6
    assert lam.n_utility_evals == ev.calls == 4 + 3 * 6
    gtg = gtg_values(
        games,
        list(hist.institutions),
        GTGOptions(eps=0.0, round_trunc=-1.0, max_permutations=12, min_permutations=12),
        seed=0,
    )
    assert ev.calls == 22 and gtg.n_utility_evals == 22  # all shared with λ-MR, none scored again
    assert gtg.wall_time_s >= sum(games._seconds.values()) * 0.999  # charged for every model it used
    orr = or_values(games, list(hist.institutions))
    assert orr.n_utility_evals == 7 and ev.calls == 29
    # the values are those of the plain computation
    u = {
        frozenset(s): ev(round_state(hist, 2, sorted(s, key="abc".index)))
        for s in [(), ("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    }
    assert lam.details["round_games"][1] == pytest.approx(u)


def test_rank_auroc_equals_the_training_metric():
    from hypothesis import given, settings, strategies as st

    from ddval.train.metrics import per_label_auroc
    from ddval.valuation.reconstruct import rank_auroc

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 60), st.integers(0, 2**31 - 1), st.booleans())
    def check(n, seed, ties):
        rng = np.random.default_rng(seed)
        y = (rng.random((n, 8)) < rng.random(8)).astype(float)
        s = rng.integers(0, 4, (n, 8)).astype(float) if ties else rng.normal(size=(n, 8))
        np.testing.assert_allclose(rank_auroc(y, s), per_label_auroc(y, s), rtol=0, atol=1e-12, equal_nan=True)

    check()
    with pytest.raises(ValueError, match="0/1"):
        rank_auroc(np.full((3, 8), 2.0), np.zeros((3, 8)))


def test_or_batchnorm_statistics_from_updates_grand_or_initial_model():
    hist = _history(n_rounds=2)
    updates = accumulated_updates(hist)
    rebuilt = or_state(hist, ("a",), updates)
    grand = or_state(hist, ("a",), updates, batchnorm="grand")
    initial = or_state(hist, ("a",), updates, batchnorm="initial")
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(grand[key], hist.global_state(2)[key]) and torch.equal(
            initial[key], hist.global_state(0)[key]
        )
    for key in ("1.running_mean", "1.running_var"):  # (the batch counter is the same in every state here)
        assert not torch.equal(rebuilt[key], grand[key])
    for key in (
        "0.weight",
        "1.weight",
        "1.bias",
    ):  # learnt weights, BatchNorm's included, are reconstructed in all three
        assert torch.equal(rebuilt[key], grand[key]) and torch.equal(rebuilt[key], initial[key])
    with pytest.raises(ValueError, match="or_batchnorm"):
        or_state(hist, ("a",), updates, batchnorm="frozen")


def test_a_model_with_non_finite_outputs_is_worth_chance():
    from ddval.valuation.reconstruct import UtilityEvaluator

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Sigmoid())
    x = torch.randn(6, 1, 2, 2)
    y = np.array([[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1]] * 3, dtype=np.float32)
    ev = UtilityEvaluator(model, {"a": (np.arange(6), x, y)})
    good = {k: v.clone() for k, v in model.state_dict().items()}
    assert 0.0 <= ev(good) <= 1.0 and ev.n_nonfinite == 0
    bad = dict(good, **{"1.weight": torch.full_like(good["1.weight"], float("nan"))})
    assert ev(bad) == 0.5 and ev.n_nonfinite == 1
