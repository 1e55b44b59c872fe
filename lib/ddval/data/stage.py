"""The two data stages: 01 index (``index.parquet``) and 02 resize (``index_resized.parquet``).

Each stage is skipped when its completion record (:mod:`ddval.store`) has the same parameters, and
re-run otherwise; where the files live is :mod:`ddval.layout`'s. Notebooks and the later stages read
the tables with :func:`read_index` and :func:`read_resized_index`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ddval import layout, store
from ddval.config import DataConfig, ExperimentConfig
from ddval.data import synthetic
from ddval.data.index import build_index_with_skips, real_roots, source_files
from ddval.data.resize import resize_index

Root = str | os.PathLike | None

#: Version of the scan decoding (:mod:`ddval.data.images`): bump it when a change alters resized pixels.
#: 2: 16-bit PNGs and DICOM windowed from their real bit depth (1 kept the top 8 of 16 bits).
DECODER_VERSION = 2
#: File in the resized folder naming the parameters its scans were written with.
RESIZED_MARKER = ".resize-params.json"


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
        files = [f for name in cfg.data.datasets for f in source_files(name, roots[name], cfg)]
        inputs = {
            "roots": {k: str(Path(v).resolve()) for k, v in roots.items() if k in cfg.data.datasets},
            "files": _fingerprint(files),
        }
    params = {
        "source": cfg.data.source,
        "datasets": cfg.data.datasets,
        "uncertain": cfg.data.uncertain,
        "blank": cfg.data.blank,
        "on_missing": cfg.data.on_missing,
        **inputs,
        **_changed_options(cfg),
    }

    def compute() -> list[Path]:
        index, skipped = build_index_with_skips(cfg, roots)
        return store.write_table_and_report(layout.index_path(cfg, root), index, ddir / "index_skipped.csv", skipped)

    store.run_stage(ddir, "index", params, compute)
    return read_index(cfg, root)


def run_resize_stage(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """Stage 02: resize every scan of ``index.parquet`` to ``data.image_size`` and write
    ``index_resized.parquet`` (and ``resize_quarantine.csv`` when scans were quarantined).
    Skipped when complete with the same parameters and every resized scan intact; resumes file by
    file after a kill, a failure or a change of options that leaves pixels alone."""
    ddir = layout.data_dir(cfg, root)
    index_record = store.require_record(
        ddir, "index", "run stage 01 first (notebooks/01_index.ipynb or ddval.data.run_index_stage)"
    )
    size = cfg.data.image_size
    params = {"image_size": size, "on_corrupt": cfg.data.on_corrupt, "index": index_record["params_hash"]}
    if cfg.data.source == "real":
        # the synthetic cohort is 8-bit PNG/JPEG, which no decoder change alters: its hash (and the
        # shipped demo run) stays valid, while real scans are resized again after a decoder change
        params["decoder"] = DECODER_VERSION

    def compute() -> list[Path]:
        out_dir = _resized_dir_for(layout.resized_dir(cfg, root), store.param_hash(_pixel_params(cfg, root)))
        resized, quarantine = resize_index(
            read_index(cfg, root), out_dir, size, workers=cfg.data.workers, on_corrupt=cfg.data.on_corrupt
        )
        tables = store.write_table_and_report(
            layout.resized_index_path(cfg, root), resized, ddir / "resize_quarantine.csv", quarantine
        )
        return [*tables, *map(Path, resized["path"])]  # the record vouches for every resized scan too

    resized_folder = f"{layout.resized_dir(cfg, root).relative_to(ddir)}/"
    store.run_stage(ddir, "resize", params, compute, resumable=lambda rel: rel.startswith(resized_folder))
    return read_resized_index(cfg, root)


def _pixel_params(cfg: ExperimentConfig, root: Root) -> dict[str, Any]:
    """What decides the pixels of a resized scan besides its size (the folder's name): the decoder and
    where the scans are read from. Not the index options or ``on_corrupt``: changing those (as the
    corrupt-scan error advises) keeps the scans already resized."""
    if cfg.data.source == "synthetic":
        sources: dict[str, Any] = {"cohort": store.param_hash(_cohort_params(cfg))}
    else:
        sources = {"roots": {k: str(Path(v).resolve()) for k, v in real_roots(cfg).items()}}
    return {"decoder": DECODER_VERSION, **sources}


def _resized_dir_for(folder: Path, pixels_hash: str) -> Path:
    """``folder``, emptied unless its resized files were written with ``pixels_hash``
    (:func:`_pixel_params`): files are kept across a killed or failed run and a change of options
    that leaves pixels alone (resume), never across another decoder or other source scans."""
    marker = folder / RESIZED_MARKER
    if folder.exists() and not (marker.exists() and store.read_json(marker).get("params_hash") == pixels_hash):
        shutil.rmtree(folder)
    store.write_json(marker, {"params_hash": pixels_hash})
    return folder


def read_index(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """``index.parquet`` of the preset (written by :func:`run_index_stage`)."""
    return store.read_table(layout.index_path(cfg, root))


def read_resized_index(cfg: ExperimentConfig, root: Root = None) -> pd.DataFrame:
    """``index_resized.parquet`` of the preset (written by :func:`run_resize_stage`)."""
    return store.read_table(layout.resized_index_path(cfg, root))


def _changed_options(cfg: ExperimentConfig) -> dict[str, Any]:
    """The index options that differ from their defaults. Only these enter the stage hash, so that
    adding an option leaves the hash of every existing run (and of the shipped demo) unchanged."""
    default = DataConfig()
    names = ("views", "mimic_split", "mimic_labels")
    return {n: getattr(cfg.data, n) for n in names if getattr(cfg.data, n) != getattr(default, n)}


def _cohort_params(cfg: ExperimentConfig) -> dict[str, Any]:
    return {"synthetic": cfg.data.synthetic, "datasets": cfg.data.datasets, "generator": synthetic.GENERATOR_VERSION}


def _write_cohort_once(cfg: ExperimentConfig, root: Root) -> dict[str, Path]:
    """Write the synthetic cohort to ``<data>/raw`` unless it is there with the same parameters;
    returns the dataset roots."""
    raw = layout.cohort_dir(cfg, root)

    def write() -> list[Path]:  # the record vouches for every file of the cohort (demo: 2,252 files, 13 MB)
        written = synthetic.write_cohort(raw, cfg)
        return [f for folder in written.values() for f in synthetic.cohort_files(folder)]

    store.run_stage(raw, "cohort", _cohort_params(cfg), write)
    return synthetic.cohort_roots(raw)


def _fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
