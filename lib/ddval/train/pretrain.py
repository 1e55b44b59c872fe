"""A shared starting point for every coalition: a backbone pretrained on public scans of another task.

The paper starts every coalition from ImageNet weights: generic features, a fresh 8-way head. The small
CPU model has no such weights, and trained from random weights on a few hundred scans its utility swings
by ±0.05–0.15 AUROC between trainings that differ only in batch order; a ground truth that noisy cannot
judge any valuation method. With ``train.pretrain: attributes`` the backbone is first trained on the
scans of the cohort that **no institution of the setting holds** (no patient of the partition; the
"public" scans), to predict their *acquisition attributes*, not findings: source dataset (3), male sex,
AP view, age above 30, 50 and 70 years. The classifier head is then dropped: every coalition starts from
this backbone with a freshly seeded head (the head of the replicate's initial model, so every coalition
of a replicate gets the same head and a replicate ``r >= 1`` its own, as with ``train.pretrain: none``).
All replicates share the one pretrained backbone: it is part of the common starting point, like the
paper's ImageNet weights, and the replicates measure the noise of the federated training from it.
The findings are learnt from the coalition's own data only, so the empty coalition is still worth about
0.5, and the institutions' data decides what the federation learns.

One pretraining per seed and setting (``<S>/train/pretrained/``: ``model.pt``, ``curve.csv``,
``timing.json``), a stage of :mod:`ddval.store` like a coalition: a second call reuses it, a change of its
inputs retrains it. Its parameter hash is part of every coalition's parameters (``pretrain``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ddval import layout, numerics, store
from ddval.config import LABELS, ExperimentConfig
from ddval.train.aggregate import State

#: The stage name of the pretraining (its record is ``pretrained/.pretrain.done.json``).
STAGE = "pretrain"
#: The attribute targets, one per output of the 8-way head, in output order.
ATTRIBUTES = (
    "dataset_nih",
    "dataset_chexpert",
    "dataset_mimic",
    "male",
    "ap_view",
    "age_over_30",
    "age_over_50",
    "age_over_70",
)
#: Share of the public patients whose scans validate the pretraining (early stopping).
VAL_SHARE = 0.15
#: Train settings that do not change the pretrained backbone.
NOT_PRETRAIN = ("processes", "replicates")


def pretrain_dir(cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None) -> Path:
    """The pretraining's folder, ``<S>/train/pretrained``."""
    return layout.train_dir(cfg, seed, setting, root) / "pretrained"


def attribute_targets(scans: pd.DataFrame) -> np.ndarray:
    """The 0/1 attribute targets of :data:`ATTRIBUTES`.

    Args:
        scans: index rows (``dataset``, ``sex``, ``view_position``, ``age``).

    Returns:
        A float32 array of shape ``(len(scans), 8)``; an unknown age counts as 0.
    """
    age = pd.to_numeric(scans["age"], errors="coerce").fillna(0.0)
    columns = [
        scans["dataset"] == "nih",
        scans["dataset"] == "chexpert",
        scans["dataset"] == "mimic",
        scans["sex"] == "M",
        scans["view_position"] == "AP",
        age > 30,
        age > 50,
        age > 70,
    ]
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def public_scans(index: pd.DataFrame, partition: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans of the patients the partition does not use, split by patient into train and validation.

    Args:
        index: the resized index (every scan of the cohort).
        partition: the setting's partition (every institution's scans).
        seed: the run's seed (draws the validation patients).

    Returns:
        ``(train, val)``, with the attribute targets under the label columns (what the dataset reads).

    Raises:
        ValueError: when the partition uses every patient of the cohort.
    """
    public = index[~index["patient_id"].isin(set(partition["patient_id"]))].reset_index(drop=True)
    if public.empty:
        raise ValueError(
            "train.pretrain: every patient of the cohort is in the partition; no public scans are left to "
            "pretrain on (enlarge data.synthetic.patients or use train.pretrain: none)"
        )
    public[list(LABELS)] = attribute_targets(public)
    patients = np.sort(public["patient_id"].unique())
    order = np.random.default_rng([int(seed), 0x7074]).permutation(patients)  # 0x7074: "pt"
    val = set(order[: max(1, int(round(VAL_SHARE * len(order))))])
    mask = public["patient_id"].isin(val).to_numpy()
    return public[~mask].reset_index(drop=True), public[mask].reset_index(drop=True)


def pretrain_params(cfg: ExperimentConfig, seed: int, setting: str, partition_digest: str) -> dict[str, Any]:
    """What the pretrained backbone depends on.

    Args:
        cfg: the experiment.
        seed: the run's seed.
        setting: the setting (its partition decides which scans are public).
        partition_digest: :func:`ddval.train.setting_data.frame_digest` of the partition.

    Returns:
        The parameters (their hash stamps the backbone and every coalition trained from it).
    """
    train = {k: v for k, v in store.plain_data(cfg.train).items() if k not in NOT_PRETRAIN}
    return {
        "seed": seed,
        "setting": setting,
        "partition": partition_digest,
        "data": cfg.data,  # which scans the cohort holds (the public ones: those the partition leaves)
        "train": train,
        "image_size": cfg.data.image_size,
        "numerics": numerics.fingerprint(),
        "attributes": ATTRIBUTES,
    }


def pretrain_hash(cfg: ExperimentConfig, seed: int, setting: str, partition_digest: str) -> str:
    """The parameter hash of the setting's pretrained backbone (:func:`pretrain_params`)."""
    return store.param_hash(pretrain_params(cfg, seed, setting, partition_digest))


