"""Index the three chest X-ray datasets into one table: one row per scan, 8 harmonised labels.

The indexers read the files exactly as the datasets are distributed (the synthetic cohort of
:mod:`ddval.data.synthetic` is written in the same formats):

* **NIH ChestX-ray14** (``DDVAL_NIH_ROOT``): ``Data_Entry_2017_v2020.csv`` (or the older
  ``Data_Entry_2017.csv``) and the PNGs in ``images/`` or in the ``images_NNN/images/`` folders of
  the Kaggle/Box download. Findings are the ``|``-separated ``Finding Labels`` ("Effusion" is
  pleural effusion). NIH has no uncertain labels.
* **CheXpert v1.0** (``DDVAL_CHEXPERT_ROOT``: the folder holding ``train.csv``, or its parent):
  ``train.csv`` (the official ``valid.csv`` is not used, as in the paper). ``Path`` gives patient,
  study and image; the first component of ``Path`` (``CheXpert-v1.0-small/``) is replaced by the
  folder that holds ``train.csv``, so a renamed download still works. Labels are 1.0 / 0.0 /
  -1.0 (uncertain) / blank.
* **MIMIC-CXR-JPG 2.0.0** (``DDVAL_MIMIC_ROOT``: the folder holding ``mimic-cxr-2.0.0-*.csv(.gz)``
  and ``files/``): ``metadata`` inner-joined with ``chexpert`` labels on (``subject_id``,
  ``study_id``) (images of unlabelled studies drop out, as in the original code); images at
  ``files/p<2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``. Sex and age come from MIMIC-IV
  ``patients.csv(.gz)`` (``gender``; age at the study = ``anchor_age`` + study year -
  ``anchor_year``, since MIMIC-CXR and MIMIC-IV share each patient's date shift). MIMIC-IV is
  found via ``DDVAL_MIMIC_IV_ROOT`` or under the MIMIC root (``mimic-iv/hosp``, ``hosp``, ``core``,
  or the PhysioNet sibling ``../../mimiciv/<version>/hosp``).

Unified columns (``docs/tables.md``): ``dataset, scan_id, path (absolute), patient_id, study_id,
sex (M/F/U), age (years, float, NaN when unknown), view (frontal/lateral/oblique/unknown),
view_position`` (the source's projection code, e.g. PA, AP, LL, LATERAL; empty when blank) and the
8 labels of :data:`ddval.config.LABELS` as 0.0/1.0. Identifiers are prefixed with the dataset
(``nih:00000001``, ``chexpert:patient00001``, ``mimic:10000032``) so they are unique across datasets.

Label policy (``data.uncertain``, ``data.blank``): a label is 1 when the source says 1.0;
uncertain (-1.0) becomes 0 (``zeros``, the paper's U-Zeros) or 1 (``ones``); blank becomes 0.

Bad input is an error naming the file, the line (header = line 1) and the field: a missing file
or column, an unparseable age or label, an unknown sex or view code, a duplicate image id or
malformed path. Ages outside 0-120 years (a few NIH rows) become unknown, counted in the log.
An image listed but absent is an error (``data.on_missing: error``, default) or a counted skip
(``skip``): :func:`run_index_stage` then writes the skipped rows to ``index_skipped.csv``. Nothing
is written until the whole index is built, so a failure never leaves a half-written index.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import DATASETS, LABELS, ROOT_ENV_VARS, ExperimentConfig

log = logging.getLogger(__name__)

#: Columns of ``index.parquet``, in order.
INDEX_COLUMNS: tuple[str, ...] = (
    "dataset", "scan_id", "path", "patient_id", "study_id", "sex", "age", "view", "view_position",
) + LABELS

#: Source column of each harmonised label (CheXpert and MIMIC-CXR use the same names).
CHEXPERT_LABELS: dict[str, str] = {
    "atelectasis": "Atelectasis", "cardiomegaly": "Cardiomegaly", "consolidation": "Consolidation",
    "edema": "Edema", "no_finding": "No Finding", "pleural_effusion": "Pleural Effusion",
    "pneumonia": "Pneumonia", "pneumothorax": "Pneumothorax",
}
#: NIH finding name of each harmonised label.
NIH_LABELS: dict[str, str] = {**CHEXPERT_LABELS, "pleural_effusion": "Effusion"}
#: Every finding name that may appear in NIH's ``Finding Labels``.
NIH_FINDINGS = frozenset({
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
    "Infiltration", "Mass", "No Finding", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
})
#: Projection codes -> view. NIH uses PA/AP; CheXpert's ``AP/PA`` adds LL/RL; MIMIC's ``ViewPosition``
#: has all of these (blank is allowed there and resolved from ``ViewCodeSequence_CodeMeaning``).
VIEW_OF_POSITION: dict[str, str] = {
    "PA": "frontal", "AP": "frontal", "AP AXIAL": "frontal", "PA LLD": "frontal", "AP LLD": "frontal",
    "PA RLD": "frontal", "AP RLD": "frontal",
    "LATERAL": "lateral", "LL": "lateral", "RL": "lateral", "XTABLE LATERAL": "lateral", "SWIMMERS": "lateral",
    "LAO": "oblique", "RAO": "oblique", "LPO": "oblique", "RPO": "oblique",
}
#: Plausible ages; values outside become unknown (NaN) and are counted.
AGE_RANGE = (0.0, 120.0)

NIH_CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
MIMIC_FILES = ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-chexpert.csv")
MIMIC_IV_ENV = "DDVAL_MIMIC_IV_ROOT"


class DataFormatError(ValueError):
    """An input file does not match its documented format; the message names file, line and field."""


# --------------------------------------------------------------------------------------------
# Reading and checking
# --------------------------------------------------------------------------------------------


def _find(folder: Path, names: Iterable[str], what: str, hint: str = "") -> Path:
    """First of ``names`` (each also tried with ``.gz``) that exists in ``folder``."""
    tried = []
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            tried.append(str(candidate))
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"{what}: none of {tried} exists" + (f" ({hint})" if hint else ""))


def read_csv(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """Read a CSV(.gz) as strings (blank -> NaN) with a ``_line`` column (header = line 1);
    a missing file or required column is a :class:`DataFormatError` naming both."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV file: {exc}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {missing} (renamed or wrong file?); columns present: {list(frame.columns)}"
        )
    frame["_line"] = np.arange(2, len(frame) + 2)
    return frame


