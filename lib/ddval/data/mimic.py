"""MIMIC-CXR-JPG 2.0.0: 377,110 chest radiographs of 65,379 patients, Beth Israel Deaconess Medical Center.

Johnson AEW, Pollard TJ, Greenbaum NR, et al. *MIMIC-CXR-JPG, a large publicly available database of
labeled chest radiographs.* arXiv:1901.07042 (2019); PhysioNet, https://doi.org/10.13026/8360-t248.
Sex and age come from MIMIC-IV (Johnson AEW, Bulgarelli L, Shen L, et al. *MIMIC-IV, a freely
accessible electronic health record dataset.* Sci Data 10, 1 (2023)). Both need PhysioNet
credentialed access and the data use agreement: https://physionet.org/content/mimic-cxr-jpg/2.0.0/.

Files under the root (``DDVAL_MIMIC_ROOT`` or ``data.roots.mimic``: the folder holding the CSVs):

* ``mimic-cxr-2.0.0-metadata.csv(.gz)``: one row per image, ``dicom_id, subject_id, study_id,
  PerformedProcedureStepDescription, ViewPosition, Rows, Columns, StudyDate, StudyTime, ...,
  ViewCodeSequence_CodeMeaning, ...``;
* ``mimic-cxr-2.0.0-chexpert.csv(.gz)``: one row per study, ``subject_id, study_id`` and the 14
  observations (alphabetical) of the CheXpert labeler, coded like CheXpert (1.0 / 0.0 / -1.0 / blank);
  ``mimic-cxr-2.0.0-negbio.csv(.gz)`` holds the NegBio labeler's, in the same columns
  (``data.mimic_labels: negbio``);
* ``mimic-cxr-2.0.0-split.csv(.gz)``: ``dicom_id, study_id, subject_id, split`` (``train``,
  ``validate``, ``test``; by patient), read only with ``data.mimic_split: official`` (the index then
  carries it in an ``official_split`` column, and the partitions take MIMIC's test pool from it);
* the JPGs (8 bit) at ``files/p<2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``;
* MIMIC-IV ``patients.csv(.gz)`` (``subject_id, gender, anchor_age, anchor_year, ...``), found via
  ``DDVAL_MIMIC_IV_ROOT`` or under the MIMIC root (``mimic-iv/hosp``, ``hosp``, ``core``, or the
  PhysioNet sibling ``../../mimiciv/<version>/hosp``).

Quirks: metadata is inner-joined with the labels on (``subject_id``, ``study_id``): images of
unlabelled studies drop out, as in the original code. ``ViewPosition`` is sometimes blank; the view is
then read from ``ViewCodeSequence_CodeMeaning`` (e.g. "postero-anterior", "left lateral"). Age at the
study = ``anchor_age`` + study year - ``anchor_year`` (MIMIC-CXR and MIMIC-IV share each patient's date
shift); a patient missing from MIMIC-IV gets sex ``U`` and an unknown age.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.config import MIMIC_IV_ROOT_ENV, ROOT_ENV_VARS
from ddval.data.chexpert import CHEXPERT_LABELS
from ddval.data.sources import (
    AGE_RANGE,
    DataFormatError,
    check_files,
    codes,
    fail,
    find_file,
    label_codes,
    no_duplicates,
    numbers,
    read_csv,
)

log = logging.getLogger(__name__)

#: The MIMIC-CXR-JPG files the reader may read (each also found with ``.gz``).
MIMIC_METADATA = "mimic-cxr-2.0.0-metadata.csv"
MIMIC_LABEL_FILES = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv", "negbio": "mimic-cxr-2.0.0-negbio.csv"}
MIMIC_SPLIT = "mimic-cxr-2.0.0-split.csv"
#: Values of the official split file's ``split`` column.
OFFICIAL_SPLITS = ("train", "validate", "test")
#: Environment variable pointing at MIMIC-IV (when it is not under the MIMIC-CXR-JPG root).
MIMIC_IV_ENV = MIMIC_IV_ROOT_ENV
#: Projection codes -> view. NIH uses PA/AP; CheXpert's ``AP/PA`` adds LL/RL; MIMIC's ``ViewPosition``
#: has all of these (blank is allowed there and resolved from ``ViewCodeSequence_CodeMeaning``).
VIEW_OF_POSITION: dict[str, str] = {
    "PA": "frontal",
    "AP": "frontal",
    "AP AXIAL": "frontal",
    "PA LLD": "frontal",
    "AP LLD": "frontal",
    "PA RLD": "frontal",
    "AP RLD": "frontal",
    "LATERAL": "lateral",
    "LL": "lateral",
    "RL": "lateral",
    "XTABLE LATERAL": "lateral",
    "SWIMMERS": "lateral",
    "LAO": "oblique",
    "RAO": "oblique",
    "LPO": "oblique",
    "RPO": "oblique",
}
_HINT = f"{ROOT_ENV_VARS['mimic']} should point at the MIMIC-CXR-JPG folder holding the CSVs and files/"


def mimic_iv_folder(root: str | os.PathLike) -> Path:
    """Folder holding MIMIC-IV ``patients.csv(.gz)``: ``$DDVAL_MIMIC_IV_ROOT`` (or its ``hosp``/``core``),
    else next to / under the MIMIC-CXR-JPG root (see the module docstring)."""
    root = Path(root).expanduser().resolve()
    candidates: list[Path] = []
    env = os.environ.get(MIMIC_IV_ENV)
    if env:
        base = Path(env).expanduser()
        candidates += [base, base / "hosp", base / "core"]
    candidates += [root / "mimic-iv" / "hosp", root / "mimic-iv" / "core", root / "hosp", root / "core", root]
    candidates += sorted(root.parent.parent.glob("mimiciv/*/hosp"), reverse=True)
    candidates += sorted(root.parent.parent.glob("mimiciv/*/core"), reverse=True)
    for folder in candidates:
        if (folder / "patients.csv").exists() or (folder / "patients.csv.gz").exists():
            return folder
    raise FileNotFoundError(
        f"MIMIC-IV patients.csv(.gz) (sex and age of MIMIC-CXR patients) not found; looked in "
        f"{[str(c) for c in candidates]}; set {MIMIC_IV_ENV} to the MIMIC-IV folder (with hosp/ or core/)"
    )


def label_files(root: str | os.PathLike, labels: str = "chexpert", official_split: bool = False) -> list[Path]:
    """The metadata, label (``labels``: ``chexpert`` or ``negbio``), split (``official_split``) and
    MIMIC-IV patients files the reader uses."""
    root = Path(root)
    names = [MIMIC_METADATA, MIMIC_LABEL_FILES[labels]] + ([MIMIC_SPLIT] if official_split else [])
    return [find_file(root, [f], "MIMIC-CXR-JPG", _HINT) for f in names] + [
        find_file(mimic_iv_folder(root), ["patients.csv"], "MIMIC-IV patients")
    ]


def read_mimic(
    root: str | os.PathLike,
    on_missing: str = "error",
    mimic_iv: str | os.PathLike | None = None,
    labels: str = "chexpert",
    official_split: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans of the MIMIC-CXR-JPG download at ``root`` (demographics from the MIMIC-IV folder
    ``mimic_iv``, or the one :func:`mimic_iv_folder` finds) in the unified columns (labels as codes
    of the ``labels`` labeler, plus ``_line``; plus ``official_split`` when ``official_split``) and
    the skipped rows."""
    root = Path(root).expanduser().resolve()
    if labels not in MIMIC_LABEL_FILES:
        raise ValueError(f"MIMIC-CXR labels: {labels!r} is not one of {sorted(MIMIC_LABEL_FILES)}")
    meta_path = find_file(root, [MIMIC_METADATA], "MIMIC-CXR-JPG metadata", _HINT)
    label_path = find_file(root, [MIMIC_LABEL_FILES[labels]], f"MIMIC-CXR-JPG {labels} labels", _HINT)
    iv = Path(mimic_iv) if mimic_iv is not None else mimic_iv_folder(root)
    patients_path = find_file(iv, ["patients.csv"], "MIMIC-IV patients")

    frame = _images_with_labels(meta_path, label_path)
    view = _views(meta_path, frame)
    frame = _with_demographics(frame, meta_path, patients_path)
    sid = frame["subject_id"]
    out = pd.DataFrame(
        {
            "scan_id": "mimic:" + frame["dicom_id"],
            "patient_id": "mimic:" + sid,
            "study_id": "mimic:" + frame["study_id"],
            "sex": frame["sex"].fillna("U"),
            "age": frame["age"],
            "view": view,
            "view_position": frame["ViewPosition"].fillna("").str.strip(),
            "path": str(root / "files")
            + "/p"
            + sid.str[:2]
            + "/p"
            + sid
            + "/s"
            + frame["study_id"]
            + "/"
            + frame["dicom_id"]
            + ".jpg",
            "_line": frame["_line"],
        }
    )
    out = pd.concat([out, frame[list(CHEXPERT_LABELS)]], axis=1)
    if official_split:
        out["official_split"] = _official_split(find_file(root, [MIMIC_SPLIT], "MIMIC-CXR-JPG split", _HINT), frame)
    return check_files(out, meta_path, on_missing, "mimic")


