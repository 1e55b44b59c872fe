"""Index the three chest X-ray datasets into one table: one row per scan, 8 harmonised labels.

Each dataset has its reader, with its files, columns, codes, quirks and citation in its docstring:
:mod:`ddval.data.nih` (NIH ChestX-ray14), :mod:`ddval.data.chexpert` (CheXpert v1.0) and
:mod:`ddval.data.mimic` (MIMIC-CXR-JPG 2.0.0 + MIMIC-IV). They read the files exactly as the
datasets are distributed (the synthetic cohort of :mod:`ddval.data.synthetic` is written in the same
formats). This module puts their rows into the unified columns and applies the label policy.

Unified columns (``docs/tables.md``): ``dataset, scan_id, path (absolute), patient_id, study_id,
sex (M/F/U), age (years, float, NaN when unknown), view (frontal/lateral/oblique/unknown),
view_position`` (the source's projection code, e.g. PA, AP, LL, LATERAL; empty when blank) and the
8 labels of :data:`ddval.config.LABELS` as 0.0/1.0. Identifiers are prefixed with the dataset
(``nih:00000001``, ``chexpert:patient00001``, ``mimic:10000032``) so they are unique across datasets.

Label policy (``data.uncertain``, ``data.blank``): a label is 1 when the source says 1.0;
uncertain (-1.0) becomes 0 (``zeros``, the paper's U-Zeros) or 1 (``ones``); blank becomes 0.

Options of the config (defaults as the paper): ``data.views`` keeps only some views (default all:
lateral scans go into training, as in the original); ``data.mimic_labels`` picks MIMIC-CXR's
``chexpert`` (default) or ``negbio`` label file; ``data.mimic_split: official`` adds the column
``official_split`` (MIMIC rows: train / validate / test; other rows: empty) that the partitions use.

Bad input is an error naming the file, the line (header = line 1) and the field (see
:mod:`ddval.data.sources`). An image listed but absent is an error (``data.on_missing: error``,
default) or a counted skip (``skip``), listed in ``index_skipped.csv`` by the index stage
(:mod:`ddval.data.stage`). Nothing is written until the whole index is built, so a failure never
leaves a half-written index.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ddval import layout
from ddval.config import DATASETS, LABELS, ExperimentConfig
from ddval.data import chexpert, mimic, nih
from ddval.data.sources import DataFormatError
from ddval.data.synthetic import cohort_roots

__all__ = [
    "INDEX_COLUMNS",
    "INDEXERS",
    "OPTIONAL_COLUMNS",
    "DataFormatError",
    "build_index",
    "build_index_with_skips",
    "harmonise_labels",
    "keep_views",
    "read_dataset",
    "unify",
    "index_chexpert",
    "index_mimic",
    "index_nih",
    "real_roots",
    "source_files",
]

log = logging.getLogger(__name__)

#: Columns of ``index.parquet``, in order.
INDEX_COLUMNS: tuple[str, ...] = (
    "dataset",
    "scan_id",
    "path",
    "patient_id",
    "study_id",
    "sex",
    "age",
    "view",
    "view_position",
) + LABELS
#: Columns an option adds after them (``official_split``: ``data.mimic_split: official``).
OPTIONAL_COLUMNS: tuple[str, ...] = ("official_split",)


def harmonise_labels(codes: pd.DataFrame, uncertain: str) -> pd.DataFrame:
    """0.0/1.0 labels from labeler codes (1.0, 0.0, -1.0 uncertain, NaN blank) under the label policy."""
    positive = (codes == 1.0) | ((codes == -1.0) & (uncertain == "ones"))
    return positive.astype(float)


def unify(frame: pd.DataFrame, dataset: str, uncertain: str) -> pd.DataFrame:
    """A reader's rows in the unified columns and order (plus ``official_split`` when the reader gave
    it), labels harmonised, sorted by patient, study and scan (deterministic whatever the CSV order)."""
    frame = frame.assign(dataset=dataset)
    frame[list(LABELS)] = harmonise_labels(frame[list(LABELS)], uncertain)
    columns = list(INDEX_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    out = frame.loc[:, columns].sort_values(["patient_id", "study_id", "scan_id"], kind="stable")
    out = out.reset_index(drop=True)
    out["age"] = out["age"].astype(float)
    return out


def index_nih(root: str | os.PathLike, *, uncertain: str = "zeros", on_missing: str = "error") -> pd.DataFrame:
    """Index NIH ChestX-ray14 under ``root`` (files and columns: :mod:`ddval.data.nih`).
    ``uncertain`` is accepted for a uniform signature (NIH has no uncertain labels)."""
    return unify(nih.read_nih(root, on_missing)[0], "nih", uncertain)


def index_chexpert(
    root: str | os.PathLike,
    *,
    uncertain: str = "zeros",
    on_missing: str = "error",
    splits: tuple[str, ...] = ("train",),
) -> pd.DataFrame:
    """Index CheXpert under ``root``: ``train.csv`` (``splits`` may add ``"valid"``; :mod:`ddval.data.chexpert`)."""
    return unify(chexpert.read_chexpert(root, on_missing, splits)[0], "chexpert", uncertain)


def index_mimic(
    root: str | os.PathLike,
    *,
    uncertain: str = "zeros",
    on_missing: str = "error",
    mimic_iv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Index MIMIC-CXR-JPG 2.0.0 under ``root`` with demographics from MIMIC-IV (``mimic_iv`` folder or
    found by :func:`ddval.data.mimic.mimic_iv_folder`; :mod:`ddval.data.mimic`)."""
    return unify(mimic.read_mimic(root, on_missing, mimic_iv)[0], "mimic", uncertain)


