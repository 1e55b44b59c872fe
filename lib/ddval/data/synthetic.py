"""The embedded synthetic cohort, written in the real on-disk formats of NIH, CheXpert and MIMIC-CXR-JPG.

:func:`write_cohort` samples patients, studies and findings per *site* (one site per source
dataset), renders every scan with :mod:`ddval.data.render` (a real radiograph, deformed per
patient, with the findings drawn in), and writes folders and CSV files exactly as the real datasets
ship, so that :mod:`ddval.data.index` reads them with the same code as the real data::

    <root>/nih/Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt, images/<8d>_<3d>.png
    <root>/chexpert/CheXpert-v1.0-small/train.csv, valid.csv, {train,valid}/patientNNNNN/studyN/viewN_frontal.jpg
    <root>/mimic/mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz, files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg
    <root>/mimic/mimic-iv/hosp/patients.csv.gz, admissions.csv.gz      (MIMIC-IV demographics)

How findings are sampled (per study; patients keep chronic findings across their studies):

* a *heart-failure* episode (more likely with a chronically enlarged heart and with age) brings
  edema and (mostly bilateral) pleural effusions; an *infection* brings pneumonia, often with
  consolidation, sometimes a parapneumonic effusion and atelectasis; atelectasis also follows
  effusions; pneumothorax, lung lesions, fractures and support devices have their own rates;
* "No Finding" is positive exactly when no pathology is present (support devices allowed), as in
  the CheXpert labeler; Lung Opacity accompanies the parenchymal findings;
* reports are imperfect as in the real labelers: mild findings are sometimes reported uncertain
  (-1.0) or missed (blank), absent findings are sometimes mentioned as negative (0.0) or uncertain.

Sites differ (non-IID) in cohort size (``data.synthetic.patients``), age and sex mix, AP/PA mix,
label prevalence (rates of :class:`SiteProfile`), label noise, and the imaging chain (gamma,
contrast, brightness, blur, noise, side-marker position, image aspect ratio, PNG vs JPEG).
Prevalences are *enriched* relative to the real datasets so that every label has enough positives
in a cohort of a few hundred patients; their order across sites follows the real data (e.g.
CheXpert has the most effusion and edema and the least "No Finding", NIH the opposite).

Only frontal (PA/AP) scans are generated; the formats' lateral-view fields are written accordingly
(the indexers handle lateral views; see the tests with hand-written rows).
Generation is deterministic per seed: every patient draws from its own random stream
``(seed, dataset, patient number)``, so a scan does not change when other sizes change.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ddval.config import DATASETS, ExperimentConfig, SyntheticConfig, load_config
from ddval.data import render
from ddval.progress import progress

log = logging.getLogger(__name__)

#: The 14 CheXpert/MIMIC-CXR observations, in the column order of CheXpert's ``train.csv``.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
#: Column order of MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv`` (alphabetical observations).
MIMIC_OBSERVATIONS: tuple[str, ...] = tuple(sorted(CHEXPERT_OBSERVATIONS))
#: Real column orders of the files written here.
NIH_COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]")
CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA") + CHEXPERT_OBSERVATIONS
MIMIC_METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                          "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                          "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")
MIMIC_CHEXPERT_COLUMNS = ("subject_id", "study_id") + MIMIC_OBSERVATIONS
MIMIC_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
MIMIC_IV_PATIENTS_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
MIMIC_IV_ADMISSIONS_COLUMNS = ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                               "admit_provider_id", "admission_location", "discharge_location", "insurance",
                               "language", "marital_status", "race", "edregtime", "edouttime",
                               "hospital_expire_flag")
#: NIH ChestX-ray14 finding names of our observations (NIH has no "Support Devices" etc.).
NIH_NAMES = {
    "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation",
    "Edema": "Edema", "Pleural Effusion": "Effusion", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax",
    "Lung Lesion": "Nodule", "Lung Opacity": "Infiltration", "Pleural Other": "Pleural_Thickening",
}

#: Version of the generator: bump it when a change alters the pixels or labels, so that cohorts
#: cached in run directories are regenerated.
GENERATOR_VERSION = 2

#: Name of the marker file that identifies a folder written by :func:`write_cohort`.
MARKER = ".ddval-synthetic.json"


# --------------------------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteProfile:
    """Population, reporting and imaging chain of one synthetic site (= one source dataset)."""

    age: tuple[float, float]  # mean, sd
    male: float  # fraction of male patients
    ap: float  # fraction of AP (portable) scans
    chronic_cardiomegaly: float
    heart_failure: float  # per study
    infection: float  # per study
    atelectasis: float
    consolidation: float  # without infection
    effusion: float  # without heart failure or infection
    pneumothorax: float
    lesion: float
    devices: float
    uncertain: float  # probability that a mild positive finding is reported uncertain (-1.0)
    missed: float  # probability that a present finding is not reported (blank)
    negated: float  # probability that an absent finding is mentioned as negative (0.0)
    gamma: tuple[float, float]  # range of the display gamma
    contrast: float
    offset: float
    blur: float
    noise: float
    marker: tuple[float, float]
    aspect: float  # width / height of the written images
    fmt: str  # "png" or "jpg"


SITES: dict[str, SiteProfile] = {
    # outpatients and inpatients, PA-heavy, few findings per image, no uncertainty (NLP-mined labels)
    "nih": SiteProfile(age=(47, 16), male=0.56, ap=0.35, chronic_cardiomegaly=0.10, heart_failure=0.09,
                       infection=0.10, atelectasis=0.10, consolidation=0.03, effusion=0.05, pneumothorax=0.08,
                       lesion=0.06, devices=0.08, uncertain=0.0, missed=0.06, negated=0.0,
                       gamma=(1.05, 1.25), contrast=0.9, offset=0.02, blur=0.3, noise=0.015,
                       marker=(0.08, 0.07), aspect=1.0, fmt="png"),
    # ICU-heavy (portable AP), old, many effusions/edema/devices, few normal studies
    "chexpert": SiteProfile(age=(61, 17), male=0.59, ap=0.8, chronic_cardiomegaly=0.20, heart_failure=0.24,
                            infection=0.10, atelectasis=0.14, consolidation=0.05, effusion=0.10, pneumothorax=0.12,
                            lesion=0.04, devices=0.45, uncertain=0.25, missed=0.04, negated=0.15,
                            gamma=(0.8, 0.95), contrast=1.15, offset=-0.03, blur=0.0, noise=0.035,
                            marker=(0.92, 0.07), aspect=0.82, fmt="jpg"),
    # emergency department and wards: in between, more pneumonia, sharper and darker images
    "mimic": SiteProfile(age=(63, 17), male=0.52, ap=0.6, chronic_cardiomegaly=0.18, heart_failure=0.12,
                         infection=0.12, atelectasis=0.13, consolidation=0.02, effusion=0.08, pneumothorax=0.07,
                         lesion=0.05, devices=0.25, uncertain=0.15, missed=0.04, negated=0.25,
                         gamma=(0.95, 1.1), contrast=1.0, offset=-0.06, blur=0.6, noise=0.025,
                         marker=(0.08, 0.93), aspect=0.83, fmt="jpg"),
}


# --------------------------------------------------------------------------------------------
# Sampling patients, studies and findings
# --------------------------------------------------------------------------------------------


def _patient_rng(seed: int, dataset: str, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, DATASETS.index(dataset), number])


def _geometry(rng: np.random.Generator) -> render.Geometry:
    warp = tuple(
        (rng.uniform(0.0, 0.012), rng.uniform(-1.5, 1.5), rng.uniform(0.4, 1.5), rng.uniform(0, 2 * np.pi))
        for _ in range(2)
    )
    return render.Geometry(
        scale=(rng.normal(1.0, 0.04), rng.normal(1.0, 0.04)),
        angle=rng.normal(0.0, 2.5),
        shift=(rng.normal(0.0, 0.02), rng.normal(0.0, 0.02)),
        warp=warp,
    )


def _jitter(g: render.Geometry, rng: np.random.Generator) -> render.Geometry:
    """The same patient positioned slightly differently at another study."""
    return render.Geometry(
        scale=g.scale, angle=g.angle + rng.normal(0.0, 1.0),
        shift=(g.shift[0] + rng.normal(0.0, 0.01), g.shift[1] + rng.normal(0.0, 0.01)), warp=g.warp,
    )


def _study_findings(site: SiteProfile, cardiomegaly: bool, age: float, rng: np.random.Generator) -> dict[str, float]:
    """Severity (0 = absent) of each finding in one study, with realistic co-occurrence."""
    r = rng.random
    old = np.clip((age - 20.0) / 60.0, 0.0, 1.3)
    hf = r() < site.heart_failure * (1.8 if cardiomegaly else 0.6) * (0.5 + old)
    infection = r() < site.infection
    present = {
        "cardiomegaly": cardiomegaly and r() < 0.95,
        "edema": (hf and r() < 0.75) or r() < 0.01,
        "pleural_effusion": (hf and r() < 0.65) or (infection and r() < 0.2) or r() < site.effusion,
        "pneumonia": infection and r() < 0.8,
        "consolidation": (infection and r() < 0.5) or r() < site.consolidation,
        "pneumothorax": r() < site.pneumothorax,
        "lung_lesion": r() < site.lesion,
        "fracture": r() < 0.02,
        "pleural_other": r() < 0.01,
    }
    present["atelectasis"] = r() < site.atelectasis + 0.3 * present["pleural_effusion"] + 0.1 * infection
    present["support_devices"] = r() < min(0.95, site.devices * (1 + hf + present["pneumothorax"]))
    present["enlarged_cardiomediastinum"] = (present["cardiomegaly"] and r() < 0.4) or r() < 0.03
    return {k: (float(rng.uniform(0.45, 1.0)) if v else 0.0) for k, v in present.items()}


#: Observation name (CheXpert) -> our key.
_KEY = {name: name.lower().replace(" ", "_") for name in CHEXPERT_OBSERVATIONS}


def _observations(sev: dict[str, float]) -> dict[str, bool]:
    """Ground truth of the 14 observations (before reporting noise)."""
    truth = {_KEY[n]: sev.get(_KEY[n], 0.0) > 0 for n in CHEXPERT_OBSERVATIONS}
    parenchymal = ("edema", "consolidation", "pneumonia", "atelectasis", "lung_lesion")
    truth["lung_opacity"] = any(truth[k] for k in parenchymal)
    pathologies = [k for k in truth if k not in ("no_finding", "support_devices")]
    truth["no_finding"] = not any(truth[k] for k in pathologies)
    return truth


def _report(truth: dict[str, bool], sev: dict[str, float], site: SiteProfile, rng: np.random.Generator) -> dict[str, float]:
    """What a CheXpert-style labeler reports: 1.0, 0.0, -1.0 or NaN (blank) per observation."""
    out: dict[str, float] = {}
    for name in CHEXPERT_OBSERVATIONS:
        key = _KEY[name]
        if key == "no_finding":
            continue
        if truth[key]:
            if sev.get(key, 1.0) < 0.6 and rng.random() < site.uncertain:
                out[name] = -1.0
            elif rng.random() < site.missed:
                out[name] = np.nan
            else:
                out[name] = 1.0
        else:
            roll = rng.random()
            out[name] = -1.0 if roll < site.uncertain * 0.08 else (0.0 if roll < site.negated else np.nan)
    # The labeler's "No Finding": positive when nothing pathological was reported positive/uncertain.
    reported = [n for n in out if n != "Support Devices" and out[n] in (1.0, -1.0)]
    out["No Finding"] = np.nan if reported else 1.0
    return {n: out[n] for n in CHEXPERT_OBSERVATIONS}


def sample_site(dataset: str, n_patients: int, max_scans: int, seed: int, size: int) -> pd.DataFrame:
    """One row per scan of a site: demographics, acquisition, the 14 reported observations, and a
    :class:`ddval.data.render.ScanSpec` (column ``spec``) that renders it."""
    site = SITES[dataset]
    height = size
    width = max(8, int(round(size * site.aspect)))
    rows: list[dict[str, Any]] = []
    for number in range(1, n_patients + 1):
        rng = _patient_rng(seed, dataset, number)
        male = rng.random() < site.male
        age = float(np.clip(rng.normal(*site.age), 18, 95))
        cardiomegaly = rng.random() < site.chronic_cardiomegaly * (0.4 + np.clip((age - 20) / 50, 0, 1.2))
        heart = rng.uniform(0.21, 0.27) if cardiomegaly else rng.normal(0.155 + 0.006 * male, 0.008)
        geometry = _geometry(rng)
        n_studies = int(rng.integers(1, max_scans + 1))
        for study in range(1, n_studies + 1):
            sev = _study_findings(site, cardiomegaly, age, rng)
            truth = _observations(sev)
            labels = _report(truth, sev, site, rng)
            ap = bool(rng.random() < site.ap)
            findings = tuple(
                render.Finding(kind, s, int(rng.integers(0, 3)), int(rng.integers(2**31)))
                for kind, s in sev.items() if s > 0 and kind in render.RENDERED
            )
            acquisition = render.Acquisition(
                gamma=rng.uniform(*site.gamma), contrast=site.contrast * rng.uniform(0.93, 1.07),
                offset=site.offset + rng.normal(0.0, 0.02), blur=site.blur, noise=site.noise,
                marker=site.marker if rng.random() < 0.85 else None, ap=ap,
            )
            spec = render.ScanSpec(_jitter(geometry, rng), heart, not male, findings, acquisition,
                                   seed=int(rng.integers(2**31)))
            rows.append({
                "number": number, "study": study, "male": male, "age": int(age + (study - 1) * rng.uniform(0, 1.5)),
                "ap": ap, "height": height, "width": width, "spec": spec, "truth": truth, **labels,
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Writers, one per real format
# --------------------------------------------------------------------------------------------


def _save(pixels: np.ndarray, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels, mode="L")
    if fmt == "png":
        img.save(path, format="PNG")
    else:
        img.save(path, format="JPEG", quality=95)


def _render_all(frame: pd.DataFrame, paths: list[Path], fmt: str, desc: str) -> None:
    for spec, h, w, path in progress(zip(frame["spec"], frame["height"], frame["width"], paths),
                                     total=len(paths), desc=desc, leave=False):
        _save(render.render(spec, h, w), path, fmt)


def _write_csv(frame: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    """Write with exactly ``columns`` (the real header); ``.gz`` paths are gzip-compressed
    reproducibly (no timestamp in the gzip header)."""
    text = frame.loc[:, list(columns)].to_csv(index=False, lineterminator="\n")
    data = text.encode()
    if path.suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
            gz.write(data)
        data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _fmt_labels(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Label columns as the real files write them: ``1.0``, ``0.0``, ``-1.0`` or empty."""
    out = frame.copy()
    for n in names:
        out[n] = out[n].map(lambda x: "" if pd.isna(x) else f"{x:.1f}")
    return out