def _official_split(path: Path, frame: pd.DataFrame) -> pd.Series:
    """The official split of every image of ``frame`` (by ``dicom_id``); an image missing from the
    split file, or a subject in two splits, is an error naming the file."""
    table = read_csv(path, ["dicom_id", "subject_id", "split"])
    no_duplicates(path, table, ["dicom_id"])
    fail(path, table, ~table["split"].isin(OFFICIAL_SPLITS), "split", f"one of {list(OFFICIAL_SPLITS)}")
    mixed = table.groupby("subject_id")["split"].nunique()
    fail(path, table, table["subject_id"].isin(mixed.index[mixed > 1]), "subject_id", "one split per subject")
    split = frame["dicom_id"].map(table.set_index("dicom_id")["split"])
    if split.isna().any():
        absent = frame.loc[split.isna(), "dicom_id"].head(5).tolist()
        raise DataFormatError(
            f"{path}: {int(split.isna().sum())} image(s) of the metadata have no split, e.g. {absent}"
        )
    return split


def _images_with_labels(meta_path: Path, label_path: Path) -> pd.DataFrame:
    """Metadata rows (checked) inner-joined with their study's label codes."""
    meta = read_csv(meta_path, ["dicom_id", "subject_id", "study_id", "ViewPosition"])
    for field in ("subject_id", "study_id"):
        fail(meta_path, meta, ~meta[field].str.fullmatch(r"\d+").fillna(False).astype(bool), field, "digits")
    fail(meta_path, meta, meta["dicom_id"].isna(), "dicom_id", "an image id")
    no_duplicates(meta_path, meta, ["dicom_id"])
    labels = read_csv(label_path, ["subject_id", "study_id"] + list(CHEXPERT_LABELS.values()))
    no_duplicates(label_path, labels, ["subject_id", "study_id"])
    coded = pd.concat([labels[["subject_id", "study_id"]], label_codes(label_path, labels, CHEXPERT_LABELS)], axis=1)
    frame = meta.merge(coded, on=["subject_id", "study_id"], how="inner", validate="many_to_one")
    if len(frame) < len(meta):
        log.info(
            "%s: %d image(s) of studies without labels dropped (inner join, as the paper)",
            meta_path,
            len(meta) - len(frame),
        )
    return frame


