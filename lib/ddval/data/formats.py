"""Writing a sampled synthetic site in each real dataset's on-disk format (folders, CSV headers, codes).

One writer per format, each taking the scans of one site (:func:`ddval.data.sampling.sample_site`)
and writing exactly what the real download holds, with the real column orders::

    nih/Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt, images/<8d>_<3d>.png
    chexpert/CheXpert-v1.0-small/train.csv, valid.csv, {train,valid}/patientNNNNN/studyN/viewN_frontal.jpg
    mimic/mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz, files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg
    mimic/mimic-iv/hosp/patients.csv.gz, admissions.csv.gz      (MIMIC-IV demographics)

so that the dataset readers (:mod:`ddval.data.nih`, :mod:`ddval.data.chexpert`, :mod:`ddval.data.mimic`)
read them with the same code as the real data. Only frontal (PA/AP) scans are generated; the formats'
lateral-view fields are written accordingly. ``.gz`` files are compressed reproducibly (no timestamp).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ddval.data import render
from ddval.data.sampling import CHEXPERT_OBSERVATIONS, OBSERVATION_KEYS
from ddval.progress import progress

#: Column order of MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv`` (alphabetical observations).
MIMIC_OBSERVATIONS: tuple[str, ...] = tuple(sorted(CHEXPERT_OBSERVATIONS))
#: Real column orders of the files written here.
NIH_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA") + CHEXPERT_OBSERVATIONS
MIMIC_METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
MIMIC_CHEXPERT_COLUMNS = ("subject_id", "study_id") + MIMIC_OBSERVATIONS
MIMIC_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
MIMIC_IV_PATIENTS_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
MIMIC_IV_ADMISSIONS_COLUMNS = (
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "deathtime",
    "admission_type",
    "admit_provider_id",
    "admission_location",
    "discharge_location",
    "insurance",
    "language",
    "marital_status",
    "race",
    "edregtime",
    "edouttime",
    "hospital_expire_flag",
)
#: NIH ChestX-ray14 finding names of our observations (NIH has no "Support Devices" etc.).
NIH_NAMES = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Lung Lesion": "Nodule",
    "Lung Opacity": "Infiltration",
    "Pleural Other": "Pleural_Thickening",
}

#: Version of the generator: bump it when a change alters the pixels or labels, so that cohorts


def _save(pixels: np.ndarray, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels, mode="L")
    if fmt == "png":
        img.save(path, format="PNG")
    else:
        img.save(path, format="JPEG", quality=95)


def _render_all(frame: pd.DataFrame, paths: list[Path], fmt: str, desc: str) -> None:
    for spec, h, w, path in progress(
        zip(frame["spec"], frame["height"], frame["width"], paths), total=len(paths), desc=desc, leave=False
    ):
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
    table = pd.DataFrame(
        {
            "Image Index": names,
            "Finding Labels": findings,
            "Follow-up #": frame["study"].to_numpy() - 1,
            "Patient ID": frame["number"].to_numpy(),
            "Patient Age": frame["age"].to_numpy(),
            "Patient Gender": np.where(frame["male"], "M", "F"),
            "View Position": np.where(frame["ap"], "AP", "PA"),
            "OriginalImage[Width": side,
            "Height]": side + rng.integers(-50, 50, len(frame)),
            "OriginalImagePixelSpacing[x": spacing,
            "y]": spacing,
        }
    )
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
        rel = [
            f"CheXpert-v1.0-small/{split}/patient{n + offset:05d}/study{s}/view1_frontal.jpg"
            for n, s in zip(part["number"], part["study"])
        ]
        sex = np.where(part["male"], "Male", "Female")
        sex = np.where(rng.random(len(part)) < 0.003, "Unknown", sex)  # CheXpert has a few
        out = pd.DataFrame(
            {
                "Path": rel,
                "Sex": sex,
                "Age": part["age"].to_numpy(),
                "Frontal/Lateral": "Frontal",
                "AP/PA": np.where(part["ap"], "AP", "PA"),
            }
        )
        for n in CHEXPERT_OBSERVATIONS:
            out[n] = part[n].to_numpy()
        return _fmt_labels(out, CHEXPERT_OBSERVATIONS), [folder / p for p in rel]

    train, train_paths = table(frame, "train", 0)
    # The official validation set is labelled by radiologists: no uncertain or blank labels.
    valid = valid.copy()
    for n in CHEXPERT_OBSERVATIONS:
        valid[n] = (valid["truth"].map(lambda t, k=OBSERVATION_KEYS[n]: t[k])).astype(float)
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
    meta = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": sid,
            "study_id": study_ids,
            "PerformedProcedureStepDescription": desc,
            "ViewPosition": np.where(ap, "AP", "PA"),
            "Rows": frame["height"].to_numpy(),
            "Columns": frame["width"].to_numpy(),
            "StudyDate": year * 10000 + month * 100 + day,
            "StudyTime": [f"{int(s // 3600):02d}{int(s % 3600 // 60):02d}{s % 60:06.3f}" for s in seconds],
            "ProcedureCodeSequence_CodeMeaning": desc,
            "ViewCodeSequence_CodeMeaning": np.where(ap, "antero-posterior", "postero-anterior"),
            "PatientOrientationCodeSequence_CodeMeaning": np.where(
                ap & (rng.random(len(frame)) < 0.6), "Recumbent", "Erect"
            ),
        }
    )
    labels = pd.DataFrame({"subject_id": sid, "study_id": study_ids})
    for n in MIMIC_OBSERVATIONS:
        labels[n] = frame[n].to_numpy()
    labels = _fmt_labels(labels, MIMIC_OBSERVATIONS)
    # Official split: by patient, about 98 % train, 1 % validate, 1 % test.
    roll = rng.random(n_pat)
    split_of = np.where(roll < 0.98, "train", np.where(roll < 0.99, "validate", "test"))
    split = pd.DataFrame(
        {"dicom_id": dicom, "study_id": study_ids, "subject_id": sid, "split": split_of[frame["number"].to_numpy() - 1]}
    )
    # MIMIC-IV: age is given at the anchor year; a few CXR subjects are missing from patients.csv.
    first = frame.drop_duplicates("number")
    age0 = first["age"].to_numpy()
    known = rng.random(n_pat) >= 0.01
    groups = ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]
    patients = pd.DataFrame(
        {
            "subject_id": subject,
            "gender": np.where(first["male"], "M", "F"),
            "anchor_age": np.clip(age0 - (first_year - anchor_year), 18, 91),
            "anchor_year": anchor_year,
            "anchor_year_group": rng.choice(groups, n_pat),
            "dod": [
                f"{y + int(rng.integers(0, 5))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
                if rng.random() < 0.1
                else ""
                for y in anchor_year
            ],
        }
    )[known]
    adm = []
    hadm = 20_000_000 + rng.choice(9_999_999, size=3 * n_pat, replace=False)
    for i, s in enumerate(subject):
        for k in range(int(rng.integers(0, 4))):  # some CXR subjects were never admitted
            t = pd.Timestamp(
                year=int(first_year[i]) + k,
                month=int(rng.integers(1, 13)),
                day=int(rng.integers(1, 28)),
                hour=int(rng.integers(0, 24)),
                minute=int(rng.integers(0, 60)),
            )
            out = t + pd.Timedelta(hours=float(rng.uniform(12, 240)))
            ed = rng.random() < 0.6
            adm.append(
                {
                    "subject_id": s,
                    "hadm_id": hadm[3 * i + k],
                    "admittime": f"{t:%Y-%m-%d %H:%M:%S}",
                    "dischtime": f"{out:%Y-%m-%d %H:%M:%S}",
                    "deathtime": "",
                    "admission_type": rng.choice(["EW EMER.", "URGENT", "OBSERVATION ADMIT", "ELECTIVE"]),
                    "admit_provider_id": f"P{int(rng.integers(0, 999999)):06X}",
                    "admission_location": rng.choice(
                        ["EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"]
                    ),
                    "discharge_location": rng.choice(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY"]),
                    "insurance": rng.choice(["Medicare", "Medicaid", "Other"]),
                    "language": "ENGLISH",
                    "marital_status": rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"]),
                    "race": rng.choice(["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "HISPANIC/LATINO", "OTHER"]),
                    "edregtime": f"{t - pd.Timedelta(hours=3):%Y-%m-%d %H:%M:%S}" if ed else "",
                    "edouttime": f"{t:%Y-%m-%d %H:%M:%S}" if ed else "",
                    "hospital_expire_flag": 0,
                }
            )
    admissions = pd.DataFrame(adm, columns=list(MIMIC_IV_ADMISSIONS_COLUMNS))
    paths = [
        folder / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg" for s, st, d in zip(sid, study_ids, dicom)
    ]
    _render_all(frame, paths, "jpg", "mimic images")
    _write_csv(meta, folder / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_METADATA_COLUMNS)
    _write_csv(labels, folder / "mimic-cxr-2.0.0-chexpert.csv.gz", MIMIC_CHEXPERT_COLUMNS)
    _write_csv(split, folder / "mimic-cxr-2.0.0-split.csv.gz", MIMIC_SPLIT_COLUMNS)
    _write_csv(patients, folder / "mimic-iv" / "hosp" / "patients.csv.gz", MIMIC_IV_PATIENTS_COLUMNS)
    _write_csv(admissions, folder / "mimic-iv" / "hosp" / "admissions.csv.gz", MIMIC_IV_ADMISSIONS_COLUMNS)
