"""A setting's data as the trainer reads it: per institution, its train (augmented), val and test datasets
from the setting's partition, and the content digest of a partition that every trained model depends on.

:func:`institution_datasets` is also what a federation site builds from its own data root
(``ddval.federation.sites``), so a site trains on the same tensors in the same order as the simulation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from torch.utils.data import Dataset

from ddval.config import ExperimentConfig
from ddval.train.local import Client


@dataclass(frozen=True)
class SettingData:
    """A setting's partition and, per institution, its train (augmented), val and test datasets."""

    partition: pd.DataFrame
    train: dict[str, Dataset]
    val: dict[str, Dataset]
    test: dict[str, Dataset]

    def clients(self, members: Sequence[str]) -> list[Client]:
        return [Client(name, self.train[name], self.val[name]) for name in members]


def load_setting_data(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None
) -> SettingData:
    """Partition of ``setting`` (``ddval.data.splits.load_partition``) as datasets per institution."""
    from ddval.data.splits import load_partition

    partition = load_partition(cfg, seed, setting, root=root)
    out: dict[str, dict[str, Dataset]] = {"train": {}, "val": {}, "test": {}}
    for inst in cfg.setting(setting).institutions:
        rows = partition[partition["institution"] == inst.name]
        datasets = institution_datasets(cfg, rows, f"partition of setting {setting!r} (seed {seed})", inst.name)
        for split, data in datasets.items():
            out[split][inst.name] = data
    return SettingData(partition, out["train"], out["val"], out["test"])


def institution_datasets(cfg: ExperimentConfig, rows: pd.DataFrame, where: str, name: str) -> dict[str, Dataset]:
    """One institution's train (augmented when ``train.augment``), val and test datasets.

    Args:
        cfg: the experiment (image size, augmentation).
        rows: the institution's partition rows, in partition order.
        where: what the rows come from, for errors (a partition, a site's data root).
        name: the institution.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, rows of each split in partition order.
    """
    from ddval.data.dataset import XrayDataset

    out: dict[str, Dataset] = {}
    for split in ("train", "val", "test"):
        frame = rows[rows["split"] == split].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"{where}: institution {name!r} has no {split} scans")
        train = split == "train" and cfg.train.augment
        out[split] = XrayDataset(frame, cfg.data.image_size, train=train, train_cfg=cfg.train if train else None)
    return out


#: Partition columns that say where a scan lies, not what it is: left out of the digest, so the same
#: preset gives the same hashes (and byte-identical checkpoints) in any results folder.
LOCATION_COLUMNS = ("path",)


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of the partition (so a re-made partition never reuses old models); the scans'
    locations are not part of it (the image size is, in :func:`coalition_params`)."""
    ordered = frame.reindex(sorted(c for c in frame.columns if c not in LOCATION_COLUMNS), axis=1)
    digest = hashlib.sha256("|".join(map(str, ordered.columns)).encode())
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