def write_nih(folder: Path, frame: pd.DataFrame, seed: int) -> None:
    """NIH ChestX-ray14 (``Data_Entry_2017_v2020.csv``, PNGs under ``images/``)."""
    rng = np.random.default_rng([seed, 100])
    names = [f"{n:08d}_{s - 1:03d}.png" for n, s in zip(frame["number"], frame["study"])]
    findings = []
    for _, row in frame.iterrows():
        present = [NIH_NAMES[n] for n in CHEXPERT_OBSERVATIONS if n in NIH_NAMES and row[n] == 1.0]
        findings.append("|".join(sorted(present)) if present else "No Finding")
    side = rng.integers(2000, 3000, len(frame))
    spacing = rng.choice([0.139, 0.143, 0.168], len(frame))
    table = pd.DataFrame({
        "Image Index": names, "Finding Labels": findings, "Follow-up #": frame["study"].to_numpy() - 1,
        "Patient ID": frame["number"].to_numpy(), "Patient Age": frame["age"].to_numpy(),
        "Patient Gender": np.where(frame["male"], "M", "F"), "View Position": np.where(frame["ap"], "AP", "PA"),
        "OriginalImage[Width": side, "Height]": side + rng.integers(-50, 50, len(frame)),
        "OriginalImagePixelSpacing[x": spacing, "y]": spacing,
    })
    _render_all(frame, [folder / "images" / n for n in names], "png", "nih images")
    _write_csv(table, folder / "Data_Entry_2017_v2020.csv", NIH_COLUMNS)
    # The official patient-level split lists (not used by ddval, written for fidelity).
    test = set(rng.choice(frame["number"].unique(), size=max(1, frame["number"].nunique() // 5), replace=False))
    is_test = frame["number"].isin(test).to_numpy()
    (folder / "train_val_list.txt").write_text("".join(f"{n}\n" for n, t in zip(names, is_test) if not t))
    (folder / "test_list.txt").write_text("".join(f"{n}\n" for n, t in zip(names, is_test) if t))


def write_chexpert(folder: Path, frame: pd.DataFrame, valid: pd.DataFrame, seed: int) -> None:
    """CheXpert-v1.0-small (``train.csv``/``valid.csv``, JPGs at ``{train,valid}/patientNNNNN/studyN/viewN_frontal.jpg``)."""
    base = folder / "CheXpert-v1.0-small"
    rng = np.random.default_rng([seed, 200])

    def table(part: pd.DataFrame, split: str, offset: int) -> tuple[pd.DataFrame, list[Path]]:
        rel = [f"CheXpert-v1.0-small/{split}/patient{n + offset:05d}/study{s}/view1_frontal.jpg"
               for n, s in zip(part["number"], part["study"])]
        sex = np.where(part["male"], "Male", "Female")
        sex = np.where(rng.random(len(part)) < 0.003, "Unknown", sex)  # CheXpert has a few
        out = pd.DataFrame({"Path": rel, "Sex": sex, "Age": part["age"].to_numpy(), "Frontal/Lateral": "Frontal",
                            "AP/PA": np.where(part["ap"], "AP", "PA")})
        for n in CHEXPERT_OBSERVATIONS:
            out[n] = part[n].to_numpy()
        return _fmt_labels(out, CHEXPERT_OBSERVATIONS), [folder / p for p in rel]

    train, train_paths = table(frame, "train", 0)
    # The official validation set is labelled by radiologists: no uncertain or blank labels.
    valid = valid.copy()
    for n in CHEXPERT_OBSERVATIONS:
        valid[n] = (valid["truth"].map(lambda t, k=_KEY[n]: t[k])).astype(float)
    val, val_paths = table(valid, "valid", 64540)
    _render_all(frame, train_paths, "jpg", "chexpert images")
    _render_all(valid, val_paths, "jpg", "chexpert valid images")
    _write_csv(train, base / "train.csv", CHEXPERT_COLUMNS)
    _write_csv(val, base / "valid.csv", CHEXPERT_COLUMNS)


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    """MIMIC-CXR ``dicom_id`` values: five dash-separated groups of 8 hex digits, unique."""
    words = rng.integers(0, 2**32, size=(n, 5), dtype=np.uint64)
    ids = ["-".join(f"{int(w):08x}" for w in row) for row in words]
    if len(set(ids)) != n:  # pragma: no cover - 2^-160 chance
        raise RuntimeError("dicom_id collision; change the seed")
    return ids


def write_mimic(folder: Path, frame: pd.DataFrame, seed: int) -> None:
    """MIMIC-CXR-JPG 2.0.0 (metadata/chexpert/split ``.csv.gz``, JPGs under ``files/``) and the MIMIC-IV
    ``patients``/``admissions`` tables (under ``mimic-iv/hosp/``)."""
    rng = np.random.default_rng([seed, 300])
    n_pat = int(frame["number"].max())
    subject = 10_000_000 + np.sort(rng.choice(9_999_999, size=n_pat, replace=False))
    sid = subject[frame["number"].to_numpy() - 1]
    study_ids = 50_000_000 + rng.choice(9_999_999, size=len(frame), replace=False)
    dicom = _hex_ids(rng, len(frame))
    anchor_year = rng.integers(2110, 2200, n_pat)
    first_year = anchor_year + rng.integers(-3, 3, n_pat)
    year = first_year[frame["number"].to_numpy() - 1] + (frame["study"].to_numpy() - 1)
    month, day = rng.integers(1, 13, len(frame)), rng.integers(1, 29, len(frame))
    seconds = rng.uniform(0, 86400, len(frame))
    ap = frame["ap"].to_numpy()
    desc = np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)")
    meta = pd.DataFrame({
        "dicom_id": dicom, "subject_id": sid, "study_id": study_ids,
        "PerformedProcedureStepDescription": desc, "ViewPosition": np.where(ap, "AP", "PA"),
        "Rows": frame["height"].to_numpy(), "Columns": frame["width"].to_numpy(),
        "StudyDate": year * 10000 + month * 100 + day,
        "StudyTime": [f"{int(s // 3600):02d}{int(s % 3600 // 60):02d}{s % 60:06.3f}" for s in seconds],
        "ProcedureCodeSequence_CodeMeaning": desc,
        "ViewCodeSequence_CodeMeaning": np.where(ap, "antero-posterior", "postero-anterior"),
        "PatientOrientationCodeSequence_CodeMeaning": np.where(ap & (rng.random(len(frame)) < 0.6), "Recumbent", "Erect"),
    })
    labels = pd.DataFrame({"subject_id": sid, "study_id": study_ids})
    for n in MIMIC_OBSERVATIONS:
        labels[n] = frame[n].to_numpy()
    labels = _fmt_labels(labels, MIMIC_OBSERVATIONS)
    # Official split: by patient, about 98 % train, 1 % validate, 1 % test.
    roll = rng.random(n_pat)
    split_of = np.where(roll < 0.98, "train", np.where(roll < 0.99, "validate", "test"))
    split = pd.DataFrame({"dicom_id": dicom, "study_id": study_ids, "subject_id": sid,
                          "split": split_of[frame["number"].to_numpy() - 1]})
    # MIMIC-IV: age is given at the anchor year; a few CXR subjects are missing from patients.csv.
    first = frame.drop_duplicates("number")
    age0 = first["age"].to_numpy()
    known = rng.random(n_pat) >= 0.01
    groups = ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]
    patients = pd.DataFrame({
        "subject_id": subject, "gender": np.where(first["male"], "M", "F"),
        "anchor_age": np.clip(age0 - (first_year - anchor_year), 18, 91),
        "anchor_year": anchor_year, "anchor_year_group": rng.choice(groups, n_pat),
        "dod": [f"{y + int(rng.integers(0, 5))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
                if rng.random() < 0.1 else "" for y in anchor_year],
    })[known]
    adm = []
    hadm = 20_000_000 + rng.choice(9_999_999, size=3 * n_pat, replace=False)
    for i, s in enumerate(subject):
        for k in range(int(rng.integers(0, 4))):  # some CXR subjects were never admitted
            t = pd.Timestamp(year=int(first_year[i]) + k, month=int(rng.integers(1, 13)), day=int(rng.integers(1, 28)),
                             hour=int(rng.integers(0, 24)), minute=int(rng.integers(0, 60)))
            out = t + pd.Timedelta(hours=float(rng.uniform(12, 240)))
            ed = rng.random() < 0.6
            adm.append({
                "subject_id": s, "hadm_id": hadm[3 * i + k], "admittime": f"{t:%Y-%m-%d %H:%M:%S}",
                "dischtime": f"{out:%Y-%m-%d %H:%M:%S}", "deathtime": "",
                "admission_type": rng.choice(["EW EMER.", "URGENT", "OBSERVATION ADMIT", "ELECTIVE"]),
                "admit_provider_id": f"P{int(rng.integers(0, 999999)):06X}",
                "admission_location": rng.choice(["EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"]),
                "discharge_location": rng.choice(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY"]),
                "insurance": rng.choice(["Medicare", "Medicaid", "Other"]), "language": "ENGLISH",
                "marital_status": rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"]),
                "race": rng.choice(["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "HISPANIC/LATINO", "OTHER"]),
                "edregtime": f"{t - pd.Timedelta(hours=3):%Y-%m-%d %H:%M:%S}" if ed else "",
                "edouttime": f"{t:%Y-%m-%d %H:%M:%S}" if ed else "", "hospital_expire_flag": 0,
            })
    admissions = pd.DataFrame(adm, columns=list(MIMIC_IV_ADMISSIONS_COLUMNS))
    paths = [folder / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg"
             for s, st, d in zip(sid, study_ids, dicom)]
    _render_all(frame, paths, "jpg", "mimic images")
    _write_csv(meta, folder / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_METADATA_COLUMNS)
    _write_csv(labels, folder / "mimic-cxr-2.0.0-chexpert.csv.gz", MIMIC_CHEXPERT_COLUMNS)
    _write_csv(split, folder / "mimic-cxr-2.0.0-split.csv.gz", MIMIC_SPLIT_COLUMNS)
    _write_csv(patients, folder / "mimic-iv" / "hosp" / "patients.csv.gz", MIMIC_IV_PATIENTS_COLUMNS)
    _write_csv(admissions, folder / "mimic-iv" / "hosp" / "admissions.csv.gz", MIMIC_IV_ADMISSIONS_COLUMNS)


# --------------------------------------------------------------------------------------------
# The cohort
# --------------------------------------------------------------------------------------------


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
