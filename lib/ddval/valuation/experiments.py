"""The paper's experiments on top of a valued setting: label flips, DP noise, scalability.

* **Label flip** (settings with ``flip_rate > 0``): each institution's DDVal value against its flip
  rate (``labelflip.csv``), and how well a low data-point value detects a training scan with at least
  one flipped label: AUROC of ``−value`` for ``n_flipped > 0`` over all training scans
  (``flip_detection.csv``; 0.5 = no better than chance).
* **DP** (settings with exact values): every institution adds Gaussian noise to the train features
  it shares, ``x + N(0, (s · σ)²)`` with ``σ`` the per-feature standard deviation of that
  institution's train features and ``s`` in ``valuation.dp_noise_scales`` (seeded by seed,
  institution and scale; one noisy copy per institution, used for all labels; test features stay
  clean); DDVal's similarity to the exact values per ``s`` (``dp.csv``).
* **Baseline sensitivity** (settings with exact values): λ-MR's similarity to the ground truth for every
  λ of ``valuation.lambda_grid`` (``lambda_sensitivity.csv``) and OR's for each source of its BatchNorm
  running statistics (``or_batchnorm.csv``), so that neither baseline is judged on one arbitrary knob.
* **Scalability** (first seed, ``valuation.scalability_setting``): wall time as the number of
  clients ``n`` grows with ``valuation.scalability_points_per_client`` points each
  (``scalability.csv``, column ``measured``):

  - ``ddval``: measured at every ``n``: KNN-Shapley (8 labels) on ``n × P`` train points (the
    setting's pooled features, repeated with a tiny perturbation as needed, see
    :func:`repeat_pooled`) against the setting's balanced test sets;
  - ``or``, ``lambda_mr``, ``gtg``: measured on the setting's recorded training for the client
    counts that exist there (the first ``n`` institutions) while the method's projected time
    stays under ``valuation.scalability_time_cap_s`` (each model is scored once and timed; a client
    count is charged the measured cost of every model it needs, see
    :class:`~ddval.valuation.reconstruct.ModelGames`); beyond that, **extrapolated** from the
    largest measured count as (its fixed cost) + (its median time per utility evaluation) ×
    (evaluations the method needs at ``n``):
    ``2^n − 1`` (OR), ``r* · 2^n`` (λ-MR), ``r* · min(2^n, n · gtg_max_permutations + 1)`` (GTG, an
    upper bound);
  - ``safe``: measured (``n`` local ridge fits on ``P`` points each, ``2^n − 2`` ensemble
    utilities) under the same cap, extrapolated beyond it;
  - ``exact``: always **extrapolated**: ``2^n − 1`` trainings; a coalition of ``m`` members trains
    ``R`` rounds over ``m · P`` scans, at the training stage's measured wall time per scan and round
    (``timing.json`` of the setting's trained coalitions; ``R`` their mean number of rounds).

  Extrapolated rows have ``measured = False``; never read them as measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.valuation.context import SettingInputs
from ddval.valuation.options import ddval_label_values, gtg_options
from ddval.valuation.pooled import PooledFeatures, pool_features

SCALABILITY_COLUMNS = layout.columns("scalability.csv")


# --------------------------------------------------------------------------------------------
# Label flip
# --------------------------------------------------------------------------------------------


def flip_detection(points: pd.DataFrame) -> dict:
    """AUROC of ``−value`` for "has at least one flipped label" over the points (``NaN`` when only
    one class is present), with the class counts."""
    from sklearn.metrics import roc_auc_score

    flipped = points["n_flipped"].to_numpy() > 0
    n_flipped, n_clean = int(flipped.sum()), int((~flipped).sum())
    auroc = float(roc_auc_score(flipped, -points["value"].to_numpy())) if n_flipped and n_clean else float("nan")
    return {"auroc": auroc, "n_flipped": n_flipped, "n_clean": n_clean}


def write_labelflip(vdir: Path, setting: str, seed: int, flip_rates: dict[str, float]) -> list[Path]:
    """``labelflip.csv`` and ``flip_detection.csv`` from the setting's DDVal point values."""
    points = store.read_table(vdir / "point_values.parquet")
    sums = points.groupby("institution", sort=False)["value"].sum().reindex(list(flip_rates), fill_value=0.0)
    by_client = pd.DataFrame(
        {
            "setting": setting,
            "seed": seed,
            "institution": list(flip_rates),
            "flip_rate": list(flip_rates.values()),
            "value": sums.to_numpy(),
        }
    )
    detection = pd.DataFrame([{"setting": setting, "seed": seed, **flip_detection(points)}])
    return [
        store.write_table(vdir / "labelflip.csv", by_client),
        store.write_table(vdir / "flip_detection.csv", detection),
    ]


