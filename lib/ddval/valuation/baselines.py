"""Institution-level baselines computed from the grand coalition's recorded training (no retraining).

Every method returns a :class:`MethodResult`: the value of every institution, the wall time and the
number of utility evaluations (a model or ensemble scored on the test sets) it needed. OR, λ-MR and
GTG-Shapley score models through one :class:`~ddval.valuation.reconstruct.ModelGames` per setting:
a model is scored once even when several methods (or rounds) need it, and every method is charged
the measured cost of every model it asks for, so its wall time is what it would take on its own.

* ``exact`` — the ground truth: exact Shapley values of the utilities of the *retrained*
  coalitions (training stage), ``v(∅) = 0.5``. Its cost is the 2^n − 1 trainings.
* ``or`` — OR (Song et al. 2019): exact Shapley values of the utilities of the coalition models
  reconstructed from the recorded updates (:func:`ddval.valuation.reconstruct.or_state`, BatchNorm
  running statistics rebuilt like every other entry by default; ``or_batchnorm.csv`` shows OR with the
  grand model's and the initial model's statistics instead). The grand coalition's reconstruction is the
  real model (up to float rounding).
* ``lambda_mr`` — λ-MR (Song et al. 2019): in every round ``r = 1 … r*`` the exact Shapley values
  ``φ^r`` of the round game ``v_r(S) = U(θ_S^r)`` (round models built from ``G^{r−1}`` and the
  members' updates of round ``r``; ``v_r(∅) = U(G^{r−1})``), combined as the λ-discounted sum
  ``φ = Σ_r λ^{r−1} φ^r``. Normalisation: none beyond that (round 1 has weight 1).
* ``mr`` — MR (Song et al. 2019): λ-MR with λ = 1, every round counted fully; its values add up to
  ``U(G^{r*}) − U(G^0)``. With few institutions and rounds whose gains shrink, λ < 1 keeps mostly the
  first rounds' values, where the models are barely trained (the demo's λ = 0.5 scored far below MR);
  the stage writes λ-MR's similarity for a grid of λ (``lambda_sensitivity.csv``).
* ``gtg`` — GTG-Shapley (Liu et al. 2022) on the same round games: a round whose gain
  ``|U(G^r) − U(G^{r−1})|`` is at most ``gtg_round_trunc`` is skipped (between-round truncation);
  otherwise guided Monte-Carlo permutations (every institution first in turn, the rest in seeded
  random order), where a permutation stops evaluating once the remaining gain
  ``|U(G^r) − v(prefix)|`` is below ``gtg_eps`` (within-round truncation), until the running means
  converge (mean relative change over the last ``gtg_converge_window`` permutations below
  ``gtg_converge_tol``, after at least ``gtg_min_permutations``) or ``gtg_max_permutations`` are
  drawn. Utilities of coalitions already scored in a round are reused. ``φ = Σ_r φ^r``.
* ``safe`` — SaFE / LR ensemble (Kumar et al. 2022; the paper's "LR"): every institution fits a
  linear model on its own deep features; a coalition's utility is the AUROC utility of the
  **average of its members' predictions** (the original used the first member's predictions for
  every member); the grand coalition's utility is the real FL model's (as the paper); exact Shapley.
  Model: standardised features → ridge regression on the 8 0/1 labels at once, its penalty chosen
  by efficient leave-one-out (``RidgeCV``). Why: the original's ordinary least squares on 65,536
  features and 28,000 scans is under-determined (infinitely many exact fits; the returned one is
  arbitrary and noisy); the ridge penalty makes it well-posed with a closed-form, multi-output
  solve, and AUROC only needs a ranking, which a linear score provides (logistic regression would
  need 8 iterative fits for the same ranking purpose).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ddval.train.metrics import mean_auroc
from ddval.valuation.reconstruct import rank_auroc

Coalition = frozenset


@dataclass(frozen=True)
class MethodResult:
    """Values of one method, indexed by institution, with its cost."""

    method: str
    values: pd.Series
    wall_time_s: float
    n_utility_evals: int
    details: dict = field(default_factory=dict)

    def table(self, setting: str, seed: int) -> pd.DataFrame:
        """Rows of ``institution_values.csv``: values and the number of utility evaluations, no timing
        (the tables must be identical run to run; timings go to ``timings.json``)."""
        return pd.DataFrame(
            {
                "setting": setting,
                "seed": seed,
                "method": self.method,
                "institution": list(self.values.index),
                "value": self.values.to_numpy(dtype=float),
                "n_utility_evals": self.n_utility_evals,
            }
        )


def coalitions(players: Sequence[str]) -> list[Coalition]:
    """Every coalition of ``players``, the empty one first, by size."""
    return [frozenset(c) for k in range(len(players) + 1) for c in itertools.combinations(players, k)]


def shapley(utility: Mapping[Coalition, float], players: Sequence[str]) -> pd.Series:
    """Exact Shapley values (``ddval.valuation.shapley.exact_shapley``) as a Series in player order."""
    from ddval.valuation.shapley import exact_shapley

    values = exact_shapley(dict(utility), list(players))
    return pd.Series([float(values[p]) for p in players], index=list(players), name="value")


# --------------------------------------------------------------------------------------------
# Games (pure: tested on toy games)
# --------------------------------------------------------------------------------------------


def lambda_mr(round_games: Sequence[Mapping[Coalition, float]], players: Sequence[str], lam: float) -> pd.Series:
    """``Σ_r λ^{r−1} φ^r`` with ``φ^r`` the exact Shapley values of round game ``r`` (1-based)."""
    if not 0 < lam <= 1:
        raise ValueError(f"valuation.lambda_mr must be in (0, 1], got {lam}")
    total = pd.Series(0.0, index=list(players), name="value")
    for r, game in enumerate(round_games):
        total += lam**r * shapley(game, players)
    return total


@dataclass(frozen=True)
class GTGOptions:
    """GTG-Shapley's knobs (``valuation.gtg_*``)."""

    eps: float = 0.001
    round_trunc: float = 0.01
    max_permutations: int = 50
    min_permutations: int = 30
    converge_tol: float = 0.05
    converge_window: int = 10


