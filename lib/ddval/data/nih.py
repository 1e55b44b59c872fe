"""NIH ChestX-ray14: 112,120 frontal chest radiographs of 30,805 patients, 14 findings mined from reports.

Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. *ChestX-ray8: Hospital-scale chest X-ray database
and benchmarks on weakly-supervised classification and localization of common thorax diseases.*
CVPR 2017. Download: https://nihcc.app.box.com/v/ChestXray-NIHCC (or the Kaggle mirror
``nih-chest-xrays/data``); no registration.

Files under the root (``DDVAL_NIH_ROOT`` or ``data.roots.nih``):

* ``Data_Entry_2017_v2020.csv`` (or the older ``Data_Entry_2017.csv``, or the 5,606-image Kaggle sample's
  ``sample_labels.csv``, whose last four columns are spelled ``OriginalImageWidth`` etc.), one row per
  image, columns
  ``Image Index`` (``<8-digit patient>_<3-digit follow-up>.png``), ``Finding Labels``, ``Follow-up #``,
  ``Patient ID``, ``Patient Age``, ``Patient Gender`` (``M``/``F``), ``View Position`` (``PA``/``AP``),
  ``OriginalImage[Width``, ``Height]``, ``OriginalImagePixelSpacing[x``, ``y]`` (the brackets split
  two header names in the real file);
* the PNGs (1024 x 1024, 8-bit grayscale, a few RGBA) in ``images/`` or in the ``images_NNN/images/`` folders of the
  Box/Kaggle download.

Quirks: ``Finding Labels`` is ``|``-separated names from :data:`NIH_FINDINGS` (an unknown name is an
error: a typo would silently become 0); "Effusion" is pleural effusion; NIH has no uncertain or blank
labels. The older CSV and the Kaggle sample write ages with a unit (``058Y`` years, ``013M`` months,
``001D`` days), converted to years; a few rows have implausible ages (> 120), which become unknown.
Sex is recorded per image and occasionally differs between a patient's images: each patient gets their
most frequent value. The official ``train_val_list.txt``/``test_list.txt``
are not used (ddval splits by patient itself, as the paper).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.config import ROOT_ENV_VARS
from ddval.data.chexpert import CHEXPERT_LABELS
from ddval.data.sources import ages, check_files, codes, fail, find_file, no_duplicates, read_csv

#: NIH finding name of each harmonised label.
NIH_LABELS: dict[str, str] = {**CHEXPERT_LABELS, "pleural_effusion": "Effusion"}
#: Every finding name that may appear in NIH's ``Finding Labels``.
NIH_FINDINGS = frozenset(
    {
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Effusion",
        "Emphysema",
        "Fibrosis",
        "Hernia",
        "Infiltration",
        "Mass",
        "No Finding",
        "Nodule",
        "Pleural_Thickening",
        "Pneumonia",
        "Pneumothorax",
    }
)
#: Names of the label file, newest first.
NIH_CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv", "sample_labels.csv")


def label_file(root: str | os.PathLike) -> Path:
    """The label CSV of the NIH download at ``root``."""
    return find_file(
        Path(root),
        NIH_CSV_NAMES,
        "NIH ChestX-ray14",
        f"{ROOT_ENV_VARS['nih']} should point at the folder holding Data_Entry_2017_v2020.csv and images/",
    )


def image_folders(root: Path) -> list[Path]:
    """``images/`` and the ``images_NNN/images/`` folders of the split download, in name order."""
    found = [root / "images"] if (root / "images").is_dir() else []
    for sub in sorted(root.glob("images_*")):
        found += [sub / "images"] if (sub / "images").is_dir() else ([sub] if sub.is_dir() else [])
    return found


def read_nih(root: str | os.PathLike, on_missing: str = "error") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans of the NIH download at ``root`` in the unified columns (labels as codes 1.0/0.0,
    plus ``_line``) and the table of rows skipped because their image is absent."""
    root = Path(root).expanduser().resolve()
    path = label_file(root)
    fields = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position"]
    frame = read_csv(path, fields)
    fail(path, frame, frame["Image Index"].isna(), "Image Index", "an image file name")
    no_duplicates(path, frame, ["Image Index"])
    pid = pd.to_numeric(frame["Patient ID"], errors="coerce")
    fail(path, frame, pid.isna() | (pid < 0) | (pid % 1 != 0), "Patient ID", "a non-negative integer")
    labels = _finding_codes(path, frame)
    sex = codes(path, frame, "Patient Gender", {"M": "M", "F": "F"})
    stem = frame["Image Index"].str.strip().str.replace(r"\.png$", "", regex=True)
    patient = "nih:" + pid.astype("int64").astype(str).str.zfill(8)
    out = pd.DataFrame(
        {
            "scan_id": "nih:" + stem,
            "patient_id": patient,
            "study_id": "nih:" + stem,
            "sex": _patient_mode(patient, sex),
            "age": ages(path, frame, "Patient Age"),
            "view": codes(path, frame, "View Position", {"PA": "frontal", "AP": "frontal"}),
            "view_position": frame["View Position"].str.strip(),
            "_line": frame["_line"],
        }
    )
    out = pd.concat([out, labels], axis=1)
    out["path"] = _locate(root, frame["Image Index"].str.strip())
    return check_files(out, path, on_missing, "nih")


def _finding_codes(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """1.0 / 0.0 per harmonised label from the ``|``-separated ``Finding Labels``."""
    findings = frame["Finding Labels"].fillna("").str.get_dummies(sep="|")
    findings.columns = findings.columns.str.strip()
    unknown = sorted(set(findings.columns) - NIH_FINDINGS - {""})
    if unknown:
        bad = findings[unknown].any(axis=1)
        fail(path, frame, bad, "Finding Labels", f"'|'-separated names from {sorted(NIH_FINDINGS)}; unknown {unknown}")
    return pd.DataFrame(
        {lab: (findings[name] > 0).astype(float) if name in findings else 0.0 for lab, name in NIH_LABELS.items()},
        index=frame.index,
    )


def _locate(root: Path, names: pd.Series) -> np.ndarray:
    """Path of every image in ``images/`` or ``images_NNN/images/`` (each folder is listed once);
    an image found nowhere is expected in ``images/`` (and reported absent later)."""
    where: dict[str, str] = {}
    for folder in reversed(image_folders(root)):
        where.update(dict.fromkeys(os.listdir(folder), str(folder)))
    located = names.map(where)
    return np.where(located.notna(), located.fillna("") + "/" + names, str(root / "images") + "/" + names)


def _patient_mode(patient: pd.Series, sex: pd.Series) -> pd.Series:
    """Each patient's most frequent sex (ties: first in file order), broadcast to every scan (vectorised)."""
    counts = pd.DataFrame({"patient": patient, "sex": sex, "order": np.arange(len(sex))})
    stats = counts.groupby(["patient", "sex"], sort=False).agg(n=("order", "size"), first=("order", "min"))
    best = stats.reset_index().sort_values(["patient", "n", "first"], ascending=[True, False, True])
    best = best.drop_duplicates("patient").set_index("patient")["sex"]
    return patient.map(best)
