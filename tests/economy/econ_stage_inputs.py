"""Small stand-ins for the training and valuation outputs the economy stage reads.

They follow ``docs/tables.md`` (``rounds.csv``, per-round model files, ``institution_values.csv``,
``point_values.parquet``, ``features/<institution>.npz``) with made-up numbers, so the economy can
be tested before, and independently of, the real training and valuation stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig


def stopping_losses(n_rounds: int, patience: int, rng: np.random.Generator) -> list[float]:
    """Mean validation losses that improve, then plateau for exactly ``patience`` rounds."""
    best_rounds = n_rounds - patience
    falling = list(np.sort(rng.uniform(0.3, 0.7, size=best_rounds))[::-1])
    return falling + [falling[-1] + 0.01 * (k + 1) for k in range(patience)]


def write_stage_inputs(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    root: Path,
    *,
    n_rounds: int = 5,
    patients_per_institution: int = 8,
    institution_values: Sequence[float] | None = None,
    point_value_fn=None,
) -> Path:
    """Write the inputs of the economy stage for one setting under ``root``; return ``<S>``."""
    rng = np.random.default_rng(seed)
    names = [i.name for i in cfg.setting(setting).institutions]
    sdir = layout.setting_dir(cfg, seed, setting, root)
    grand = sdir / "train" / "+".join(names)
    patience = min(cfg.train.patience, n_rounds - 1)
    assert n_rounds - patience >= 1
    means = stopping_losses(n_rounds, patience, rng) if n_rounds < cfg.train.max_rounds else list(np.linspace(0.7, 0.3, n_rounds))
    rows = []
    for r in range(1, n_rounds + 1):
        for k, name in enumerate(names):
            # every institution sees the same mean loss, so the mean is the designed curve
            rows.append({"round": r, "institution": name, "model_sha256": f"{r:02d}{k:062d}", "merged_sha256": f"{r:064d}", "leader": names[0], "val_loss": float(means[r - 1])})
            store.write_bytes(grand / "rounds" / f"{r:03d}" / f"{name}.pt", rng.bytes(2000 + 100 * k))
    store.write_table(grand / "rounds.csv", pd.DataFrame(rows))
    values = institution_values if institution_values is not None else rng.uniform(0.01, 0.1, size=len(names))
    store.write_table(
        sdir / "valuation" / "institution_values.csv",
        pd.DataFrame(
            [{"setting": setting, "seed": seed, "method": m, "institution": n, "value": float(v), "wall_time_s": 0.1, "n_utility_evals": 1} for m in ("ddval", "exact") for n, v in zip(names, values)]
        ),
    )
    points = []
    for name in names:
        for p in range(patients_per_institution):
            for s in range(1 + p % 3):
                v = point_value_fn(name, p, s) if point_value_fn else float(rng.normal(0.002, 0.003))
                points.append({"institution": name, "scan_id": f"{name}-{p}-{s}", "patient_id": f"p{p:04d}", "sex": "F", "age": 50, "n_flipped": 0, "value": v})
    store.write_table(sdir / "valuation" / "point_values.parquet", pd.DataFrame(points))
    for name in names:
        store.write_npz(sdir / "valuation" / "features" / f"{name}.npz", train_x=rng.normal(size=(6, 4)).astype(np.float32), train_y=np.zeros((6, 8), np.float32))
    return sdir