def gtg_round(
    utility: Callable[[Coalition], float], players: Sequence[str], options: GTGOptions, rng: np.random.Generator
) -> tuple[pd.Series, int, int]:
    """GTG-Shapley values of one round game (``utility(∅)`` = the previous global model,
    ``utility(all)`` = this round's global model), the number of distinct coalitions scored and the
    number of permutations drawn. Between-round truncation: a round whose gain is at most
    ``round_trunc`` gives zeros (and draws no permutation)."""
    players = list(players)
    n = len(players)
    cache: dict[Coalition, float] = {}

    def v(s: Coalition) -> float:
        if s not in cache:
            cache[s] = float(utility(s))
        return cache[s]

    start, full = v(frozenset()), v(frozenset(players))
    if abs(full - start) <= options.round_trunc:
        return pd.Series(0.0, index=players, name="value"), len(cache), 0
    records: list[np.ndarray] = []
    while len(records) < options.max_permutations:
        lead = players[len(records) % n]  # guided: every player leads in turn
        rest = [p for p in players if p != lead]
        order = [lead] + [rest[i] for i in rng.permutation(len(rest))]
        marginal = np.zeros(n)
        prev, prefix = start, frozenset()
        for p in order:
            prefix = prefix | {p}
            # within-round truncation: the rest of the permutation cannot add more than eps
            cur = v(prefix) if abs(full - prev) >= options.eps else prev
            marginal[players.index(p)] = cur - prev
            prev = cur
        records.append(marginal)
        if _converged(records, options):
            break
    return pd.Series(np.mean(records, axis=0), index=players, name="value"), len(cache), len(records)


def _converged(records: list[np.ndarray], options: GTGOptions) -> bool:
    if len(records) < max(options.min_permutations, options.converge_window + 1):
        return False
    means = np.cumsum(records, axis=0) / np.arange(1, len(records) + 1)[:, None]
    last = means[-options.converge_window :]
    rel = np.mean(np.abs(last - means[-1]) / (np.abs(means[-1]) + 1e-12), axis=1)
    return bool(rel.max() < options.converge_tol)


def gtg_shapley(
    round_utilities: Sequence[Callable[[Coalition], float]], players: Sequence[str], options: GTGOptions, seed: int
) -> tuple[pd.Series, int, list[pd.Series]]:
    """GTG-Shapley over rounds: ``Σ_r φ^r``; returns (values, coalitions scored, per-round values)."""
    rng = np.random.default_rng([int(seed), 0x67_74_67])  # "gtg"
    total = pd.Series(0.0, index=list(players), name="value")
    evals, per_round = 0, []
    for utility in round_utilities:
        values, n, _ = gtg_round(utility, players, options, rng)
        total += values
        evals += n
        per_round.append(values)
    return total, evals, per_round


# --------------------------------------------------------------------------------------------
# Methods on a trained setting
# --------------------------------------------------------------------------------------------


def exact_values(
    utilities: Mapping[Coalition, float], players: Sequence[str], train_time_s: float = float("nan")
) -> MethodResult:
    """The ground truth from the retrained coalitions' utilities (``v(∅)`` included)."""
    # its cost is the 2^n − 1 trainings (``train_time_s`` when known), not this weighted sum
    return MethodResult(
        "exact", shapley(utilities, players), train_time_s, 2 ** len(players) - 1, {"utilities": dict(utilities)}
    )