def pretrained_backbone(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    partition: pd.DataFrame,
    partition_digest: str,
    root: str | os.PathLike | None = None,
) -> State | None:
    """The pretrained backbone's state (classifier head left out), trained on first use.

    Args:
        cfg: the experiment (``train.pretrain``, ``train.pretrain_epochs``).
        seed: the run's seed.
        setting: the setting.
        partition: its partition.
        partition_digest: :func:`ddval.train.setting_data.frame_digest` of ``partition``.
        root: results root.

    Returns:
        The backbone's state, or ``None`` with ``train.pretrain: none``.
    """
    if cfg.train.pretrain == "none":
        return None
    from ddval.train.checkpoints import load_checkpoint

    params = pretrain_params(cfg, seed, setting, partition_digest)
    h = store.param_hash(params)
    pdir = pretrain_dir(cfg, seed, setting, root)
    store.run_stage(pdir, STAGE, params, lambda: _pretrain(cfg, seed, setting, partition, pdir, h, root))
    state = load_checkpoint(pdir / "model.pt", h)["state"]
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


def _pretrain(
    cfg: ExperimentConfig, seed: int, setting: str, partition: pd.DataFrame, pdir: Path, h: str, root
) -> list[Path]:
    """Train the backbone on the public scans' attributes; returns the files written."""
    import torch

    from ddval.data.dataset import XrayDataset
    from ddval.repro import seed_everything
    from ddval.train.checkpoints import save_checkpoint
    from ddval.train.fedavg import train_rounds
    from ddval.train.local import Client, derive_seed
    from ddval.train.models import build_model

    started, cpu_started = time.perf_counter(), time.process_time()
    train, val = public_scans(store.read_table(layout.resized_index_path(cfg, root)), partition, seed)
    seed_everything(derive_seed(seed, "pretrain"), threads=cfg.train.threads)
    torch.manual_seed(derive_seed(seed, "pretrain-init"))
    model = build_model(cfg.train)
    size, t = cfg.data.image_size, cfg.train
    client = Client("public", XrayDataset(train, size, train=t.augment, train_cfg=t), XrayDataset(val, size))
    schedule = dataclasses.replace(t, max_rounds=t.pretrain_epochs, lr_decay=1.0)
    result = train_rounds(model, [client], schedule, seed=derive_seed(seed, "pretrain"), desc=f"{setting} pretrain")
    curve = pd.DataFrame(
        [{"round": r["round"], "train_loss": r["train_loss"], "val_loss": r["val_loss"]} for r in result.history]
    )
    payload = {"state": result.best_state, "best_round": result.best_round, "n_train": len(train), "n_val": len(val)}
    timing = {
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "rounds": len(result.history),
        "n_train": len(train),
        "n_val": len(val),
    }
    return [
        save_checkpoint(pdir / "model.pt", payload, h),
        store.write_table(pdir / "curve.csv", curve),
        store.write_json(pdir / "timing.json", timing),
    ]


def start_from(model: nn.Module, backbone: State | None) -> None:
    """Load ``backbone`` into ``model``; its classifier head keeps its own initialisation.

    Args:
        model: a freshly built model.
        backbone: a state without the classifier head, or ``None`` (nothing to load).

    Raises:
        RuntimeError: when the backbone does not fit the model.
    """
    if backbone is None:
        return
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise RuntimeError(
            f"pretrained backbone does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


__all__ = ["ATTRIBUTES", "attribute_targets", "pretrain_hash", "pretrained_backbone", "public_scans", "start_from"]