# --------------------------------------------------------------------------------------------
# DP
# --------------------------------------------------------------------------------------------


def add_feature_noise(x: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``x + N(0, (scale · σ)²)`` with ``σ`` the per-feature standard deviation of ``x`` (float32)."""
    x = np.asarray(x, dtype=np.float32)
    if scale == 0:
        return x.copy()
    sigma = x.std(axis=0, dtype=np.float64)
    return (x + rng.normal(0.0, 1.0, size=x.shape) * (scale * sigma)).astype(np.float32)


def noisy_features(feats: dict, scale: float, seed: int, scale_index: int) -> dict:
    """Every institution's features with noisy train features (test features untouched)."""
    out = {}
    for number, (name, f) in enumerate(feats.items()):
        out[name] = replace(
            f, train=replace(f.train, x=add_feature_noise(f.train.x, scale, noise_rng(seed, number, scale_index)))
        )
    return out


def noise_rng(seed: int, number: int, scale_index: int) -> np.random.Generator:
    """The noise stream of institution ``number`` (its position in the setting) at noise scale
    ``scale_index``: the same whether the noise is added in process or on the site (federation)."""
    return np.random.default_rng([int(seed), 0x6470, number, scale_index])  # 0x6470: "dp"


def dp_table(ctx: SettingInputs, label_values_fn: Callable[[PooledFeatures], np.ndarray] | None = None) -> pd.DataFrame:
    """``dp.csv``: DDVal's similarity to the exact values per noise scale (``label_values_fn``:
    pooled features → ``(N, 8)`` label values; default DDVal with the preset's options)."""
    from ddval.valuation.baselines import shapley
    from ddval.valuation.compare import similarity
    from ddval.valuation.hierarchy import institution_values, pooled_point_table

    label_values_fn = label_values_fn or (lambda pooled: ddval_label_values(ctx.cfg, pooled))
    exact = shapley(ctx.utility, ctx.players)
    rows = []
    for j, scale in enumerate(ctx.cfg.valuation.dp_noise_scales):
        pooled = pool_features(noisy_features(ctx.feats, scale, ctx.seed, j), ctx.cfg.valuation.test_per_class)
        points = pooled_point_table(label_values_fn(pooled), pooled, ctx.grand_utility)
        sim = similarity(exact, institution_values(points, ctx.players))
        rows.append(
            {
                "setting": ctx.setting,
                "seed": ctx.seed,
                "noise_scale": float(scale),
                **{k: float(sim[k]) for k in ("cosine", "pearson", "spearman")},
            }
        )
    return pd.DataFrame(rows, columns=["setting", "seed", "noise_scale", "cosine", "pearson", "spearman"])


# --------------------------------------------------------------------------------------------
# Baseline sensitivity: λ of λ-MR, BatchNorm statistics of OR
# --------------------------------------------------------------------------------------------


def _scores(ctx: SettingInputs, key: str, estimates: dict) -> pd.DataFrame:
    """One row per estimate: its cosine, Spearman and L1-share distance to the ground truth."""
    from ddval.valuation.compare import similarity
    from ddval.valuation.ground_truth import exact_values

    exact = exact_values(ctx.replicate_utilities, ctx.players)
    rows = []
    for name, values in estimates.items():
        sim = similarity(exact, values)
        rows.append(
            {
                "setting": ctx.setting,
                "seed": ctx.seed,
                key: name,
                **{k: float(sim[k]) for k in ("cosine", "spearman", "l1_share")},
            }
        )
    return pd.DataFrame(rows, columns=["setting", "seed", key, "cosine", "spearman", "l1_share"])


def lambda_sensitivity_table(ctx: SettingInputs) -> pd.DataFrame:
    """``lambda_sensitivity.csv``: λ-MR against the ground truth for every λ of ``valuation.lambda_grid``
    (the round games are scored once; λ = 1 is MR)."""
    from ddval.valuation.baselines import lambda_mr, round_games

    games = round_games(ctx.games, ctx.players)
    return _scores(
        ctx, "lambda", {float(lam): lambda_mr(games, ctx.players, lam) for lam in ctx.cfg.valuation.lambda_grid}
    )


def or_batchnorm_table(ctx: SettingInputs) -> pd.DataFrame:
    """``or_batchnorm.csv``: OR against the ground truth with each choice of BatchNorm running statistics
    (:data:`ddval.valuation.reconstruct.OR_BATCHNORM`)."""
    from ddval.valuation.baselines import or_values
    from ddval.valuation.reconstruct import OR_BATCHNORM

    return _scores(ctx, "batchnorm", {bn: or_values(ctx.games, ctx.players, bn).values for bn in OR_BATCHNORM})


# --------------------------------------------------------------------------------------------
# Scalability
# --------------------------------------------------------------------------------------------


def repeat_pooled(pooled: PooledFeatures, n_points: int, seed: int = 0) -> PooledFeatures:
    """The pooled train set cut or repeated to ``n_points`` rows (test sets unchanged). Repeated
    copies get a small seeded perturbation (10⁻³ × the per-feature standard deviation): exact copies
    would be exact distance ties, which the engine resolves on a slower exact path that real data
    does not hit, so the timing would measure tie handling instead of the method."""
    idx = np.arange(n_points) % pooled.n_train
    out = replace(
        pooled,
        **{
            k: getattr(pooled, k)[idx]
            for k in ("train_x", "train_y", "institution", "scan_id", "patient_id", "sex", "age")
        },
    )
    copies = np.arange(n_points) >= pooled.n_train
    if copies.any():
        x = out.train_x.astype(np.float32, copy=True)
        sigma = pooled.train_x.std(axis=0, dtype=np.float64)
        rng = np.random.default_rng([int(seed), 0x7363])  # "sc"
        x[copies] += (rng.normal(size=(int(copies.sum()), x.shape[1])) * (1e-3 * sigma)).astype(np.float32)
        out = replace(out, train_x=x)
    return out


def _evals(method: str, n: int, rounds: int, max_perms: int) -> int:
    return {"or": 2**n - 1, "lambda_mr": rounds * 2**n, "gtg": rounds * min(2**n, n * max_perms + 1)}[method]


def _row(method, n, points, wall, evals, measured, basis) -> dict:
    return {
        "method": method,
        "n_clients": n,
        "n_points": n * points,
        "wall_time_s": float(wall),
        "n_utility_evals": int(evals),
        "measured": bool(measured),
        "basis": basis,
    }


def scalability_table(ctx: SettingInputs) -> pd.DataFrame:
    """``scalability.csv`` (see the module docstring for what is measured and what extrapolated)."""
    from ddval.valuation import baselines

    cfg = ctx.cfg
    v = cfg.valuation
    ns, points, cap = sorted(v.scalability_clients), v.scalability_points_per_client, v.scalability_time_cap_s
    rows = []
    for n in ns:
        sub = repeat_pooled(ctx.pooled, n * points, ctx.seed)
        start = time.perf_counter()
        ddval_label_values(cfg, sub)
        rows.append(_row("ddval", n, points, time.perf_counter() - start, 0, True, "measured: KNN-Shapley, 8 labels"))

    games, players = ctx.games, ctx.players
    rounds = ctx.history.best_round
    runners = {
        "or": lambda ps: baselines.or_values(games, ps),
        "lambda_mr": lambda ps: baselines.lambda_mr_values(games, ps, v.lambda_mr),
        "gtg": lambda ps: baselines.gtg_values(games, ps, gtg_options(cfg), ctx.seed),
    }
    for method, run in runners.items():
        fixed = per_eval = None  # cost model from the largest measured client count
        for n in ns:
            evals = _evals(method, n, rounds, v.gtg_max_permutations)
            if n <= len(players) and (per_eval is None or fixed + per_eval * evals <= cap):
                result = run(players[:n])
                # the median scoring time is the marginal cost of a model; the rest (loading the
                # recorded rounds, building states once) is a fixed cost
                per_eval = float(np.median(result.details["eval_seconds"])) if result.n_utility_evals else 0.0
                fixed = max(result.wall_time_s - per_eval * result.n_utility_evals, 0.0)
                rows.append(
                    _row(
                        method,
                        n,
                        points,
                        result.wall_time_s,
                        result.n_utility_evals,
                        True,
                        f"measured on the first {n} recorded clients",
                    )
                )
            elif per_eval is not None:
                rows.append(
                    _row(
                        method,
                        n,
                        points,
                        fixed + per_eval * evals,
                        evals,
                        False,
                        "extrapolated: measured fixed cost + median time per utility evaluation x evaluations",
                    )
                )
    rows += _safe_rows(ctx, ns, points, cap)
    rows += _exact_rows(ctx, ns, points)
    return pd.DataFrame(rows, columns=SCALABILITY_COLUMNS)


def _safe_rows(ctx: SettingInputs, ns: Sequence[int], points: int, cap: float) -> list[dict]:
    """SaFE on ``n`` synthetic clients of ``P`` pooled points each (real features, repeated)."""
    from ddval.valuation.baselines import coalitions, ensemble_utility, fit_local_model

    pooled = ctx.pooled
    test_x, test_y = pooled.test_x.astype(np.float64), pooled.test_y
    rows, fit_s, eval_s = [], None, None
    for n in ns:
        evals = 2**n - 2
        if fit_s is None or n * fit_s + evals * eval_s <= cap:
            sub = repeat_pooled(pooled, n * points, ctx.seed)
            start = time.perf_counter()
            preds = {}
            for c in range(n):
                model = fit_local_model(
                    sub.train_x[c * points : (c + 1) * points],
                    sub.train_y[c * points : (c + 1) * points],
                    ctx.cfg.valuation.safe_alphas,
                )
                preds[c] = [model.predict(test_x)]
            mid = time.perf_counter()
            for s in coalitions(list(range(n)))[1:-1]:
                ensemble_utility(preds, sorted(s), [test_y])
            end = time.perf_counter()
            fit_s, eval_s = (mid - start) / n, (end - mid) / max(evals, 1)
            rows.append(
                _row("safe", n, points, end - start, evals, True, "measured: n ridge fits + ensemble utilities")
            )
        else:
            rows.append(
                _row(
                    "safe",
                    n,
                    points,
                    n * fit_s + evals * eval_s,
                    evals,
                    False,
                    "extrapolated: measured fit and ensemble-utility times",
                )
            )
    return rows


def training_times(cfg: ExperimentConfig, seed: int, setting: str, root=None, replicate: int = 0) -> pd.DataFrame:
    """Per trained coalition of ``setting`` in training replicate ``replicate``: ``coalition, n_members,
    n_train, wall_s, rounds`` from the training stage's ``timing.json`` (rows without one are left out)."""
    from ddval.layout import coalition_dir, coalition_id, setting_coalitions

    s = cfg.setting(setting)
    sizes = {i.name: i.train for i in s.institutions}
    rows = []
    for members in setting_coalitions(s):
        path = coalition_dir(cfg, seed, setting, members, root, replicate) / "timing.json"
        if path.exists():
            t = store.read_json(path)
            rows.append(
                {
                    "coalition": coalition_id(members),
                    "n_members": len(members),
                    "n_train": sum(sizes[m] for m in members),
                    "wall_s": float(t["wall_s"]),
                    "rounds": int(t["rounds"]),
                }
            )
    return pd.DataFrame(rows, columns=["coalition", "n_members", "n_train", "wall_s", "rounds"])


def _exact_rows(ctx: SettingInputs, ns: Sequence[int], points: int) -> list[dict]:
    """Exact retraining, extrapolated from the training stage's measured time per scan and round."""
    times = training_times(ctx.cfg, ctx.seed, ctx.setting, ctx.root)
    if times.empty:
        return []
    per_scan_round = float((times["wall_s"] / (times["rounds"] * times["n_train"])).mean())
    rounds = float(times["rounds"].mean())
    rows = []
    for n in ns:
        scan_rounds = rounds * points * n * 2 ** (n - 1)  # Σ_S |S| · P scans per round
        rows.append(
            _row(
                "exact",
                n,
                points,
                scan_rounds * per_scan_round,
                2**n - 1,
                False,
                "extrapolated: measured training time per scan and round x rounds x members x P over all coalitions",
            )
        )
    return rows