def _fail(path: Path, frame: pd.DataFrame, bad: pd.Series, field: str, expected: str) -> None:
    """Raise naming the first offending rows of ``frame`` (``bad`` is a boolean mask)."""
    if not bad.any():
        return
    rows = frame.loc[bad, ["_line", field]].head(5)
    shown = "; ".join(f"line {ln}: {field}={val!r}" for ln, val in zip(rows["_line"], rows[field]))
    raise DataFormatError(f"{path}: {int(bad.sum())} row(s) with a bad {field!r} ({expected}): {shown}")


def _numbers(path: Path, frame: pd.DataFrame, field: str, expected: str) -> pd.Series:
    """Column ``field`` as floats; a value that is present but not a number is an error."""
    values = pd.to_numeric(frame[field], errors="coerce")
    _fail(path, frame, frame[field].notna() & values.isna(), field, expected)
    return values.astype(float)


def _ages(path: Path, frame: pd.DataFrame, field: str) -> pd.Series:
    # NIH's old CSV wrote ages like "058Y"; strip a trailing unit letter before parsing.
    raw = frame[field].str.strip().str.replace(r"^(\d+)\s*[YyMmDd]$", r"\1", regex=True)
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    _fail(path, frame, frame[field].notna() & values.isna(), field, "a number of years")
    odd = values.notna() & ((values < AGE_RANGE[0]) | (values > AGE_RANGE[1]))
    if odd.any():
        log.warning("%s: %d implausible age(s) outside %s set to unknown (e.g. line %d: %s)", path, int(odd.sum()),
                    AGE_RANGE, int(frame.loc[odd, "_line"].iloc[0]), frame.loc[odd, field].iloc[0])
    return values.mask(odd)


def _codes(path: Path, frame: pd.DataFrame, field: str, mapping: dict[str, str], allow_blank: bool = False) -> pd.Series:
    """Map a coded column; an unknown code (or a blank, unless allowed) is an error listing the known ones."""
    values = frame[field].str.strip()
    known = values.isin(list(mapping)) | (values.isna() & allow_blank)
    _fail(path, frame, ~known, field, f"one of {sorted(mapping)}" + (" or blank" if allow_blank else ""))
    return values.map(mapping)


