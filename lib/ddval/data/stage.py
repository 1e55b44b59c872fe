"""The two data stages: 01 index (``index.parquet``) and 02 resize (``index_resized.parquet``).

Each stage is skipped when its completion record (:mod:`ddval.store`) has the same parameters, and
re-run otherwise; where the files live is :mod:`ddval.layout`'s. Notebooks and the later stages read
the tables with :func:`read_index` and :func:`read_resized_index`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.data import synthetic
from ddval.data.index import build_index_with_skips, real_roots, source_files
from ddval.data.resize import resize_index

Root = str | os.PathLike | None


def run_index_stage(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """Stage 01: (synthetic source) write the cohort to ``<data>/raw`` once, then index every
    configured dataset into ``<data>/index.parquet`` (skipped when complete with the same
    parameters). Returns the index."""
    ddir = layout.data_dir(cfg, root)
    if cfg.data.source == "synthetic":
        roots = _write_cohort_once(cfg, root)
        # The cohort is determined by its own parameters: hash those rather than its paths and file
        # times, so a preset gives the same hashes (and byte-identical checkpoints, hence the same
        # CIDs and gas in the economy stage) in every results folder and on every re-run.
        inputs: dict[str, Any] = {"cohort": store.param_hash(_cohort_params(cfg))}
    else:
        roots = real_roots(cfg)
        files = [f for name in cfg.data.datasets for f in source_files(name, roots[name])]
        inputs = {
            "roots": {k: str(Path(v).resolve()) for k, v in roots.items() if k in cfg.data.datasets},
            "files": _fingerprint(files),
        }
    params = {
        "source": cfg.data.source, "datasets": cfg.data.datasets, "uncertain": cfg.data.uncertain,
        "blank": cfg.data.blank, "on_missing": cfg.data.on_missing, **inputs,
    }

    def compute() -> list[Path]:
        index, skipped = build_index_with_skips(cfg, roots)
        return store.write_table_and_report(layout.index_path(cfg, root), index, ddir / "index_skipped.csv", skipped)

    store.run_stage(ddir, "index", params, compute)
    return read_index(cfg, root)


def run_resize_stage(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """Stage 02: resize every scan of ``index.parquet`` to ``data.image_size`` and write
    ``index_resized.parquet`` (and ``resize_quarantine.csv`` when scans were quarantined).
    Skipped when complete with the same parameters; resumes file by file after a kill."""
    ddir = layout.data_dir(cfg, root)
    index_record = store.require_record(
        ddir, "index", "run stage 01 first (notebooks/01_index.ipynb or ddval.data.run_index_stage)"
    )
    size = cfg.data.image_size
    params = {"image_size": size, "on_corrupt": cfg.data.on_corrupt, "index": index_record["params_hash"]}

    def compute() -> list[Path]:
        resized, quarantine = resize_index(read_index(cfg, root), layout.resized_dir(cfg, root), size,
                                           workers=cfg.data.workers, on_corrupt=cfg.data.on_corrupt)
        return store.write_table_and_report(
            layout.resized_index_path(cfg, root), resized, ddir / "resize_quarantine.csv", quarantine
        )

    store.run_stage(ddir, "resize", params, compute)
    return read_resized_index(cfg, root)


def read_index(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """``index.parquet`` of the preset (written by :func:`run_index_stage`)."""
    return store.read_table(layout.index_path(cfg, root))


def read_resized_index(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """``index_resized.parquet`` of the preset (written by :func:`run_resize_stage`)."""
    return store.read_table(layout.resized_index_path(cfg, root))


def _cohort_params(cfg: ExperimentConfig) -> dict[str, Any]:
    return {"synthetic": cfg.data.synthetic, "datasets": cfg.data.datasets, "generator": synthetic.GENERATOR_VERSION}


def _write_cohort_once(cfg: ExperimentConfig, root: Root) -> dict[str, Path]:
    """Write the synthetic cohort to ``<data>/raw`` unless it is there with the same parameters;
    returns the dataset roots."""
    raw = layout.cohort_dir(cfg, root)

    def write() -> list[Path]:
        written = synthetic.write_cohort(raw, cfg)
        return [folder / synthetic.MARKER for folder in written.values()]

    store.run_stage(raw, "cohort", _cohort_params(cfg), write)
    return synthetic.cohort_roots(raw)


def _fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
