"""Small stand-ins for the training and valuation outputs the economy stage reads.

They follow ``docs/tables.md`` (``rounds.csv``, per-round model files, ``utilities.csv``,
``institution_values.csv``, ``point_values.parquet``, ``features/<institution>.npz``). The rounds,
models and utility are made up; the feature files are random but real (written and read by
``ddval.valuation.features``), and the point and institution values are computed from them by the
valuation stage's own functions, so that an institution recomputing them (the attester) finds the
same numbers. Like the real stages, completion records vouch for the files the economy pins. The
economy can be tested before, and independently of, the real upstream stages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import LABELS, ExperimentConfig, load_config
from ddval.economy.allocation import points_from_features
from ddval.economy.published import Policy
from ddval.valuation.features import InstitutionFeatures, SplitFeatures, write_features
from ddval.valuation.hierarchy import institution_values

#: The grand coalition's utility of the stand-in training (mean AUROC).
GRAND_UTILITY = 0.8125
#: The setting the stage tests run (``tests/economy/test_flow*.py``).
SETTING = "noniid"
#: Four stand-in rounds: one improving round, then a plateau of exactly ``patience`` rounds.
PATIENCE = 3


def flow_config(**economy_overrides) -> ExperimentConfig:
    """The demo preset with four individuals and a stopping rule of patience :data:`PATIENCE`."""
    return load_config("demo", {"economy": {"n_individuals": 4, **economy_overrides}, "train": {"patience": PATIENCE}})


def flow_stand_ins(cfg: ExperimentConfig, root: Path) -> Path:
    """:func:`write_stage_inputs` of :data:`SETTING` for seed 0 (four rounds, six patients per institution)."""
    return write_stage_inputs(cfg, 0, SETTING, root, n_rounds=4, patients_per_institution=6)


def stopping_losses(n_rounds: int, patience: int, rng: np.random.Generator) -> list[float]:
    """Mean validation losses that improve, then plateau for exactly ``patience`` rounds."""
    best_rounds = n_rounds - patience
    falling = list(np.sort(rng.uniform(0.3, 0.7, size=best_rounds))[::-1])
    return falling + [falling[-1] + 0.01 * (k + 1) for k in range(patience)]


def _split(rng: np.random.Generator, name: str, split: str, patients: int, width: int) -> SplitFeatures:
    pids = [f"p{p:04d}" for p in range(patients) for _ in range(1 + p % 3)]  # 1-3 scans per patient
    n = len(pids)
    y = (rng.random((n, len(LABELS))) < 0.4).astype(np.float32)
    x = (rng.normal(size=(n, width)) + 0.8 * y[:, :1]).astype(np.float32)  # label 0 is learnable
    ids = np.array([f"{name}-{split}-{i}" for i in range(n)])
    return SplitFeatures(
        x=x,
        y=y,
        ids=ids,
        patients=np.array(pids),
        sex=np.array(["F", "M"] * (n // 2) + ["F"] * (n % 2)),
        age=np.full(n, 50.0),
    )


def write_stage_inputs(
    cfg: ExperimentConfig, seed: int, setting: str, root: Path, *, n_rounds: int = 5, patients_per_institution: int = 8
) -> Path:
    """Write the inputs of the economy stage for one setting under ``root``; return ``<S>``."""
    rng = np.random.default_rng(seed)
    names = [i.name for i in cfg.setting(setting).institutions]
    sdir = layout.setting_dir(cfg, seed, setting, root)
    grand = layout.train_dir(cfg, seed, setting, root) / layout.grand_coalition_id(cfg, setting)
    patience = min(cfg.train.patience, n_rounds - 1)
    assert n_rounds - patience >= 1
    means = (
        stopping_losses(n_rounds, patience, rng)
        if n_rounds < cfg.train.max_rounds
        else list(np.linspace(0.7, 0.3, n_rounds))
    )
    rows, models = [], []
    for r in range(1, n_rounds + 1):
        for k, name in enumerate(names):
            # every institution sees the same mean loss, so the mean is the designed curve
            rows.append(
                {
                    "round": r,
                    "institution": name,
                    "model_sha256": f"{r:02d}{k:062d}",
                    "merged_sha256": f"{r:064d}",
                    "leader": names[0],
                    "val_loss": float(means[r - 1]),
                }
            )
            models.append(store.write_bytes(grand / "rounds" / f"{r:03d}" / f"{name}.pt", rng.bytes(2000 + 100 * k)))
    store.write_table(grand / "rounds.csv", pd.DataFrame(rows))
    store.mark_complete(grand, "stand-in-train", {"seed": seed}, models)  # vouches for the models it pins
    store.write_table(
        layout.train_dir(cfg, seed, setting, root) / "utilities.csv",
        pd.DataFrame(
            [
                {
                    "setting": setting,
                    "seed": seed,
                    "coalition": layout.grand_coalition_id(cfg, setting),
                    "label": "mean",
                    "auroc": GRAND_UTILITY,
                }
            ]
        ),
    )
    files = {}
    for name in names:
        files[name] = layout.features_dir(cfg, seed, setting, root) / f"{name}.npz"
        splits = (_split(rng, name, s, patients_per_institution if s == "train" else 4, 8) for s in ("train", "test"))
        write_features(files[name], InstitutionFeatures(name, *splits))
    store.mark_complete(
        layout.features_dir(cfg, seed, setting, root), "stand-in-features", {"seed": seed}, files.values()
    )
    points = points_from_features(files, Policy.of(cfg), GRAND_UTILITY)
    store.write_table(sdir / "valuation" / "point_values.parquet", points)
    values = institution_values(points, names)
    store.write_table(
        sdir / "valuation" / "institution_values.csv",
        pd.DataFrame(
            [
                {
                    "setting": setting,
                    "seed": seed,
                    "method": m,
                    "institution": n,
                    "value": float(values[n]) if m == "ddval" else 0.05 + 0.01 * k,
                    "wall_time_s": 0.1,
                    "n_utility_evals": 1,
                }
                for m in ("ddval", "exact")
                for k, n in enumerate(names)
            ]
        ),
    )
    return sdir
