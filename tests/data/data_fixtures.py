"""Helpers of the data-layer tests: the real headers (written out independently of ddval),
hand-written rows of each format, tiny images, a tiny synthetic preset, an in-memory index."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ddval.config import DATASETS, LABELS

# The real headers, written out here independently of ddval's own constants.
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
MIMIC_METADATA_HEADER = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
    "StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning"
)
MIMIC_CHEXPERT_HEADER = (
    "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,"
    "Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,"
    "Pneumothorax,Support Devices"
)
MIMIC_SPLIT_HEADER = "dicom_id,study_id,subject_id,split"
MIMIC_IV_PATIENTS_HEADER = "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod"
MIMIC_IV_ADMISSIONS_HEADER = (
    "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
    "admission_location,discharge_location,insurance,language,marital_status,race,"
    "edregtime,edouttime,hospital_expire_flag"
)


def tiny_image(path: Path, value: int = 128, size: tuple[int, int] = (10, 12), fmt: str | None = None) -> Path:
    """A small grayscale image with a gradient (so resizing is not trivially constant)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = (np.add.outer(np.arange(h), np.arange(w)) * 7 + value) % 256
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path, format=fmt)
    return path


def write_text(path: Path, lines: list[str], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# ---- NIH ---------------------------------------------------------------------------------------

NIH_ROWS = [
    "00000001_000.png,Cardiomegaly|Effusion,0,1,58,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,No Finding,1,1,58,M,AP,2894,2729,0.143,0.143",
    "00000001_002.png,Infiltration|Pneumonia,2,1,59,F,PA,2500,2048,0.168,0.168",  # sex by patient mode: M
    "00000002_000.png,Atelectasis|Consolidation|Edema|Pneumothorax,0,2,81,F,AP,2048,2500,0.171,0.171",
    "00000003_000.png,Hernia,0,3,74,F,PA,2500,2048,0.168,0.168",
]


# ---- CheXpert ----------------------------------------------------------------------------------

CHEXPERT_ROWS = [
    # Path, Sex, Age, F/L, AP/PA, NoF, EnlCM, Card, LungOp, LungLes, Edema, Cons, Pneu, Atel, Ptx, Eff, PlOth, Fract, SupDev
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,AP,,,,,,1.0,,,,0.0,,,,",
    "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Unknown,20,Frontal,PA,,,1.0,,,,,1.0,,1.0,1.0,,,",
]


# ---- MIMIC-CXR-JPG + MIMIC-IV ------------------------------------------------------------------

MIMIC_META_ROWS = [
    "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),postero-anterior,Erect",
    "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect",
    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab,10000032,53189527,CHEST (PORTABLE AP),AP,2539,3050,21800626,165500.312,CHEST (PORTABLE AP),antero-posterior,Recumbent",
    "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714,10000764,57375967,CHEST (PA AND LAT),,3056,2544,21321109,071612.000,CHEST (PA AND LAT),left lateral,Erect",
    "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,10000898,50771383,CHEST (PA AND LAT),PA,3056,2544,21010912,093029.000,CHEST (PA AND LAT),postero-anterior,Erect",
    "f8f1c2b1-1e2d3c4b-5a6b7c8d-9e0f1a2b-3c4d5e6f,10000898,59999999,CHEST (PA AND LAT),PA,3056,2544,21010913,093029.000,CHEST (PA AND LAT),postero-anterior,Erect",
]
MIMIC_LABEL_ROWS = [
    # subject, study, Atel, Card, Cons, Edema, EnlCM, Fract, LungLes, LungOp, NoF, Eff, PlOth, Pneu, Ptx, SupDev
    "10000032,50414267,,,,,,,,,1.0,,,,,",
    "10000032,53189527,1.0,-1.0,,0.0,,,,1.0,,1.0,,-1.0,0.0,",
    "10000764,57375967,,,1.0,,,,,,,,,-1.0,,",
    "10000898,50771383,,1.0,,,,,,,,,,,1.0,1.0",
    # study 59999999 has no labels -> its image drops out (inner join)
]
MIMIC_PATIENT_ROWS = [
    "10000032,F,52,2180,2014 - 2016,2180-09-09",
    "10000764,M,86,2132,2014 - 2016,",
    # 10000898 is not in MIMIC-IV: sex U, age unknown
]
MIMIC_ADMISSION_ROWS = [
    "10000032,22595853,2180-05-06 22:23:00,2180-05-07 17:15:00,,URGENT,P874LG,TRANSFER FROM HOSPITAL,HOME,Other,ENGLISH,WIDOWED,WHITE,2180-05-06 19:17:00,2180-05-06 23:30:00,0",
]


def mimic_image_path(root: Path, row: str) -> Path:
    dicom, subject, study = row.split(",")[:3]
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"


# ---- configs -----------------------------------------------------------------------------------


def tiny_overrides(patients=(16, 14, 20), image_size=16, resize=8) -> dict:
    """A small synthetic preset (same settings shape as the demo, tiny sizes)."""
    inst = lambda name, ds, train, val, test=3, flip=0.0: {  # noqa: E731
        "name": name,
        "datasets": ds,
        "train": train,
        "val": val,
        "test": test,
        "flip_rate": flip,
    }
    return {
        "data": {
            "image_size": resize,
            "workers": 1,
            "synthetic": {
                "patients": dict(zip(DATASETS, patients)),
                "max_scans_per_patient": 3,
                "image_size": image_size,
            },
        },
        "settings": [
            {
                "name": "noniid",
                "scheme": "noniid",
                "institutions": [
                    inst("nih", ["nih"], 10, 3),
                    inst("chexpert", ["chexpert"], 10, 3),
                    inst("mimic", ["mimic"], 10, 3),
                ],
            },
            {
                "name": "labelflip",
                "scheme": "shared_test",
                "coalitions": "grand",
                "institutions": [inst("clean", ["mimic"], 8, 2), inst("noisy", ["mimic"], 8, 2, flip=0.5)],
            },
        ],
    }


# ---- an in-memory index for the split tests ----------------------------------------------------


def fake_index(patients: dict[str, int], seed: int = 0, max_scans: int = 4) -> pd.DataFrame:
    """An index-shaped frame (no image files) with random scan counts and labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, n in patients.items():
        for p in range(n):
            for s in range(int(rng.integers(1, max_scans + 1))):
                rows.append(
                    {
                        "dataset": dataset,
                        "scan_id": f"{dataset}:{p:05d}_{s}",
                        "path": f"/x/{dataset}/{p}_{s}.png",
                        "patient_id": f"{dataset}:{p:05d}",
                        "study_id": f"{dataset}:{p:05d}/{s}",
                        "sex": "MF"[p % 2],
                        "age": 50.0,
                        "view": "frontal",
                        "view_position": "PA",
                        **{lab: float(rng.random() < 0.3) for lab in LABELS},
                    }
                )
    return pd.DataFrame(rows)
