"""Speed of the indexers on files of the real datasets' full sizes.

Writes, in a temporary folder, label files with the real row counts and formats (NIH
``Data_Entry_2017_v2020.csv``: 112,120 rows; CheXpert ``train.csv``: 223,414 rows; MIMIC-CXR-JPG
metadata/labels: 377,110 images of 227,835 studies, with MIMIC-IV ``patients.csv``) and an empty
file for every image (the indexers check that each listed image exists; they do not decode it), then
times ``index_nih``, ``index_chexpert`` and ``index_mimic``. Prints a Markdown table; the latest
result is kept in ``benchmarks/bench_data_index.md``.

    PYTHONPATH=lib .venv/bin/python benchmarks/bench_data_index.py [--datasets nih chexpert mimic]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ddval.data.index import index_chexpert, index_mimic, index_nih
from ddval.data.nih import NIH_FINDINGS
from ddval.data.sampling import CHEXPERT_OBSERVATIONS

NIH_ROWS, CHEXPERT_ROWS, MIMIC_IMAGES, MIMIC_STUDIES = 112_120, 223_414, 377_110, 227_835
#: NIH findings a scan may carry besides "No Finding", in sorted order (the reader's list).
FINDINGS = sorted(NIH_FINDINGS - {"No Finding"})
#: CheXpert's 14 observation columns, in file order (the synthetic writer's list).
OBS = list(CHEXPERT_OBSERVATIONS)


def touch_all(paths: list[str]) -> None:
    for folder in sorted({os.path.dirname(p) for p in paths}):
        os.makedirs(folder, exist_ok=True)
    for p in paths:
        open(p, "wb").close()


def labels(rng, n: int, codes=("1.0", "0.0", "-1.0", "")) -> np.ndarray:
    return rng.choice(codes, size=(n, len(OBS)), p=[0.15, 0.1, 0.05, 0.7][: len(codes)])


def write_nih(root: Path, rng) -> None:
    patient = np.sort(rng.integers(1, 30_806, NIH_ROWS))
    follow = pd.Series(patient).groupby(patient).cumcount().to_numpy()
    names = [f"{p:08d}_{f:03d}.png" for p, f in zip(patient, follow)]
    k = rng.integers(0, 3, NIH_ROWS)
    findings = ["|".join(sorted(rng.choice(FINDINGS, size=j, replace=False))) if j else "No Finding" for j in k]
    frame = pd.DataFrame(
        {
            "Image Index": names,
            "Finding Labels": findings,
            "Follow-up #": follow,
            "Patient ID": patient,
            "Patient Age": rng.integers(1, 95, NIH_ROWS),
            "Patient Gender": rng.choice(["M", "F"], NIH_ROWS),
            "View Position": rng.choice(["PA", "AP"], NIH_ROWS),
            "OriginalImage[Width": 2500,
            "Height]": 2048,
            "OriginalImagePixelSpacing[x": 0.143,
            "y]": 0.143,
        }
    )
    root.mkdir(parents=True)
    frame.to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    touch_all([str(root / "images" / n) for n in names])


def write_chexpert(root: Path, rng) -> None:
    patient = np.sort(rng.integers(1, 64_541, CHEXPERT_ROWS))
    study = rng.integers(1, 4, CHEXPERT_ROWS)
    view = pd.Series(patient * 10 + study).groupby(patient * 10 + study).cumcount().to_numpy() + 1
    lateral = view > 1
    rel = [
        f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/view{v}_{'lateral' if lat else 'frontal'}.jpg"
        for p, s, v, lat in zip(patient, study, view, lateral)
    ]
    frame = pd.DataFrame(
        {
            "Path": rel,
            "Sex": rng.choice(["Male", "Female"], CHEXPERT_ROWS),
            "Age": rng.integers(18, 90, CHEXPERT_ROWS),
            "Frontal/Lateral": np.where(lateral, "Lateral", "Frontal"),
            "AP/PA": np.where(lateral, "", rng.choice(["AP", "PA"], CHEXPERT_ROWS)),
        }
    )
    frame[OBS] = labels(rng, CHEXPERT_ROWS)
    (root / "CheXpert-v1.0-small").mkdir(parents=True)
    frame.to_csv(root / "CheXpert-v1.0-small" / "train.csv", index=False)
    touch_all([str(root / r) for r in rel])


def write_mimic(root: Path, rng) -> None:
    studies = 50_000_000 + rng.choice(9_999_999, MIMIC_STUDIES, replace=False)
    subject_of_study = 10_000_000 + rng.integers(0, 65_379, MIMIC_STUDIES)
    pick = np.sort(np.r_[np.arange(MIMIC_STUDIES), rng.integers(0, MIMIC_STUDIES, MIMIC_IMAGES - MIMIC_STUDIES)])
    dicom = [
        f"{a:08x}-{b:08x}-{c:08x}-{d:08x}-{e:08x}"
        for a, b, c, d, e in rng.integers(0, 2**32, (MIMIC_IMAGES, 5), dtype=np.uint64)
    ]
    sid, st = subject_of_study[pick], studies[pick]
    meta = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": sid,
            "study_id": st,
            "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
            "ViewPosition": rng.choice(["PA", "AP", "LATERAL", "LL", ""], MIMIC_IMAGES),
            "Rows": 3056,
            "Columns": 2544,
            "StudyDate": 21800506,
            "StudyTime": "213014.531",
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Erect",
        }
    )
    lab = pd.DataFrame({"subject_id": subject_of_study, "study_id": studies})
    lab[sorted(OBS)] = labels(rng, MIMIC_STUDIES)
    subjects = np.unique(subject_of_study)
    patients = pd.DataFrame(
        {
            "subject_id": subjects,
            "gender": rng.choice(["M", "F"], len(subjects)),
            "anchor_age": rng.integers(18, 91, len(subjects)),
            "anchor_year": 2180,
            "anchor_year_group": "2014 - 2016",
            "dod": "",
        }
    )
    (root / "mimic-iv" / "hosp").mkdir(parents=True)
    for frame, name in (
        (meta, "mimic-cxr-2.0.0-metadata.csv.gz"),
        (lab, "mimic-cxr-2.0.0-chexpert.csv.gz"),
        (patients, "mimic-iv/hosp/patients.csv.gz"),
    ):
        with gzip.open(root / name, "wt", compresslevel=1) as fh:
            frame.to_csv(fh, index=False)
    touch_all([f"{root}/files/p{str(s)[:2]}/p{s}/s{t}/{d}.jpg" for s, t, d in zip(sid, st, dicom)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["nih", "chexpert", "mimic"])
    args = parser.parse_args()
    writers = {"nih": write_nih, "chexpert": write_chexpert, "mimic": write_mimic}
    indexers = {"nih": index_nih, "chexpert": index_chexpert, "mimic": index_mimic}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            root = Path(tmp) / name
            writers[name](root, np.random.default_rng(0))
            start = time.perf_counter()
            frame = indexers[name](root)
            elapsed = time.perf_counter() - start
            rows.append((name, len(frame), frame["patient_id"].nunique(), elapsed))
    print(
        f"Indexers on full-size label files ({platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})\n"
    )
    print("| dataset | scans | patients | index time (s) |")
    print("|---|---:|---:|---:|")
    for name, scans, patients, elapsed in rows:
        print(f"| {name} | {scans:,} | {patients:,} | {elapsed:.1f} |")


if __name__ == "__main__":
    main()
