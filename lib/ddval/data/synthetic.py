"""The embedded synthetic cohort, written in the real on-disk formats of NIH, CheXpert and MIMIC-CXR-JPG.

:func:`write_cohort` samples patients, studies and findings per *site* (one site per source
dataset; :mod:`ddval.data.sampling`), renders every scan with :mod:`ddval.data.render` (a real
radiograph, deformed per patient, with the findings drawn in), and writes folders and CSV files
exactly as the real datasets ship (:mod:`ddval.data.formats`), so that the dataset readers read them
with the same code as the real data::

    <root>/nih/       NIH ChestX-ray14
    <root>/chexpert/  CheXpert-v1.0-small
    <root>/mimic/     MIMIC-CXR-JPG 2.0.0 (+ MIMIC-IV demographics under mimic-iv/hosp/)

Only frontal (PA/AP) scans are generated (the indexers handle lateral views; see the tests with
hand-written rows). Generation is deterministic per seed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ddval.config import ExperimentConfig, SyntheticConfig, load_config
from ddval.data.formats import write_chexpert, write_mimic, write_nih
from ddval.data.sampling import sample_site

log = logging.getLogger(__name__)

#: Version of the generator: bump it when a change alters the pixels or labels, so that cohorts
#: cached in run directories are regenerated.
GENERATOR_VERSION = 2

#: Name of the marker file that identifies a folder written by :func:`write_cohort`.
MARKER = ".ddval-synthetic.json"


def _as_config(preset: str | ExperimentConfig) -> ExperimentConfig:
    return preset if isinstance(preset, ExperimentConfig) else load_config(preset)


def cohort_roots(root: str | os.PathLike) -> dict[str, Path]:
    """Dataset roots of a cohort written under ``root`` (what ``DDVAL_<DATASET>_ROOT`` would point at)."""
    root = Path(root)
    return {"nih": root / "nih", "chexpert": root / "chexpert", "mimic": root / "mimic"}


def write_cohort(root: str | os.PathLike, preset: str | ExperimentConfig = "demo", seed: int | None = None,
                 datasets: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write the synthetic cohort of ``preset`` (sizes from ``data.synthetic``) under ``root``.

    ``seed`` defaults to ``data.synthetic.seed``; ``datasets`` to ``data.datasets``. Each dataset is
    written into a temporary folder and renamed into place when complete, so a killed run never
    leaves a folder that looks finished. A folder previously written by this function is replaced;
    any other existing folder is an error (nothing is overwritten silently). Returns the dataset
    roots (see :func:`cohort_roots`).
    """
    cfg = _as_config(preset)
    syn: SyntheticConfig = cfg.data.synthetic
    seed = syn.seed if seed is None else int(seed)
    datasets = tuple(cfg.data.datasets if datasets is None else datasets)
    roots = cohort_roots(root)
    for name in datasets:
        n = int(syn.patients.get(name, 0))
        if n < 1:
            raise ValueError(f"data.synthetic.patients.{name} must be >= 1 (got {syn.patients.get(name)!r})")
        final = roots[name]
        if final.exists() and not (final / MARKER).exists():
            raise FileExistsError(f"{final} exists and was not written by ddval.data.synthetic; refusing to replace it")
        tmp = final.parent / f".{final.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        frame = sample_site(name, n, syn.max_scans_per_patient, seed, syn.image_size)
        if name == "nih":
            write_nih(tmp, frame, seed)
        elif name == "chexpert":
            n_valid = max(2, n // 50)
            valid = sample_site(name, n + n_valid, 1, seed + 1, syn.image_size).iloc[n:]
            write_chexpert(tmp, frame, valid, seed)
        else:
            write_mimic(tmp, frame, seed)
        info = {"dataset": name, "seed": seed, "patients": n, "scans": len(frame),
                "max_scans_per_patient": syn.max_scans_per_patient, "image_size": syn.image_size}
        (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        log.info("synthetic %s: %d patients, %d scans -> %s", name, n, len(frame), final)
    return {name: roots[name] for name in datasets}