def _views(meta_path: Path, frame: pd.DataFrame) -> pd.Series:
    """View of each image: ``ViewPosition``; when blank, the DICOM view code meaning (e.g. "postero-anterior")."""
    view = codes(meta_path, frame, "ViewPosition", VIEW_OF_POSITION, allow_blank=True)
    if "ViewCodeSequence_CodeMeaning" in frame:
        meaning = frame["ViewCodeSequence_CodeMeaning"].fillna("").str.lower()
        fallback = np.select(
            [
                meaning.str.contains("oblique"),
                meaning.str.contains("lateral") & ~meaning.str.contains("decubitus"),
                meaning.str.contains("posterior|anterior"),
            ],
            ["oblique", "lateral", "frontal"],
            default="unknown",
        )
        view = view.fillna(pd.Series(fallback, index=frame.index))
    return view.fillna("unknown")


def _with_demographics(frame: pd.DataFrame, meta_path: Path, patients_path: Path) -> pd.DataFrame:
    """``frame`` with MIMIC-IV ``sex`` and the age at each study (NaN when unknown or implausible)."""
    patients = read_csv(patients_path, ["subject_id", "gender", "anchor_age", "anchor_year"])
    no_duplicates(patients_path, patients, ["subject_id"])
    patients["sex"] = codes(patients_path, patients, "gender", {"M": "M", "F": "F"})
    patients["anchor_age"] = numbers(patients_path, patients, "anchor_age", "a number of years")
    patients["anchor_year"] = numbers(patients_path, patients, "anchor_year", "a year")
    frame = frame.merge(patients[["subject_id", "sex", "anchor_age", "anchor_year"]], on="subject_id", how="left")
    unknown = frame["sex"].isna()
    if unknown.any():
        log.info(
            "%s: %d image(s) of %d subject(s) without a MIMIC-IV patients row: sex U, age unknown",
            patients_path,
            int(unknown.sum()),
            frame.loc[unknown, "subject_id"].nunique(),
        )
    age = frame["anchor_age"]
    if "StudyDate" in frame:
        date = numbers(meta_path, frame, "StudyDate", "a date YYYYMMDD")
        age = age + (np.floor(date / 10000) - frame["anchor_year"]).fillna(0.0)
    frame["age"] = age.where((age >= AGE_RANGE[0]) & (age <= AGE_RANGE[1]))
    return frame