def _no_duplicates(path: Path, frame: pd.DataFrame, fields: list[str]) -> None:
    dup = frame.duplicated(fields, keep=False)
    if dup.any():
        rows = frame.loc[dup, ["_line"] + fields].head(6)
        shown = "; ".join(f"line {r['_line']}: " + ", ".join(f"{f}={r[f]!r}" for f in fields) for _, r in rows.iterrows())
        raise DataFormatError(f"{path}: duplicate {'+'.join(fields)} ({int(dup.sum())} rows): {shown}")


def _labels(path: Path, frame: pd.DataFrame, columns: dict[str, str], uncertain: str) -> pd.DataFrame:
    """Harmonised 0/1 labels from CheXpert-style codes (1.0, 0.0, -1.0, blank)."""
    out = {}
    for label, field in columns.items():
        values = _numbers(path, frame, field, "1.0, 0.0, -1.0 or blank")
        _fail(path, frame, values.notna() & ~values.isin([1.0, 0.0, -1.0]), field, "1.0, 0.0, -1.0 or blank")
        positive = (values == 1.0) | ((values == -1.0) & (uncertain == "ones"))
        out[label] = positive.astype(float).to_numpy()
    return pd.DataFrame(out, index=frame.index)


def _check_files(frame: pd.DataFrame, source: Path, on_missing: str, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (rows whose image exists, skipped rows); an absent image is an error unless
    ``on_missing == "skip"``."""
    present = _exists(frame["path"])
    if present.all():
        return frame, _empty_skipped()
    missing = frame.loc[~present]
    shown = "; ".join(f"line {ln}: {p}" for ln, p in zip(missing["_line"].head(5), missing["path"].head(5)))
    if on_missing == "error":
        raise DataFormatError(
            f"{source}: {len(missing)} image(s) listed but absent (set data.on_missing: skip to index without "
            f"them): {shown}"
        )
    log.warning("%s: skipping %d listed image(s) that are absent, e.g. %s", source, len(missing), shown)
    skipped = pd.DataFrame({
        "dataset": dataset, "source": str(source), "line": missing["_line"].to_numpy(),
        "path": missing["path"].to_numpy(), "reason": "image file absent",
    })
    return frame.loc[present].copy(), skipped


def _empty_skipped() -> pd.DataFrame:
    return pd.DataFrame({"dataset": [], "source": [], "line": [], "path": [], "reason": []}, dtype=object)


def _exists(paths: pd.Series) -> np.ndarray:
    """Which files exist. Folders holding many of the files (NIH: 10^5 in one) are listed once;
    otherwise (MIMIC, CheXpert: one or two images per study folder) each file is checked, which
    costs fewer system calls. Plain Python sets: pandas' ``isin`` on Arrow strings is far slower."""
    plist = paths.tolist()
    folders = list(dict.fromkeys(p.rpartition("/")[0] for p in plist))
    if len(folders) * 4 > len(plist):
        return np.fromiter((os.path.isfile(p) for p in plist), dtype=bool, count=len(plist))
    found: set[str] = set()
    for folder in folders:
        try:
            found.update(f"{folder}/{name}" for name in os.listdir(folder))
        except OSError:
            continue
    return np.fromiter((p in found for p in plist), dtype=bool, count=len(plist))


def _finish(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Unified column order, sorted by patient, study and scan (deterministic whatever the CSV order)."""
    frame = frame.assign(dataset=dataset)
    out = frame.loc[:, list(INDEX_COLUMNS)].sort_values(["patient_id", "study_id", "scan_id"], kind="stable")
    out = out.reset_index(drop=True)
    for label in LABELS:
        out[label] = out[label].astype(float)
    out["age"] = out["age"].astype(float)
    return out


# --------------------------------------------------------------------------------------------
# NIH ChestX-ray14
# --------------------------------------------------------------------------------------------


def _nih_image_folders(root: Path) -> list[Path]:
    """``images/`` and the ``images_NNN/images/`` folders of the split download, in name order."""
    found = [root / "images"] if (root / "images").is_dir() else []
    for sub in sorted(root.glob("images_*")):
        found += [sub / "images"] if (sub / "images").is_dir() else ([sub] if sub.is_dir() else [])
    return found


def index_nih(root: str | os.PathLike, *, uncertain: str = "zeros", on_missing: str = "error") -> pd.DataFrame:
    """Index NIH ChestX-ray14 under ``root`` (see the module docstring for files and columns).
    ``uncertain`` is accepted for a uniform signature (NIH has no uncertain labels)."""
    return _index_nih(root, on_missing)[0]


def _index_nih(root: str | os.PathLike, on_missing: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = Path(root).expanduser().resolve()
    path = _find(root, NIH_CSV_NAMES, "NIH ChestX-ray14", f"{ROOT_ENV_VARS['nih']} should point at the folder "
                 "holding Data_Entry_2017_v2020.csv and images/")
    fields = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position"]
    frame = read_csv(path, fields)
    _fail(path, frame, frame["Image Index"].isna(), "Image Index", "an image file name")
    _no_duplicates(path, frame, ["Image Index"])
    pid = pd.to_numeric(frame["Patient ID"], errors="coerce")
    _fail(path, frame, pid.isna() | (pid < 0) | (pid % 1 != 0), "Patient ID", "a non-negative integer")
    # Findings: "|"-separated names; an unknown name is an error (a typo would silently become 0).
    findings = frame["Finding Labels"].fillna("").str.get_dummies(sep="|")
    findings.columns = findings.columns.str.strip()
    unknown = sorted(set(findings.columns) - NIH_FINDINGS - {""})
    if unknown:
        bad = findings[unknown].any(axis=1)
        _fail(path, frame, bad, "Finding Labels", f"'|'-separated names from {sorted(NIH_FINDINGS)}; unknown {unknown}")
    labels = pd.DataFrame(
        {lab: (findings[name] > 0).astype(float) if name in findings else 0.0 for lab, name in NIH_LABELS.items()},
        index=frame.index,
    )
    sex = _codes(path, frame, "Patient Gender", {"M": "M", "F": "F"})
    stem = frame["Image Index"].str.strip().str.replace(r"\.png$", "", regex=True)
    patient = "nih:" + pid.astype("int64").astype(str).str.zfill(8)
    out = pd.DataFrame({
        "scan_id": "nih:" + stem, "patient_id": patient, "study_id": "nih:" + stem,
        "sex": _patient_mode(patient, sex), "age": _ages(path, frame, "Patient Age"),
        "view": _codes(path, frame, "View Position", {"PA": "frontal", "AP": "frontal"}),
        "view_position": frame["View Position"].str.strip(), "_line": frame["_line"],
    })
    out = pd.concat([out, labels], axis=1)
    # Locate every image in images/ or images_NNN/images/ (each folder is listed once).
    folders = _nih_image_folders(root)
    where: dict[str, str] = {}
    for folder in reversed(folders):
        where.update(dict.fromkeys(os.listdir(folder), str(folder)))
    names = frame["Image Index"].str.strip()
    located = names.map(where)
    out["path"] = np.where(located.notna(), located.fillna("") + "/" + names, str(root / "images") + "/" + names)
    kept, skipped = _check_files(out, path, on_missing, "nih")
    return _finish(kept, "nih"), skipped


def _patient_mode(patient: pd.Series, sex: pd.Series) -> pd.Series:
    """Each patient's most frequent sex (ties: first in file order), broadcast to every scan (vectorised)."""
    counts = pd.DataFrame({"patient": patient, "sex": sex, "order": np.arange(len(sex))})
    stats = counts.groupby(["patient", "sex"], sort=False).agg(n=("order", "size"), first=("order", "min"))
    best = stats.reset_index().sort_values(["patient", "n", "first"], ascending=[True, False, True])
    best = best.drop_duplicates("patient").set_index("patient")["sex"]
    return patient.map(best)


# --------------------------------------------------------------------------------------------
# CheXpert
# --------------------------------------------------------------------------------------------


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


def index_chexpert(root: str | os.PathLike, *, uncertain: str = "zeros", on_missing: str = "error",
                   splits: tuple[str, ...] = ("train",)) -> pd.DataFrame:
    """Index CheXpert under ``root``: ``train.csv`` (``splits`` may add ``"valid"``)."""
    return _index_chexpert(root, uncertain, on_missing, splits)[0]


def _index_chexpert(root, uncertain, on_missing, splits=("train",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts, skipped = [], []
    for split in splits:
        path = chexpert_csv(root, split)
        folder = path.parent
        fields = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"] + list(CHEXPERT_LABELS.values())
        frame = read_csv(path, fields)
        ids = frame["Path"].str.extract(r"^[^/]+/(?:train|valid|test)/(patient\d+)/(study\d+)/([^/]+)\.jpg$")
        _fail(path, frame, ids[0].isna(), "Path",
              "<folder>/train/patientNNNNN/studyN/<view>.jpg, e.g. CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
        _no_duplicates(path, frame, ["Path"])
        ap_pa = frame["AP/PA"].str.strip()
        lateral = frame["Frontal/Lateral"].str.strip() == "Lateral"
        out = pd.DataFrame({
            "scan_id": "chexpert:" + ids[0] + "/" + ids[1] + "/" + ids[2],
            "patient_id": "chexpert:" + ids[0], "study_id": "chexpert:" + ids[0] + "/" + ids[1],
            "sex": _codes(path, frame, "Sex", {"Male": "M", "Female": "F", "Unknown": "U"}, allow_blank=True).fillna("U"),
            "age": _ages(path, frame, "Age"),
            "view": _codes(path, frame, "Frontal/Lateral", {"Frontal": "frontal", "Lateral": "lateral"}),
            "view_position": np.where(ap_pa.notna(), ap_pa.fillna(""), np.where(lateral, "LATERAL", "")),
            "path": str(folder) + "/" + frame["Path"].str.split("/", n=1).str[1],
            "_line": frame["_line"],
        })
        _codes(path, frame, "AP/PA", {k: k for k in ("AP", "PA", "LL", "RL")}, allow_blank=True)
        out = pd.concat([out, _labels(path, frame, CHEXPERT_LABELS, uncertain)], axis=1)
        kept, skip = _check_files(out, path, on_missing, "chexpert")
        parts.append(kept)
        skipped.append(skip)
    frame = pd.concat(parts, ignore_index=True)
    _no_duplicates(Path(root), frame, ["scan_id"])
    return _finish(frame, "chexpert"), pd.concat(skipped, ignore_index=True)


# --------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG + MIMIC-IV
# --------------------------------------------------------------------------------------------


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


def index_mimic(root: str | os.PathLike, *, uncertain: str = "zeros", on_missing: str = "error",
                mimic_iv: str | os.PathLike | None = None) -> pd.DataFrame:
    """Index MIMIC-CXR-JPG 2.0.0 under ``root`` with demographics from MIMIC-IV (``mimic_iv`` folder or
    found by :func:`mimic_iv_folder`)."""
    return _index_mimic(root, uncertain, on_missing, mimic_iv)[0]


def _index_mimic(root, uncertain, on_missing, mimic_iv=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = Path(root).expanduser().resolve()
    hint = f"{ROOT_ENV_VARS['mimic']} should point at the MIMIC-CXR-JPG folder holding the CSVs and files/"
    meta_path = _find(root, [MIMIC_FILES[0]], "MIMIC-CXR-JPG metadata", hint)
    label_path = _find(root, [MIMIC_FILES[1]], "MIMIC-CXR-JPG labels", hint)
    iv = Path(mimic_iv) if mimic_iv is not None else mimic_iv_folder(root)
    patients_path = _find(iv, ["patients.csv"], "MIMIC-IV patients")

    meta = read_csv(meta_path, ["dicom_id", "subject_id", "study_id", "ViewPosition"])
    for field in ("subject_id", "study_id"):
        _fail(meta_path, meta, ~meta[field].str.fullmatch(r"\d+").fillna(False).astype(bool), field, "digits")
    _fail(meta_path, meta, meta["dicom_id"].isna(), "dicom_id", "an image id")
    _no_duplicates(meta_path, meta, ["dicom_id"])
    labels = read_csv(label_path, ["subject_id", "study_id"] + list(CHEXPERT_LABELS.values()))
    _no_duplicates(label_path, labels, ["subject_id", "study_id"])
    harmonised = pd.concat([labels[["subject_id", "study_id"]], _labels(label_path, labels, CHEXPERT_LABELS, uncertain)],
                           axis=1)
    frame = meta.merge(harmonised, on=["subject_id", "study_id"], how="inner", validate="many_to_one")
    if len(frame) < len(meta):
        log.info("%s: %d image(s) of studies without labels dropped (inner join, as the paper)", meta_path,
                 len(meta) - len(frame))

    # View: ViewPosition; when blank, the DICOM view code meaning (e.g. "postero-anterior").
    view = _codes(meta_path, frame, "ViewPosition", VIEW_OF_POSITION, allow_blank=True)
    if "ViewCodeSequence_CodeMeaning" in frame:
        meaning = frame["ViewCodeSequence_CodeMeaning"].fillna("").str.lower()
        fallback = np.select(
            [meaning.str.contains("oblique"), meaning.str.contains("lateral") & ~meaning.str.contains("decubitus"),
             meaning.str.contains("posterior|anterior")],
            ["oblique", "lateral", "frontal"], default="unknown")
        view = view.fillna(pd.Series(fallback, index=frame.index))
    view = view.fillna("unknown")

    patients = read_csv(patients_path, ["subject_id", "gender", "anchor_age", "anchor_year"])
    _no_duplicates(patients_path, patients, ["subject_id"])
    patients["sex"] = _codes(patients_path, patients, "gender", {"M": "M", "F": "F"})
    patients["anchor_age"] = _numbers(patients_path, patients, "anchor_age", "a number of years")
    patients["anchor_year"] = _numbers(patients_path, patients, "anchor_year", "a year")
    frame = frame.merge(patients[["subject_id", "sex", "anchor_age", "anchor_year"]], on="subject_id", how="left")
    unknown = frame["sex"].isna()
    if unknown.any():
        log.info("%s: %d image(s) of %d subject(s) without a MIMIC-IV patients row: sex U, age unknown",
                 patients_path, int(unknown.sum()), frame.loc[unknown, "subject_id"].nunique())
    age = frame["anchor_age"]
    if "StudyDate" in frame:
        date = _numbers(meta_path, frame, "StudyDate", "a date YYYYMMDD")
        age = age + (np.floor(date / 10000) - frame["anchor_year"]).fillna(0.0)
    frame["age"] = age.where((age >= AGE_RANGE[0]) & (age <= AGE_RANGE[1]))

    sid = frame["subject_id"]
    out = pd.DataFrame({
        "scan_id": "mimic:" + frame["dicom_id"], "patient_id": "mimic:" + sid, "study_id": "mimic:" + frame["study_id"],
        "sex": frame["sex"].fillna("U"), "age": frame["age"], "view": view,
        "view_position": frame["ViewPosition"].fillna("").str.strip(),
        "path": str(root / "files") + "/p" + sid.str[:2] + "/p" + sid + "/s" + frame["study_id"] + "/"
        + frame["dicom_id"] + ".jpg",
        "_line": frame["_line"],
    })
    out = pd.concat([out, frame[list(LABELS)]], axis=1)
    kept, skipped = _check_files(out, meta_path, on_missing, "mimic")
    return _finish(kept, "mimic"), skipped


# --------------------------------------------------------------------------------------------
# All datasets of a config, and the stage
# --------------------------------------------------------------------------------------------

INDEXERS = {"nih": index_nih, "chexpert": index_chexpert, "mimic": index_mimic}
_INDEXERS = {
    "nih": lambda root, uncertain, on_missing: _index_nih(root, on_missing),
    "chexpert": _index_chexpert,
    "mimic": _index_mimic,
}


def real_roots(cfg: ExperimentConfig) -> dict[str, Path]:
    """Roots of the configured real datasets; one error lists everything that is missing."""
    roots, problems = {}, []
    for name in cfg.data.datasets:
        root = cfg.dataset_root(name)
        if root is None:
            problems.append(f"{name}: no root; set {ROOT_ENV_VARS[name]} (or data.roots.{name} in the preset)")
        elif not root.is_dir():
            problems.append(f"{name}: {root} (from {ROOT_ENV_VARS[name]} or data.roots.{name}) is not a folder")
        else:
            roots[name] = root
    if problems:
        raise FileNotFoundError(
            f"preset {cfg.preset!r} uses the real datasets {list(cfg.data.datasets)}, but:\n  " + "\n  ".join(problems)
            + "\nSee the README section 'Using the real datasets', or run the embedded default (preset demo)."
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


def build_index_with_skips(cfg: ExperimentConfig, roots: dict[str, str | os.PathLike] | None = None
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`build_index` and the table of skipped rows (``dataset, source, line, path, reason``)."""
    if roots is None:
        if cfg.data.source == "real":
            roots = real_roots(cfg)
        else:
            from ddval.data.synthetic import cohort_roots

            roots = cohort_roots(layout.data_dir(cfg) / "raw")
    parts, skipped = [], []
    for name in DATASETS:
        if name not in cfg.data.datasets:
            continue
        if name not in roots:
            raise KeyError(f"no root given for dataset {name!r}")
        frame, skip = _INDEXERS[name](roots[name], cfg.data.uncertain, cfg.data.on_missing)
        log.info("indexed %s: %d scans of %d patients", name, len(frame), frame["patient_id"].nunique())
        parts.append(frame)
        skipped.append(skip)
    index = pd.concat(parts, ignore_index=True)
    dup = index["scan_id"].duplicated()
    if dup.any():  # pragma: no cover - ids are prefixed by dataset
        raise DataFormatError(f"duplicate scan_id across datasets: {index.loc[dup, 'scan_id'].head().tolist()}")
    return index, pd.concat(skipped, ignore_index=True)


def source_files(name: str, root: str | os.PathLike) -> list[Path]:
    """The label/metadata files an indexer reads (their size and mtime go into the stage hash)."""
    root = Path(root)
    if name == "nih":
        return [_find(root, NIH_CSV_NAMES, "NIH ChestX-ray14")]
    if name == "chexpert":
        return [chexpert_csv(root, "train")]
    return [_find(root, [f], "MIMIC-CXR-JPG") for f in MIMIC_FILES] + [_find(mimic_iv_folder(root), ["patients.csv"], "MIMIC-IV")]


def _fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def run_index_stage(cfg: ExperimentConfig, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Stage 01: (synthetic source) write the cohort to ``<data>/raw`` once, then index every
    configured dataset into ``<data>/index.parquet`` (skipped when complete with the same
    parameters). Returns the index."""
    from ddval.data import synthetic

    ddir = layout.data_dir(cfg, root)
    if cfg.data.source == "synthetic":
        raw = ddir / "raw"
        cohort_params = {"synthetic": cfg.data.synthetic, "datasets": cfg.data.datasets,
                         "generator": synthetic.GENERATOR_VERSION}

        def write() -> list[Path]:
            written = synthetic.write_cohort(raw, cfg)
            return [folder / synthetic.MARKER for folder in written.values()]

        store.run_stage(raw, "cohort", cohort_params, write)
        roots = synthetic.cohort_roots(raw)
        # The cohort is determined by its own parameters: hash those rather than its paths and file
        # times, so a preset gives the same hashes (and byte-identical checkpoints, hence the same
        # CIDs and gas in the economy stage) in every results folder and on every re-run.
        inputs: dict[str, Any] = {"cohort": store.param_hash(cohort_params)}
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
        return store.write_table_and_report(ddir / "index.parquet", index, ddir / "index_skipped.csv", skipped)

    store.run_stage(ddir, "index", params, compute)
    return store.read_table(ddir / "index.parquet")


def summary(index: pd.DataFrame) -> pd.DataFrame:
    """Counts per dataset x sex: scans, patients, and positives of every label (rows), one column per
    (dataset, sex), plus a total column per dataset."""
    frame = index.assign(scans=1)
    both = pd.concat([frame, frame.assign(sex="all")], ignore_index=True)
    grouped = both.groupby(["dataset", "sex"], sort=False)
    table = grouped[["scans"] + list(LABELS)].sum()
    table.insert(1, "patients", grouped["patient_id"].nunique())
    order = [d for d in DATASETS if d in set(index["dataset"])]
    table = table.reindex(pd.MultiIndex.from_product([order, ["F", "M", "U", "all"]]), fill_value=0)
    table = table.loc[[k for k in table.index if k[1] == "all" or table.loc[k, "scans"] > 0]]
    table.index.names = ["dataset", "sex"]
    return table.astype(int).T
