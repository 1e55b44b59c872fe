"""CheXpert v1.0: 224,316 chest radiographs (frontal and lateral) of 65,240 patients, Stanford Hospital.

Irvin J, Rajpurkar P, Ko M, et al. *CheXpert: A large chest radiograph dataset with uncertainty
labels and expert comparison.* AAAI 2019. Download (registration, research use agreement):
https://stanfordmlgroup.github.io/competitions/chexpert/ (``CheXpert-v1.0-small``, about 11 GB,
or the full-resolution ``CheXpert-v1.0``).

Files under the root (``DDVAL_CHEXPERT_ROOT`` or ``data.roots.chexpert``: the folder holding
``train.csv``, or its parent):

* ``train.csv``, one row per image, columns ``Path``, ``Sex`` (``Male``/``Female``/``Unknown``),
  ``Age``, ``Frontal/Lateral``, ``AP/PA`` (``AP``/``PA``/``LL``/``RL``, blank for laterals), then the
  14 observations of the CheXpert labeler (``No Finding`` ... ``Support Devices``);
* the JPGs at ``<folder>/train/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg`` (8 bit).

Quirks: ``Path`` starts with the download's folder name (``CheXpert-v1.0-small/``); that first
component is replaced by the folder that actually holds ``train.csv``, so a renamed download works.
Labels are 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not mentioned). The official
``valid.csv`` (radiologist labels, 234 images) is not used, as in the paper.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.config import ROOT_ENV_VARS
from ddval.data.sources import (
    ages,
    check_files,
    codes,
    fail,
    label_codes,
    no_duplicates,
    read_csv,
)

#: Source column of each harmonised label (CheXpert and MIMIC-CXR use the same names).
CHEXPERT_LABELS: dict[str, str] = {
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "consolidation": "Consolidation",
    "edema": "Edema",
    "no_finding": "No Finding",
    "pleural_effusion": "Pleural Effusion",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
}

_PATH_PATTERN = r"^[^/]+/(?:train|valid|test)/(patient\d+)/(study\d+)/([^/]+)\.jpg$"
_PATH_EXPECTED = (
    "<folder>/train/patientNNNNN/studyN/<view>.jpg, "
    "e.g. CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
)


def chexpert_csv(root: str | os.PathLike, split: str = "train") -> Path:
    """``train.csv`` (or ``valid.csv``) of a CheXpert download rooted at ``root`` or at its parent."""
    root = Path(root).expanduser().resolve()
    folders = [root, root / "CheXpert-v1.0-small", root / "CheXpert-v1.0"]
    for folder in folders:
        if (folder / f"{split}.csv").exists():
            return folder / f"{split}.csv"
    raise FileNotFoundError(
        f"CheXpert: {split}.csv not found in any of {[str(f) for f in folders]} ({ROOT_ENV_VARS['chexpert']} "
        "should point at the folder holding train.csv, or at its parent)"
    )


def read_chexpert(
    root: str | os.PathLike, on_missing: str = "error", splits: tuple[str, ...] = ("train",)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans of the CheXpert download at ``root`` (``train.csv``; ``splits`` may add ``"valid"``)
    in the unified columns (labels as codes 1.0/0.0/-1.0/NaN, plus ``_line``) and the skipped rows."""
    parts, skipped = [], []
    for split in splits:
        kept, skip = _read_split(chexpert_csv(root, split), on_missing)
        parts.append(kept)
        skipped.append(skip)
    frame = pd.concat(parts, ignore_index=True)
    no_duplicates(Path(root), frame, ["scan_id"])
    return frame, pd.concat(skipped, ignore_index=True)


def _read_split(path: Path, on_missing: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = path.parent
    fields = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"] + list(CHEXPERT_LABELS.values())
    frame = read_csv(path, fields)
    ids = frame["Path"].str.extract(_PATH_PATTERN)
    fail(path, frame, ids[0].isna(), "Path", _PATH_EXPECTED)
    no_duplicates(path, frame, ["Path"])
    ap_pa = frame["AP/PA"].str.strip()
    lateral = frame["Frontal/Lateral"].str.strip() == "Lateral"
    out = pd.DataFrame(
        {
            "scan_id": "chexpert:" + ids[0] + "/" + ids[1] + "/" + ids[2],
            "patient_id": "chexpert:" + ids[0],
            "study_id": "chexpert:" + ids[0] + "/" + ids[1],
            "sex": codes(path, frame, "Sex", {"Male": "M", "Female": "F", "Unknown": "U"}, allow_blank=True).fillna(
                "U"
            ),
            "age": ages(path, frame, "Age"),
            "view": codes(path, frame, "Frontal/Lateral", {"Frontal": "frontal", "Lateral": "lateral"}),
            "view_position": np.where(ap_pa.notna(), ap_pa.fillna(""), np.where(lateral, "LATERAL", "")),
            "path": str(folder) + "/" + frame["Path"].str.split("/", n=1).str[1],
            "_line": frame["_line"],
        }
    )
    codes(path, frame, "AP/PA", {k: k for k in ("AP", "PA", "LL", "RL")}, allow_blank=True)
    out = pd.concat([out, label_codes(path, frame, CHEXPERT_LABELS)], axis=1)
    return check_files(out, path, on_missing, "chexpert")
