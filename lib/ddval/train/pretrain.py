"""A shared starting point for every coalition: a backbone pretrained on public scans of another task.

The paper starts every coalition from ImageNet weights: generic features, a fresh 8-way head. The small
CPU model has no such weights, and trained from random weights on a few hundred scans its utility swings
by ±0.05–0.15 AUROC between trainings that differ only in batch order; a ground truth that noisy cannot
judge any valuation method. With ``train.pretrain: attributes`` the backbone is first trained on the
scans of the cohort that **no institution of the setting holds** (no split of the partition; the "public"
scans), to predict their *acquisition attributes*, not findings: source dataset (3), male sex, AP view,
age above 30, 50 and 70 years. The classifier head is then dropped: every coalition (and every training
replicate) starts from this backbone with the same freshly seeded head, as the paper's ImageNet start.
The findings are learnt from the coalition's own data only, so the empty coalition is still worth about
0.5, and the institutions' data decides what the federation learns.

One pretraining per seed and setting (``<S>/train/pretrained/``: ``model.pt``, ``curve.csv``), a stage of
:mod:`ddval.store` like a coalition: a second call reuses it, a change of its inputs retrains it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, numerics, store
from ddval.config import LABELS, ExperimentConfig
from ddval.train.aggregate import State

STAGE = "pretrain"
#: The attribute targets, one per output of the 8-way head, in output order.
ATTRIBUTES = ("dataset_nih", "dataset_chexpert", "dataset_mimic", "male", "ap_view", "age_over_30", "age_over_50",
              "age_over_70")
#: Share of the public patients whose scans validate the pretraining (early stopping).
VAL_SHARE = 0.15


def pretrain_dir(cfg: ExperimentConfig, seed: int, setting: str, root=None) -> Path:
    """``<S>/train/pretrained``."""
    return layout.train_dir(cfg, seed, setting, root) / "pretrained"


def attribute_targets(scans: pd.DataFrame) -> np.ndarray:
    """The ``(n, 8)`` 0/1 attribute targets of :data:`ATTRIBUTES` (an unknown age counts as 0)."""
    age = pd.to_numeric(scans["age"], errors="coerce").fillna(0.0)
    columns = [scans["dataset"] == "nih", scans["dataset"] == "chexpert", scans["dataset"] == "mimic",
               scans["sex"] == "M", scans["view_position"] == "AP", age > 30, age > 50, age > 70]
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def public_scans(index: pd.DataFrame, partition: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, val)`` scans of the patients the partition does not use, split by patient (seeded), with
    the attribute targets under the label columns (what the dataset class reads)."""
    public = index[~index["patient_id"].isin(set(partition["patient_id"]))].reset_index(drop=True)
    if public.empty:
        raise ValueError("train.pretrain: every patient of the cohort is in the partition; no public scans are left "
                         "to pretrain on (enlarge data.synthetic.patients or use train.pretrain: none)")
    public[list(LABELS)] = attribute_targets(public)
    patients = np.sort(public["patient_id"].unique())
    order = np.random.default_rng([int(seed), 0x7074]).permutation(patients)  # 0x7074: "pt"
    val = set(order[: max(1, int(round(VAL_SHARE * len(order))))])
    mask = public["patient_id"].isin(val).to_numpy()
    return public[~mask].reset_index(drop=True), public[mask].reset_index(drop=True)


def pretrain_params(cfg: ExperimentConfig, seed: int, setting: str, partition_digest: str, index_hash: str) -> dict:
    """What the pretrained backbone depends on."""
    return {"seed": seed, "setting": setting, "partition": partition_digest, "index": index_hash,
            "train": {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("processes", "replicates")},
            "image_size": cfg.data.image_size, "numerics": numerics.fingerprint(), "attributes": ATTRIBUTES}


def pretrained_backbone(cfg: ExperimentConfig, seed: int, setting: str, partition: pd.DataFrame, partition_digest: str,
                        root=None) -> tuple[State | None, str | None]:
    """The pretrained backbone's state (classifier head left out) and its parameter hash; ``(None, None)``
    with ``train.pretrain: none``. Trains it on first use (see the module docstring)."""
    if cfg.train.pretrain == "none":
        return None, None
    import torch

    from ddval.data.dataset import XrayDataset
    from ddval.repro import seed_everything
    from ddval.train.checkpoints import load_checkpoint, save_checkpoint
    from ddval.train.fedavg import train_rounds
    from ddval.train.local import Client, derive_seed
    from ddval.train.models import build_model

    record = store.require_record(layout.data_dir(cfg, root), "resize", "run stages 01 and 02 first")
    params = pretrain_params(cfg, seed, setting, partition_digest, record["params_hash"])
    h = store.param_hash(params)
    pdir = pretrain_dir(cfg, seed, setting, root)

    def compute() -> list[Path]:
        train, val = public_scans(store.read_table(layout.resized_index_path(cfg, root)), partition, seed)
        seed_everything(derive_seed(seed, "pretrain"), threads=cfg.train.threads)
        torch.manual_seed(derive_seed(seed, "pretrain-init"))
        model = build_model(cfg.train)
        size, t = cfg.data.image_size, cfg.train
        client = Client("public", XrayDataset(train, size, train=t.augment, train_cfg=t), XrayDataset(val, size))
        schedule = dataclasses.replace(t, max_rounds=t.pretrain_epochs, patience=t.patience, lr_decay=1.0)
        result = train_rounds(model, [client], schedule, seed=derive_seed(seed, "pretrain"), desc=f"{setting} pretrain")
        curve = pd.DataFrame([{"round": r["round"], "train_loss": r["train_loss"], "val_loss": r["val_loss"]}
                              for r in result.history])
        return [save_checkpoint(pdir / "model.pt", {"state": result.best_state, "n_train": len(train),
                                                    "n_val": len(val)}, h),
                store.write_table(pdir / "curve.csv", curve)]

    store.run_stage(pdir, STAGE, params, compute)
    state = load_checkpoint(pdir / "model.pt", h)["state"]
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}, h


def start_from(model, backbone: State | None) -> None:
    """Load ``backbone`` into ``model`` (its classifier head keeps its own initialisation)."""
    if backbone is None:
        return
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise RuntimeError(f"pretrained backbone does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")


__all__ = ["ATTRIBUTES", "attribute_targets", "pretrained_backbone", "public_scans", "start_from"]
