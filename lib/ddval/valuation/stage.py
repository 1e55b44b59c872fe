"""Stage 04: value every data point, patient and institution of a trained setting (notebook 04).

For each setting (``<S>`` = ``results/<preset>/seed-<s>/<setting>``), every step is a resumable
:mod:`ddval.store` stage in ``<S>/valuation/`` (skipped when done with the same parameters):

1. ``features/``: each institution's deep features (:mod:`ddval.valuation.features`);
2. ``knn_values.npz``: exact KNN-Shapley per train point and label on the pooled features
   (:mod:`ddval.valuation.pooled`), or the reduction of the SLURM shards
   ``shards/knn-<i>-of-<n>.npz`` when all of them are present;
3. ``point_values.parquet``, ``patient_values.csv``: DDVal's hierarchy
   (:mod:`ddval.valuation.hierarchy`);
4. ``methods/<method>.csv``: one file per method (``exact, ddval, or, lambda_mr, gtg, safe``);
5. ``institution_values.csv``, ``similarity.csv``: all methods, and each one's similarity to the
   exact Shapley values (aligned by institution name);
6. experiments (:mod:`ddval.valuation.experiments`): ``labelflip.csv`` and ``flip_detection.csv``
   (label-flip settings: flip rates differ, no other quality kind), ``dp.csv`` (settings with exact values), ``scalability.csv``
   (first seed of the preset, in ``valuation.scalability_setting``).

Settings trained with ``coalitions: grand`` have no exact values (no sub-coalition was trained):
they get no ``exact`` rows and no similarity rows, and run only ``valuation.grand_only_methods``.

Sharding (``shard=i, n_shards=n``): only the KNN partial sums of test shard ``i`` (all labels) are
computed and written; a later call with ``shard=None`` reduces the shards (bit-identical to an
unsharded run) and does the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ddval import layout, numerics, store
from ddval.layout import METHODS, REFERENCE_SPLITS, valuation_dir
from ddval.config import ExperimentConfig
from ddval.valuation import baselines, experiments, scoring
from ddval.valuation.context import SettingInputs
from ddval.valuation.features import features_dir, features_params, stage_threads
from ddval.valuation.options import gtg_options, method_options
from ddval.valuation.knn_stage import compute_shard, inputs_params, knn_params, knn_stage, read_knn_values
from ddval.valuation.hierarchy import institution_values, patient_table, pooled_point_table

log = logging.getLogger(__name__)

INSTITUTION_COLUMNS = layout.columns("institution_values.csv")
SIMILARITY_COLUMNS = layout.columns("similarity.csv")


@dataclass(frozen=True)
class ValuationResult:
    """What the stage produced for the settings it handled."""

    institution_values: pd.DataFrame
    similarity: pd.DataFrame
    settings: tuple[str, ...]
    shard_files: tuple[Path, ...] = ()  # shard mode: the KNN partial sums written (tables are empty)


def has_exact(cfg: ExperimentConfig, setting: str) -> bool:
    """True when every coalition of ``setting`` is trained (exact Shapley values exist)."""
    return cfg.setting(setting).coalitions == "all"


def setting_methods(cfg: ExperimentConfig, setting: str, methods: Sequence[str] | None) -> list[str]:
    """The methods run on ``setting``: ``methods`` (default ``valuation.methods``), restricted to
    ``valuation.grand_only_methods`` and without ``exact`` on grand-only settings."""
    wanted = list(methods if methods is not None else cfg.valuation.methods)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown valuation method(s) {unknown}; known: {list(METHODS)}")
    if not has_exact(cfg, setting):
        wanted = [m for m in wanted if m in cfg.valuation.grand_only_methods and m != "exact"]
    return [m for m in METHODS if m in wanted]


# --------------------------------------------------------------------------------------------
# One setting
# --------------------------------------------------------------------------------------------


def _timed(vdir: Path, step: str, compute: Callable, only_if: Callable[[], bool] | None = None) -> Callable:
    """``compute`` wrapped so that its wall and CPU time go into ``<S>/valuation/timings.json``
    (step → seconds of the last computation; kept apart from the tables, which must be identical
    run to run). ``only_if`` decides, before running, whether the call is worth recording."""

    def run():
        record = only_if() if only_if is not None else True
        start, cpu = time.perf_counter(), time.process_time()
        out = compute()
        if record:
            path = vdir / "timings.json"
            timings = store.read_json(path) if path.exists() else {}
            timings[step] = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
            store.write_json(path, timings)
        return out

    return run


def ddval_tables(ctx: SettingInputs, label_values: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Points, patients and institution values of DDVal."""
    points = pooled_point_table(label_values, ctx.pooled, ctx.grand_utility, n_flipped=ctx.n_flipped())
    return points, patient_table(points), institution_values(points, ctx.players)


