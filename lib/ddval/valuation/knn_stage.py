"""The KNN step of stage 04: its parameters, test shards and their exact reduction.

``knn_values.npz`` in ``<S>/valuation/`` holds DDVal's exact KNN-Shapley values per training point and label
on the pooled features (:mod:`ddval.valuation.pooled`). A SLURM task can compute one test shard
(``shards/knn-<i>-of-<n>.npz``, :func:`compute_shard`); :func:`knn_stage` then adds the shards exactly
(bit-identical to an unsharded run) or computes all test points at once. :mod:`ddval.valuation.stage`
runs it as step 2 of the stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.layout import shard_path, valuation_dir
from ddval.valuation.features import features_params, load_features
from ddval.valuation.options import knn_options
from ddval.valuation.pooled import PooledFeatures, knn_sum, label_values, pool_features, shard_slice


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def _utilities_hash(cfg: ExperimentConfig, seed: int, setting: str, root, replicate: int = 0) -> str:
    which = f", replicate {replicate}" if replicate else ""
    record = store.require_record(
        layout.replicate_train_dir(cfg, seed, setting, replicate, root),
        "utilities",
        f"the training stage of setting {setting!r} (seed {seed}{which}) has not finished; run notebook 03 first",
    )
    return record["params_hash"]


def knn_params(cfg: ExperimentConfig, seed: int, setting: str, root) -> dict:
    """What the KNN sums depend on (not on the sharding: sharded results are bit-identical)."""
    v = cfg.valuation
    return {
        "features": store.param_hash(features_params(cfg, seed, setting, root)),
        "k": v.k,
        "test_per_class": v.test_per_class,
    }


def inputs_params(cfg: ExperimentConfig, seed: int, setting: str, root) -> dict:
    """What every step after the KNN depends on: the features and the trained coalitions (of every
    training replicate)."""
    params = {
        "seed": seed,
        "setting": setting,
        "features": store.param_hash(features_params(cfg, seed, setting, root)),
        "utilities": _utilities_hash(cfg, seed, setting, root),
    }
    if layout.setting_replicates(cfg, setting) > 1:  # the ground truth's mean; one replicate: the params of before
        replicates = range(1, layout.setting_replicates(cfg, setting))
        params["replicate_utilities"] = [_utilities_hash(cfg, seed, setting, root, r) for r in replicates]
    return params


# --------------------------------------------------------------------------------------------
# KNN-Shapley (whole or sharded)
# --------------------------------------------------------------------------------------------


def compute_shard(cfg: ExperimentConfig, seed: int, setting: str, shard: int, n_shards: int, root=None) -> Path:
    """Compute and write the exact KNN partial sums of test shard ``shard`` of ``n_shards`` (all labels)."""
    vdir = valuation_dir(cfg, seed, setting, root)
    path = shard_path(vdir, shard, n_shards)
    params = {**knn_params(cfg, seed, setting, root), "shard": shard, "n_shards": n_shards}

    def compute() -> list[Path]:
        pooled = pool_features(load_features(cfg, seed, setting, root), cfg.valuation.test_per_class)
        rows = shard_slice(len(pooled.test_ids), shard, n_shards)
        start = time.perf_counter()
        total = knn_sum(pooled, cfg.valuation.k, rows=rows, **knn_options(cfg))
        wall = time.perf_counter() - start
        return [
            store.write_npz(
                path, **total.as_arrays(), rows=np.array(rows, dtype=np.int64), wall_time_s=np.float64(wall)
            )
        ]

    store.run_stage(path.parent, path.stem, params, compute)
    return path


def _read_shards(cfg, seed, setting, n_shards, pooled, root):
    """The sum of the shard files when all are present and current; ``None`` when none is; an error
    naming the missing ones when only some are."""
    from ddval.valuation.knn_shapley import KnnShapleySum

    vdir = valuation_dir(cfg, seed, setting, root)
    base = knn_params(cfg, seed, setting, root)
    present = [
        store.is_complete(
            vdir / "shards", shard_path(vdir, i, n_shards).stem, {**base, "shard": i, "n_shards": n_shards}
        )
        for i in range(n_shards)
    ]
    if not any(present):
        return None
    if not all(present):
        missing = [str(shard_path(vdir, i, n_shards)) for i, ok in enumerate(present) if not ok]
        raise FileNotFoundError(
            f"setting {setting!r}: {len(missing)} of {n_shards} KNN shards missing or stale: {', '.join(missing)}; run them with shard=i, n_shards={n_shards}"
        )
    total, wall = None, 0.0
    for i in range(n_shards):
        with np.load(shard_path(vdir, i, n_shards)) as npz:
            if tuple(npz["rows"]) != shard_slice(len(pooled.test_ids), i, n_shards):
                raise ValueError(
                    f"{shard_path(vdir, i, n_shards)}: covers other test rows than the current features; delete the shards"
                )
            part = KnnShapleySum.from_arrays(npz)
            wall += float(npz["wall_time_s"])
        total = part if total is None else total + part
    return total, wall


def knn_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    pooled: Callable[[], PooledFeatures],
    n_shards: int | None = None,
    root=None,
) -> Path:
    """Stage ``knn``: ``knn_values.npz`` with the ``(N, 8)`` KNN-Shapley values per train point and
    label (``label_values``), the train scan ids and the compute time (summed over shards when
    reduced from them). Reduces the shard files when all ``n_shards`` (default
    ``valuation.shards``) are present, else computes everything. ``pooled`` is called only when
    there is work to do."""
    vdir = valuation_dir(cfg, seed, setting, root)
    path = vdir / "knn_values.npz"
    n = n_shards or cfg.valuation.shards

    def compute() -> list[Path]:
        data = pooled()
        reduced = _read_shards(cfg, seed, setting, n, data, root) if n > 1 else None
        if reduced is None:
            start = time.perf_counter()
            total = knn_sum(data, cfg.valuation.k, **knn_options(cfg))
            reduced = total, time.perf_counter() - start
        total, wall = reduced
        return [
            store.write_npz(path, label_values=label_values(total), wall_time_s=np.float64(wall), scan_id=data.scan_id)
        ]

    store.run_stage(vdir, "knn", knn_params(cfg, seed, setting, root), compute)
    return path


def read_knn_values(path: Path, pooled: PooledFeatures) -> tuple[np.ndarray, float]:
    """``(label_values, wall_time_s)`` of ``knn_values.npz``, checked against the pooled rows."""
    with np.load(path) as npz:
        if not np.array_equal(npz["scan_id"], pooled.scan_id):
            raise ValueError(f"{path}: rows do not match the current features; delete it to recompute")
        return npz["label_values"], float(npz["wall_time_s"])
