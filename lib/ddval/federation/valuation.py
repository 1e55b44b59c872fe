"""DDVal on the server of a federation: the received feature files in, DDVal's tables out.

The server holds only what the sites sent: their feature files and the grand model's test scores.
It runs the in-process pipeline's own steps on them — :func:`ddval.valuation.pooled.pool_features`,
:func:`~ddval.valuation.pooled.knn_sum` with the preset's engine options, :func:`~ddval.valuation.
pooled.label_values` and :func:`ddval.valuation.stage.ddval_tables` — so the values equal the
in-process ones bit for bit when the features do. Written to ``<S>/valuation/``:
``knn_values.npz``, ``point_values.parquet``, ``patient_values.csv``, ``methods/ddval.csv``,
``institution_values.csv`` and an empty ``similarity.csv`` (no exact values: only the grand coalition
is trained). ``n_flipped`` is 0 in the point table: which labels are wrong is the label-flip
experiment's ground truth, which no site knows or sends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import store
from ddval.federation.job import Job
from ddval.valuation.pooled import PooledFeatures


@dataclass
class ReceivedInputs:
    """What :func:`ddval.valuation.stage.ddval_tables` reads, from the received features only."""

    pooled: PooledFeatures
    players: list[str]
    grand_utility: float
    flips: None = field(default=None)

    def n_flipped(self) -> None:
        """Unknown to the server (no site knows which of its labels are wrong)."""
        return self.flips


def value_received_features(job: Job, features_hash: str) -> Path:
    """DDVal's tables of the setting from the stored feature files (a stage, ``ddval``).

    Args:
        job: the federated run.
        features_hash: the parameter hash of the stored feature files.

    Returns:
        The path of ``institution_values.csv``.
    """
    from ddval.layout import features_dir, valuation_dir
    from ddval.train import utility_map
    from ddval.valuation.baselines import MethodResult
    from ddval.valuation.features import read_features
    from ddval.valuation.options import knn_options
    from ddval.valuation.pooled import knn_sum, label_values, pool_features
    from ddval.valuation.stage import SIMILARITY_COLUMNS, ddval_tables

    cfg, seed, setting, root = job.cfg, job.seed, job.setting, job.results_root
    vdir = valuation_dir(cfg, seed, setting, root)
    players = job.institutions
    utilities = store.read_table(_utilities_path(job))

    def compute() -> list[Path]:
        fdir = features_dir(cfg, seed, setting, root)
        feats = {name: read_features(fdir / f"{name}.npz", name) for name in players}
        pooled = pool_features(feats, cfg.valuation.test_per_class)
        start = time.perf_counter()
        values = label_values(knn_sum(pooled, cfg.valuation.k, **knn_options(cfg)))
        knn_time = time.perf_counter() - start
        inputs = ReceivedInputs(pooled, players, utility_map(utilities)[frozenset(players)])
        points, patients, institution = ddval_tables(inputs, values)
        result = MethodResult("ddval", institution, time.perf_counter() - start, 0).table(setting, seed)
        return [
            store.write_npz(
                vdir / "knn_values.npz", label_values=values, wall_time_s=np.float64(knn_time), scan_id=pooled.scan_id
            ),
            store.write_table(vdir / "point_values.parquet", points),
            store.write_table(vdir / "patient_values.csv", patients),
            store.write_table(vdir / "methods" / "ddval.csv", result),
            store.write_table(vdir / "institution_values.csv", result),
            store.write_table(vdir / "similarity.csv", pd.DataFrame(columns=SIMILARITY_COLUMNS)),
        ]

    params = {
        "features": features_hash,
        "utilities": store.file_sha256(_utilities_path(job)),
        "k": cfg.valuation.k,
        "test_per_class": cfg.valuation.test_per_class,
        "runtime": "flower",
    }
    store.run_stage(vdir, "ddval", params, compute)
    return vdir / "institution_values.csv"


def _utilities_path(job: Job) -> Path:
    from ddval.layout import train_dir

    return train_dir(job.cfg, job.seed, job.setting, job.results_root) / "utilities.csv"