def run_method(ctx: SettingInputs, method: str) -> baselines.MethodResult:
    """Run one baseline (not ``ddval``) on the setting."""
    v = ctx.cfg.valuation
    if method == "exact":  # its cost: every coalition trained in every replicate
        replicates = range(layout.setting_replicates(ctx.cfg, ctx.setting))
        times = [experiments.training_times(ctx.cfg, ctx.seed, ctx.setting, ctx.root, r) for r in replicates]
        complete = all(len(t) == 2 ** len(ctx.players) - 1 for t in times)
        wall = float(sum(t["wall_s"].sum() for t in times)) if complete else float("nan")
        return scoring.exact_result(ctx, wall)
    if method == "or":
        return baselines.or_values(ctx.games, ctx.players, v.or_batchnorm)
    if method == "mr":
        return baselines.lambda_mr_values(ctx.games, ctx.players, 1.0, name="mr")
    if method == "lambda_mr":
        return baselines.lambda_mr_values(ctx.games, ctx.players, v.lambda_mr)
    if method == "gtg":
        return baselines.gtg_values(ctx.games, ctx.players, gtg_options(ctx.cfg), ctx.seed)
    if method == "safe":
        return baselines.safe_values(ctx.feats, ctx.players, ctx.grand_utility, v.safe_alphas)
    raise ValueError(f"unknown method {method!r}")


