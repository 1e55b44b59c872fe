"""Sampling the synthetic sites: patients, studies, findings and how a labeler reports them.

One site per source dataset (:data:`SITES`). How findings are sampled (per study; patients keep
chronic findings across their studies):

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

Sampling is deterministic per seed: every patient draws from its own random stream
``(seed, dataset, patient number)``, so a scan does not change when other sizes change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ddval.config import DATASETS
from ddval.data import anatomy, render
from ddval.data.findings import RENDERED, Finding

#: The 14 CheXpert/MIMIC-CXR observations, in the column order of CheXpert's ``train.csv``.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: Observation name (CheXpert) -> the key of the sampled ground truth.
OBSERVATION_KEYS = {name: name.lower().replace(" ", "_") for name in CHEXPERT_OBSERVATIONS}


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
    "nih": SiteProfile(
        age=(47, 16),
        male=0.56,
        ap=0.35,
        chronic_cardiomegaly=0.10,
        heart_failure=0.09,
        infection=0.10,
        atelectasis=0.10,
        consolidation=0.03,
        effusion=0.05,
        pneumothorax=0.08,
        lesion=0.06,
        devices=0.08,
        uncertain=0.0,
        missed=0.06,
        negated=0.0,
        gamma=(1.05, 1.25),
        contrast=0.9,
        offset=0.02,
        blur=0.3,
        noise=0.015,
        marker=(0.08, 0.07),
        aspect=1.0,
        fmt="png",
    ),
    # ICU-heavy (portable AP), old, many effusions/edema/devices, few normal studies
    "chexpert": SiteProfile(
        age=(61, 17),
        male=0.59,
        ap=0.8,
        chronic_cardiomegaly=0.20,
        heart_failure=0.24,
        infection=0.10,
        atelectasis=0.14,
        consolidation=0.05,
        effusion=0.10,
        pneumothorax=0.12,
        lesion=0.04,
        devices=0.45,
        uncertain=0.25,
        missed=0.04,
        negated=0.15,
        gamma=(0.8, 0.95),
        contrast=1.15,
        offset=-0.03,
        blur=0.0,
        noise=0.035,
        marker=(0.92, 0.07),
        aspect=0.82,
        fmt="jpg",
    ),
    # emergency department and wards: in between, more pneumonia, sharper and darker images
    "mimic": SiteProfile(
        age=(63, 17),
        male=0.52,
        ap=0.6,
        chronic_cardiomegaly=0.18,
        heart_failure=0.12,
        infection=0.12,
        atelectasis=0.13,
        consolidation=0.02,
        effusion=0.08,
        pneumothorax=0.07,
        lesion=0.05,
        devices=0.25,
        uncertain=0.15,
        missed=0.04,
        negated=0.25,
        gamma=(0.95, 1.1),
        contrast=1.0,
        offset=-0.06,
        blur=0.6,
        noise=0.025,
        marker=(0.08, 0.93),
        aspect=0.83,
        fmt="jpg",
    ),
}


def _patient_rng(seed: int, dataset: str, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, DATASETS.index(dataset), number])


def _geometry(rng: np.random.Generator) -> anatomy.Geometry:
    warp = tuple(
        (rng.uniform(0.0, 0.012), rng.uniform(-1.5, 1.5), rng.uniform(0.4, 1.5), rng.uniform(0, 2 * np.pi))
        for _ in range(2)
    )
    return anatomy.Geometry(
        scale=(rng.normal(1.0, 0.04), rng.normal(1.0, 0.04)),
        angle=rng.normal(0.0, 2.5),
        shift=(rng.normal(0.0, 0.02), rng.normal(0.0, 0.02)),
        warp=warp,
    )


def _jitter(g: anatomy.Geometry, rng: np.random.Generator) -> anatomy.Geometry:
    """The same patient positioned slightly differently at another study."""
    return anatomy.Geometry(
        scale=g.scale,
        angle=g.angle + rng.normal(0.0, 1.0),
        shift=(g.shift[0] + rng.normal(0.0, 0.01), g.shift[1] + rng.normal(0.0, 0.01)),
        warp=g.warp,
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


def _observations(sev: dict[str, float]) -> dict[str, bool]:
    """Ground truth of the 14 observations (before reporting noise)."""
    truth = {OBSERVATION_KEYS[n]: sev.get(OBSERVATION_KEYS[n], 0.0) > 0 for n in CHEXPERT_OBSERVATIONS}
    parenchymal = ("edema", "consolidation", "pneumonia", "atelectasis", "lung_lesion")
    truth["lung_opacity"] = any(truth[k] for k in parenchymal)
    pathologies = [k for k in truth if k not in ("no_finding", "support_devices")]
    truth["no_finding"] = not any(truth[k] for k in pathologies)
    return truth


def _report(
    truth: dict[str, bool], sev: dict[str, float], site: SiteProfile, rng: np.random.Generator
) -> dict[str, float]:
    """What a CheXpert-style labeler reports: 1.0, 0.0, -1.0 or NaN (blank) per observation."""
    out: dict[str, float] = {}
    for name in CHEXPERT_OBSERVATIONS:
        key = OBSERVATION_KEYS[name]
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
                Finding(kind, s, int(rng.integers(0, 3)), int(rng.integers(2**31)))
                for kind, s in sev.items()
                if s > 0 and kind in RENDERED
            )
            acquisition = render.Acquisition(
                gamma=rng.uniform(*site.gamma),
                contrast=site.contrast * rng.uniform(0.93, 1.07),
                offset=site.offset + rng.normal(0.0, 0.02),
                blur=site.blur,
                noise=site.noise,
                marker=site.marker if rng.random() < 0.85 else None,
                ap=ap,
            )
            spec = render.ScanSpec(
                _jitter(geometry, rng), heart, not male, findings, acquisition, seed=int(rng.integers(2**31))
            )
            rows.append(
                {
                    "number": number,
                    "study": study,
                    "male": male,
                    "age": int(age + (study - 1) * rng.uniform(0, 1.5)),
                    "ap": ap,
                    "height": height,
                    "width": width,
                    "spec": spec,
                    "truth": truth,
                    **labels,
                }
            )
    return pd.DataFrame(rows)
