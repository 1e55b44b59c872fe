"""Fixtures of the data-layer tests (helpers and hand-written rows live in ``data_fixtures.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the helpers importable

from data_fixtures import (  # noqa: E402
    CHEXPERT_HEADER,
    CHEXPERT_ROWS,
    MIMIC_ADMISSION_ROWS,
    MIMIC_CHEXPERT_HEADER,
    MIMIC_IV_ADMISSIONS_HEADER,
    MIMIC_IV_PATIENTS_HEADER,
    MIMIC_LABEL_ROWS,
    MIMIC_META_ROWS,
    MIMIC_METADATA_HEADER,
    MIMIC_PATIENT_ROWS,
    NIH_HEADER,
    NIH_ROWS,
    mimic_image_path,
    tiny_image,
    tiny_overrides,
    write_text,
)

from ddval.config import load_config  # noqa: E402


@pytest.fixture
def nih_root(tmp_path: Path) -> Path:
    root = tmp_path / "nih"
    write_text(root / "Data_Entry_2017_v2020.csv", [NIH_HEADER] + NIH_ROWS)
    for row in NIH_ROWS:
        tiny_image(root / "images" / row.split(",")[0])
    return root


@pytest.fixture
def chexpert_root(tmp_path: Path) -> Path:
    root = tmp_path / "chexpert"
    base = root / "CheXpert-v1.0-small"
    write_text(base / "train.csv", [CHEXPERT_HEADER] + CHEXPERT_ROWS)
    for row in CHEXPERT_ROWS:
        tiny_image(root / row.split(",")[0], fmt="JPEG")
    return root


@pytest.fixture
def mimic_root(tmp_path: Path) -> Path:
    root = tmp_path / "mimic"
    write_text(root / "mimic-cxr-2.0.0-metadata.csv.gz", [MIMIC_METADATA_HEADER] + MIMIC_META_ROWS, gz=True)
    write_text(root / "mimic-cxr-2.0.0-chexpert.csv.gz", [MIMIC_CHEXPERT_HEADER] + MIMIC_LABEL_ROWS, gz=True)
    write_text(root / "mimic-iv" / "hosp" / "patients.csv.gz", [MIMIC_IV_PATIENTS_HEADER] + MIMIC_PATIENT_ROWS, gz=True)
    write_text(
        root / "mimic-iv" / "hosp" / "admissions.csv.gz", [MIMIC_IV_ADMISSIONS_HEADER] + MIMIC_ADMISSION_ROWS, gz=True
    )
    for row in MIMIC_META_ROWS:
        tiny_image(mimic_image_path(root, row), fmt="JPEG")
    return root


@pytest.fixture
def tiny_cfg():
    return load_config("demo", tiny_overrides())


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A tiny synthetic cohort written once per session: (config, root)."""
    from ddval.data.synthetic import write_cohort

    cfg = load_config("demo", tiny_overrides())
    root = tmp_path_factory.mktemp("cohort")
    write_cohort(root, cfg)
    return cfg, root