def value_setting(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    methods: Sequence[str] | None = None,
    n_shards: int | None = None,
    root=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every valuation step of one setting (resumable); returns its institution and similarity tables."""
    ctx = SettingInputs(cfg, seed, setting, root)
    vdir = valuation_dir(cfg, seed, setting, root)
    inputs = inputs_params(cfg, seed, setting, root)
    wanted = setting_methods(cfg, setting, methods)
    if (
        store.stage_status(
            features_dir(cfg, seed, setting, root), "features", features_params(cfg, seed, setting, root)
        )
        != "complete"
    ):
        _timed(vdir, "features", lambda: ctx.feats)()
    knn_path = _timed(
        vdir,
        "knn",
        lambda: knn_stage(cfg, seed, setting, lambda: ctx.pooled, n_shards, root),
        only_if=lambda: store.stage_status(vdir, "knn", knn_params(cfg, seed, setting, root)) != "complete",
    )()

    def ddval_step() -> list[Path]:
        label_values, knn_time = read_knn_values(knn_path, ctx.pooled)
        start = time.perf_counter()
        points, patients, values = ddval_tables(ctx, label_values)
        wall = knn_time + time.perf_counter() - start
        result = baselines.MethodResult("ddval", values, wall, 0)
        return [
            store.write_table(vdir / "point_values.parquet", points),
            store.write_table(vdir / "patient_values.csv", patients),
            store.write_table(vdir / "methods" / "ddval.csv", result.table(setting, seed)),
        ]

    store.run_stage(
        vdir, "ddval", {**inputs, "knn_values": store.file_sha256(knn_path)}, _timed(vdir, "ddval tables", ddval_step)
    )
    knn_inputs = {**inputs, "knn": knn_params(cfg, seed, setting, root)}
    for method in wanted:
        if method == "ddval":
            continue
        out = vdir / "methods" / f"{method}.csv"
        params = {**inputs, "method": method, "options": method_options(cfg, method)}
        store.run_stage(
            vdir / "methods",
            method,
            params,
            _timed(
                vdir, method, lambda m=method, o=out: [store.write_table(o, run_method(ctx, m).table(setting, seed))]
            ),
        )

    files = [vdir / "methods" / f"{m}.csv" for m in wanted]
    if has_exact(cfg, setting):
        files += _ground_truth_steps(ctx, vdir, inputs)
    tables_params = {"files": {f.name: store.file_sha256(f) for f in files}}

    def tables_step() -> list[Path]:
        values = pd.concat([store.read_table(f) for f in files], ignore_index=True)
        ceiling = store.read_json(vdir / "noise_ceiling.json") if has_exact(cfg, setting) else None
        sim = scoring.similarity_table(values, setting, seed, ceiling)
        return [
            store.write_table(vdir / "institution_values.csv", values),
            store.write_table(vdir / "similarity.csv", sim),
        ]

    if has_exact(cfg, setting):
        tables_params["ceiling"] = store.file_sha256(vdir / "noise_ceiling.json")
    store.run_stage(vdir, "tables", tables_params, tables_step)
    _experiments(ctx, vdir, knn_inputs)
    return store.read_table(vdir / "institution_values.csv"), store.read_table(vdir / "similarity.csv")


def _ground_truth_steps(ctx: SettingInputs, vdir: Path, inputs: dict) -> list[Path]:
    """The reference splits (``methods/<reference>.csv``), the noise ceiling (``noise_ceiling.json``) and
    ``replicates.csv`` of a setting with exact values; returns the reference files."""
    refs = [vdir / "methods" / f"{name}.csv" for name in REFERENCE_SPLITS]
    store.run_stage(
        vdir / "methods",
        "references",
        inputs,
        lambda: [
            store.write_table(f, r.table(ctx.setting, ctx.seed)) for f, r in zip(refs, scoring.reference_results(ctx))
        ],
    )
    store.run_stage(
        vdir,
        "ceiling",
        inputs,
        lambda: [
            store.write_json(vdir / "noise_ceiling.json", scoring.ceiling(ctx)),
            store.write_table(vdir / "replicates.csv", scoring.replicates_table(ctx)),
        ],
    )
    return refs


def _experiments(ctx: SettingInputs, vdir: Path, inputs: dict) -> None:
    cfg, seed, setting = ctx.cfg, ctx.seed, ctx.setting
    institutions = cfg.setting(setting).institutions
    flips = {i.name: i.flip_rate for i in institutions}
    # a label-flip experiment: institutions that differ in their flip rates and in nothing else (in a quality
    # setting, a label-noise institution sits beside degraded or out-of-distribution ones, whose low point values
    # would be counted as detections of flipped labels)
    if any(r > 0 for r in flips.values()) and all(i.quality == "clean" for i in institutions):
        params = {**inputs, "points": store.file_sha256(vdir / "point_values.parquet")}
        store.run_stage(
            vdir,
            "labelflip",
            params,
            _timed(vdir, "labelflip", lambda: experiments.write_labelflip(vdir, setting, seed, flips)),
        )
    if has_exact(cfg, setting) and cfg.valuation.dp_noise_scales:
        params = {**inputs, "scales": list(cfg.valuation.dp_noise_scales)}
        dp = lambda: [store.write_table(vdir / "dp.csv", experiments.dp_table(ctx))]  # noqa: E731
        store.run_stage(vdir, "dp", params, _timed(vdir, "dp", dp))
    if has_exact(cfg, setting) and {"mr", "lambda_mr"} & set(cfg.valuation.methods):
        params = {**inputs, "lambdas": list(cfg.valuation.lambda_grid)}
        lam = lambda: [store.write_table(vdir / "lambda_sensitivity.csv", experiments.lambda_sensitivity_table(ctx))]  # noqa: E731
        store.run_stage(vdir, "lambda_sensitivity", params, _timed(vdir, "lambda_sensitivity", lam))
    if has_exact(cfg, setting) and "or" in cfg.valuation.methods:
        bn = lambda: [store.write_table(vdir / "or_batchnorm.csv", experiments.or_batchnorm_table(ctx))]  # noqa: E731
        store.run_stage(vdir, "or_batchnorm", inputs, _timed(vdir, "or_batchnorm", bn))
    if cfg.valuation.scalability_clients and seed == cfg.seeds[0] and setting == scalability_setting(cfg):
        v = cfg.valuation
        params = {
            **inputs,
            "clients": list(v.scalability_clients),
            "points": v.scalability_points_per_client,
            "cap": v.scalability_time_cap_s,
            "options": {m: method_options(cfg, m) for m in ("lambda_mr", "gtg", "safe")},
        }
        store.run_stage(
            vdir,
            "scalability",
            params,
            _timed(
                vdir,
                "scalability",
                lambda: [store.write_table(vdir / "scalability.csv", experiments.scalability_table(ctx))],
            ),
        )


def scalability_setting(cfg: ExperimentConfig) -> str:
    """``valuation.scalability_setting``, else the setting with the most institutions."""
    if cfg.valuation.scalability_setting:
        return cfg.setting(cfg.valuation.scalability_setting).name
    return max(cfg.settings, key=lambda s: len(s.institutions)).name


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def run_valuation_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str | None = None,
    methods: Sequence[str] | None = None,
    shard: int | None = None,
    n_shards: int | None = None,
    root: str | os.PathLike | None = None,
) -> ValuationResult:
    """Value the settings of ``cfg`` (or only ``setting``) for ``seed`` (see the module docstring).

    With ``shard=i, n_shards=n`` only the KNN partial sums of test shard ``i`` are computed (one
    SLURM array task); the result then lists the shard files and its tables are empty. Otherwise
    every step runs (or is skipped when done) and the institution values and similarities of the
    handled settings are returned."""
    names = [setting] if setting is not None else [s.name for s in cfg.settings]
    for name in names:
        cfg.setting(name)  # fail early on an unknown setting
    numerics.apply_to_torch()
    torch.set_num_threads(stage_threads(cfg))
    if shard is not None:
        if n_shards is None:
            raise ValueError("shard= needs n_shards=")
        files = tuple(compute_shard(cfg, seed, name, shard, n_shards, root) for name in names)
        return ValuationResult(
            pd.DataFrame(columns=INSTITUTION_COLUMNS), pd.DataFrame(columns=SIMILARITY_COLUMNS), tuple(names), files
        )
    values, sims = [], []
    for name in names:
        v, s = value_setting(cfg, seed, name, methods, n_shards, root)
        values.append(v)
        sims.append(s)
    return ValuationResult(pd.concat(values, ignore_index=True), pd.concat(sims, ignore_index=True), tuple(names))