#: The indexer of each dataset (unified columns).
INDEXERS: dict[str, Callable[..., pd.DataFrame]] = {"nih": index_nih, "chexpert": index_chexpert, "mimic": index_mimic}


def read_dataset(name: str, root: str | os.PathLike, cfg: ExperimentConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows (label codes) and skipped rows of dataset ``name`` at ``root``, with the config's reader options."""
    on_missing = cfg.data.on_missing
    if name == "nih":
        return nih.read_nih(root, on_missing)
    if name == "chexpert":
        return chexpert.read_chexpert(root, on_missing)
    return mimic.read_mimic(
        root, on_missing, labels=cfg.data.mimic_labels, official_split=cfg.data.mimic_split == "official"
    )


def keep_views(frame: pd.DataFrame, views: tuple[str, ...], dataset: str) -> pd.DataFrame:
    """The rows of ``frame`` whose ``view`` is one of ``views`` (the dropped ones are counted in the log)."""
    kept = frame["view"].isin(views)
    if not kept.all():
        log.info(
            "%s: %d scan(s) of other views than %s left out (data.views)", dataset, int((~kept).sum()), list(views)
        )
    return frame.loc[kept].reset_index(drop=True)


def real_roots(cfg: ExperimentConfig) -> dict[str, Path]:
    """Roots of the configured real datasets; one error lists everything that is missing."""
    roots, problems = {}, []
    for name in cfg.data.datasets:
        root, origin = cfg.dataset_root_origin(name)
        if root is None:
            problems.append(f"{name}: no root; {origin.replace('not configured: ', '')} in the preset")
        elif not root.is_dir():
            problems.append(f"{name}: {root} ({origin}) is not a folder")
        else:
            log.info("%s: reading %s (%s)", name, root, origin)
            roots[name] = root
    if problems:
        raise FileNotFoundError(
            f"preset {cfg.preset!r} uses the real datasets {list(cfg.data.datasets)}, but:\n  "
            + "\n  ".join(problems)
            + "\nSee the README section 'Your own data', or run the embedded default (preset demo)."
        )
    return roots


def build_index(cfg: ExperimentConfig, roots: dict[str, str | os.PathLike] | None = None) -> pd.DataFrame:
    """One table of every configured dataset (``data.datasets``), in ``DATASETS`` order.

    ``roots`` maps dataset -> root folder; by default the real roots of the config (environment
    variables / ``data.roots``) for ``source: real``, or the synthetic cohort already written to
    ``<results>/<preset>/data/raw`` for ``source: synthetic``. See :func:`build_index_with_skips`
    for the rows skipped under ``on_missing: skip``.
    """
    return build_index_with_skips(cfg, roots)[0]


def build_index_with_skips(
    cfg: ExperimentConfig, roots: dict[str, str | os.PathLike] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`build_index` and the table of skipped rows (``dataset, source, line, path, reason``)."""
    if roots is None:
        roots = real_roots(cfg) if cfg.data.source == "real" else cohort_roots(layout.cohort_dir(cfg))
    parts, skipped = [], []
    for name in DATASETS:
        if name not in cfg.data.datasets:
            continue
        if name not in roots:
            raise KeyError(f"no root given for dataset {name!r}")
        rows, skip = read_dataset(name, roots[name], cfg)
        frame = keep_views(unify(rows, name, cfg.data.uncertain), cfg.data.views, name)
        log.info("indexed %s: %d scans of %d patients", name, len(frame), frame["patient_id"].nunique())
        parts.append(frame)
        skipped.append(skip)
    index = pd.concat(parts, ignore_index=True)
    if "official_split" in index:
        index["official_split"] = index["official_split"].fillna("")
    dup = index["scan_id"].duplicated()
    if dup.any():  # pragma: no cover - ids are prefixed by dataset
        raise DataFormatError(f"duplicate scan_id across datasets: {index.loc[dup, 'scan_id'].head().tolist()}")
    return index, pd.concat(skipped, ignore_index=True)


def source_files(name: str, root: str | os.PathLike, cfg: ExperimentConfig | None = None) -> list[Path]:
    """The label/metadata files the reader of dataset ``name`` reads (they go into the stage hash)."""
    if name == "nih":
        return [nih.label_file(root)]
    if name == "chexpert":
        return [chexpert.chexpert_csv(root, "train")]
    if cfg is None:
        return mimic.label_files(root)
    return mimic.label_files(root, cfg.data.mimic_labels, cfg.data.mimic_split == "official")
