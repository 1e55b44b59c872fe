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
import tempfile
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


def write_cohort(
    root: str | os.PathLike,
    preset: str | ExperimentConfig = "demo",
    seed: int | None = None,
    datasets: tuple[str, ...] | None = None,
) -> dict[str, Path]:
    """Write the synthetic cohort of ``preset`` (sizes from ``data.synthetic``) under ``root``.

    ``seed`` defaults to ``data.synthetic.seed``; ``datasets`` to ``data.datasets``. Each dataset is
    written into a private temporary folder (its own name per call) and renamed into place when
    complete, so neither a killed run nor a second writer at the same time leaves a folder that looks
    finished but is not. A folder previously written by this function (or one holding no files) is
    replaced; any other existing folder is an error (nothing is overwritten silently). Returns the
    dataset roots (see :func:`cohort_roots`).
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
        _check_replaceable(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        frame = sample_site(name, n, syn.max_scans_per_patient, seed, syn.image_size)
        if name == "nih":
            write_nih(tmp, frame, seed)
        elif name == "chexpert":
            n_valid = max(2, n // 50)
            valid = sample_site(name, n + n_valid, 1, seed + 1, syn.image_size).iloc[n:]
            write_chexpert(tmp, frame, valid, seed)
        else:
            write_mimic(tmp, frame, seed)
        info = {
            "dataset": name,
            "seed": seed,
            "patients": n,
            "scans": len(frame),
            "max_scans_per_patient": syn.max_scans_per_patient,
            "image_size": syn.image_size,
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        _move_into_place(tmp, final)
        log.info("synthetic %s: %d patients, %d scans -> %s", name, n, len(frame), final)
    return {name: roots[name] for name in datasets}


def cohort_files(folder: str | os.PathLike) -> list[Path]:
    """Every file of a cohort folder written by :func:`write_cohort` (what its completion record vouches for)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def _check_replaceable(final: Path) -> None:
    """A folder may be replaced when this module wrote it (its marker) or when it holds no file."""
    if final.exists() and not (final / MARKER).exists() and any(p.is_file() for p in final.rglob("*")):
        raise FileExistsError(f"{final} exists and was not written by ddval.data.synthetic; refusing to replace it")


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` onto ``final``: the old folder is first renamed aside (a rename is
    atomic, a deletion is not), then removed. When another writer got there first, its identical
    folder is kept and ours discarded."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:  # another writer moved its folder in between: same seed, same sizes, same bytes
        if not (final / MARKER).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
