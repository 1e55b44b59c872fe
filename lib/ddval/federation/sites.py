"""A site's data root: the only data a SuperNode can read.

A hospital keeps, on its own machine, one folder per study (``--node-config "data-root='…'"``)::

    <data-root>/site.json          {"format", "institution", "preset", "seed", "setting"}
    <data-root>/partition.parquet  this institution's rows of the setting's partition (train/val/test),
                                   ``path`` relative to the data root
    <data-root>/scans/<n>.png      its resized scans

Nothing of another institution is there: no rows, no index, no scans. :func:`export_sites` carves the
site roots out of an in-process run (the demo, the tests); a hospital with its own data writes the
same files from its own index (``ddval.data``) and split. :func:`load_site` reads one back and builds
the institution's datasets exactly as the in-process trainer does (:func:`ddval.train.setting_data.
institution_datasets`), so a site trains on the same tensors in the same order.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch.utils.data import Dataset

from ddval import store
from ddval.config import ExperimentConfig

SITE_FORMAT = "ddval-site/1"
SITE_FILE = "site.json"
PARTITION_FILE = "partition.parquet"
SCANS_DIR = "scans"


@dataclass(frozen=True)
class Site:
    """One institution's data, as its SuperNode sees it.

    Attributes:
        institution: the institution's name in the setting.
        root: the data root.
        rows: its partition rows (``path`` absolute), in partition order.
        preset: the preset the rows were partitioned under.
        seed: the seed of the partition.
        setting: the setting.
    """

    institution: str
    root: Path
    rows: pd.DataFrame
    preset: str
    seed: int
    setting: str

    def split(self, name: str) -> pd.DataFrame:
        """The rows of split ``name`` (``train``, ``val`` or ``test``), in partition order."""
        return self.rows[self.rows["split"] == name]

    def datasets(self, cfg: ExperimentConfig) -> dict[str, Dataset]:
        """Train (augmented when ``train.augment``), val and test datasets, as the in-process trainer."""
        from ddval.train.setting_data import institution_datasets

        return institution_datasets(cfg, self.rows, f"data root {self.root}", self.institution)

    def digest(self) -> str:
        """Content hash of the rows (scan locations left out): what the server records of this site."""
        from ddval.train.setting_data import frame_digest

        return frame_digest(self.rows)


def export_sites(
    cfg: ExperimentConfig, seed: int, setting: str, out: str | os.PathLike, root: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Write one data root per institution of ``setting`` from an in-process run's partition.

    Args:
        cfg: the experiment (its data stages 01/02 must have run under ``root``).
        seed: the partition's seed.
        setting: the setting whose institutions become sites.
        out: folder that receives ``<out>/<institution>/``.
        root: results root of the in-process run.

    Returns:
        Institution name → its data root.
    """
    from ddval.data.splits import load_partition

    partition = load_partition(cfg, seed, setting, root=root)
    out = Path(out)
    roots = {}
    for inst in cfg.setting(setting).institutions:
        site_root = out / inst.name
        if site_root.exists():
            shutil.rmtree(site_root)
        (site_root / SCANS_DIR).mkdir(parents=True)
        rows = partition[partition["institution"] == inst.name].reset_index(drop=True)
        local = []
        for number, source in enumerate(rows["path"].astype(str)):
            relative = Path(SCANS_DIR) / f"{number:06d}{Path(source).suffix}"
            shutil.copyfile(source, site_root / relative)
            local.append(str(relative))
        store.write_table(site_root / PARTITION_FILE, rows.assign(path=local))
        info = {
            "format": SITE_FORMAT,
            "institution": inst.name,
            "preset": cfg.preset,
            "seed": int(seed),
            "setting": setting,
        }
        store.write_json(site_root / SITE_FILE, info)
        roots[inst.name] = site_root
    return roots


def load_site(data_root: str | os.PathLike) -> Site:
    """Read a data root written by :func:`export_sites` (or by a hospital in the same format).

    Args:
        data_root: the folder named by the SuperNode's ``data-root`` node config.

    Returns:
        The site, its rows with absolute scan paths.

    Raises:
        FileNotFoundError: the folder, ``site.json`` or ``partition.parquet`` is missing.
        ValueError: ``site.json`` is not of this format, or the rows belong to another institution.
    """
    root = Path(data_root).expanduser().resolve()
    info_path = root / SITE_FILE
    if not info_path.exists():
        raise FileNotFoundError(f"{info_path}: not found; is data-root {str(data_root)!r} a ddval site root?")
    info = json.loads(info_path.read_text())
    if info.get("format") != SITE_FORMAT:
        raise ValueError(f"{info_path}: format {info.get('format')!r}, expected {SITE_FORMAT!r}")
    rows = store.read_table(root / PARTITION_FILE)
    foreign = sorted(set(rows["institution"]) - {info["institution"]})
    if foreign:
        raise ValueError(f"{root / PARTITION_FILE}: rows of other institutions {foreign}; a site holds only its own")
    rows = rows.assign(path=[str(root / p) for p in rows["path"].astype(str)])
    return Site(info["institution"], root, rows, str(info["preset"]), int(info["seed"]), str(info["setting"]))