def or_values(games, players: Sequence[str], batchnorm: str = "rebuilt") -> MethodResult:
    """OR: exact Shapley over the utilities of the reconstructed coalition models
    (``games``: :class:`ddval.valuation.reconstruct.ModelGames`; ``batchnorm``: where the BatchNorm
    running statistics come from, :data:`ddval.valuation.reconstruct.OR_BATCHNORM`)."""
    with games.method_cost() as cost:
        games.prepare_or(players)
        utility = {frozenset(): 0.5}
        for s in coalitions(players)[1:]:
            utility[s] = games.or_utility(sorted(s), batchnorm)
        values = shapley(utility, players)
    return MethodResult(
        "or", values, cost.seconds, cost.n_evals, {"utilities": utility, "eval_seconds": cost.eval_seconds}
    )


def _round_utility(games, round_no: int) -> Callable[[Coalition], float]:
    """``S ↦ U(θ_S^r)`` for round ``round_no``."""
    return lambda s: games.round_utility(round_no, sorted(s))


def round_games(games, players: Sequence[str]) -> list[dict[Coalition, float]]:
    """The round games ``v_r`` of rounds 1 … r*: every coalition's round model scored (λ-MR, MR)."""
    out = []
    for r in range(1, games.history.best_round + 1):
        u = _round_utility(games, r)
        out.append({s: u(s) for s in coalitions(players)})
    return out


def lambda_mr_values(games, players: Sequence[str], lam: float, name: str = "lambda_mr") -> MethodResult:
    """λ-MR over rounds 1 … r* (every coalition scored in every round); ``lam = 1`` is MR (``name="mr"``)."""
    with games.method_cost() as cost:
        games_r = round_games(games, players)
        values = lambda_mr(games_r, players, lam)
    return MethodResult(
        name, values, cost.seconds, cost.n_evals, {"round_games": games_r, "eval_seconds": cost.eval_seconds}
    )


def gtg_values(games, players: Sequence[str], options: GTGOptions, seed: int) -> MethodResult:
    """GTG-Shapley over rounds 1 … r*."""
    with games.method_cost() as cost:
        rounds = [_round_utility(games, r) for r in range(1, games.history.best_round + 1)]
        values, _, per_round = gtg_shapley(rounds, players, options, seed)
    return MethodResult(
        "gtg", values, cost.seconds, cost.n_evals, {"per_round": per_round, "eval_seconds": cost.eval_seconds}
    )


# --------------------------------------------------------------------------------------------
# SaFE / LR ensemble
# --------------------------------------------------------------------------------------------


def fit_local_model(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]):
    """An institution's linear model on its own features: standardise → ``RidgeCV`` (all labels)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.asarray(alphas, dtype=float))).fit(
        np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    )


def ensemble_utility(
    predictions: Mapping[str, Sequence[np.ndarray]],
    members: Sequence[str],
    test_labels: Sequence[np.ndarray],
    multiplicity: Sequence[int] | None = None,
) -> float:
    """Utility of the ensemble of ``members``: on every test set the **mean of the members'
    predictions**, scored as the training stage (macro-AUROC per set, mean over the sets, a set
    counted ``multiplicity[t]`` times). ``predictions[m][t]`` is member ``m``'s ``(n_t, 8)``
    prediction on test set ``t``."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    per_set = np.array(
        [
            mean_auroc(rank_auroc(y, np.mean([predictions[m][t] for m in members], axis=0)))
            for t, y in enumerate(test_labels)
        ]
    )
    weights = np.ones(len(per_set)) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    ok = ~np.isnan(per_set)
    return float(np.sum(per_set[ok] * weights[ok]) / np.sum(weights[ok])) if ok.any() else float("nan")


def safe_values(feats: Mapping, players: Sequence[str], grand_utility: float, alphas: Sequence[float]) -> MethodResult:
    """SaFE: exact Shapley over ensemble utilities; the grand coalition's is the FL model's."""
    start = time.perf_counter()
    test_sets = _distinct_test_sets(feats, players)
    predictions = {}
    for p in players:
        model = fit_local_model(feats[p].train.x, feats[p].train.y, alphas)
        predictions[p] = [model.predict(np.asarray(x, dtype=np.float64)) for x, _, _ in test_sets]
    labels = [y for _, y, _ in test_sets]
    multiplicity = [m for _, _, m in test_sets]
    utility = {frozenset(): 0.5}
    for s in coalitions(players)[1:-1]:
        utility[s] = ensemble_utility(predictions, [p for p in players if p in s], labels, multiplicity)
    utility[frozenset(players)] = float(grand_utility)
    values = shapley(utility, players)
    return MethodResult("safe", values, time.perf_counter() - start, len(utility) - 2, {"utilities": utility})


def _distinct_test_sets(feats: Mapping, players: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Every institution's full test set as ``(features, labels, multiplicity)``: identical sets
    (same scan ids, as in ``shared_test`` settings) are scored once and counted as often as they occur."""
    groups: dict[tuple, list[str]] = {}
    for p in players:
        groups.setdefault(tuple(map(str, feats[p].test.ids)), []).append(p)
    return [(feats[g[0]].test.x, feats[g[0]].test.y, len(g)) for g in groups.values()]
