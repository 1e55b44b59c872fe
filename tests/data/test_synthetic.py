"""The synthetic cohort: real formats (headers, encodings, layout), determinism, learnability."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fixtures import (
    CHEXPERT_HEADER,
    MIMIC_CHEXPERT_HEADER,
    MIMIC_IV_ADMISSIONS_HEADER,
    MIMIC_IV_PATIENTS_HEADER,
    MIMIC_METADATA_HEADER,
    MIMIC_SPLIT_HEADER,
    NIH_HEADER,
    tiny_overrides,
)
from PIL import Image

from ddval.config import LABELS, load_config
from ddval.data import anatomy, render
from ddval.data.chexpert import CHEXPERT_LABELS
from ddval.data.findings import Finding
from ddval.data.index import index_chexpert, index_mimic, index_nih
from ddval.data.nih import NIH_FINDINGS
from ddval.data.sampling import CHEXPERT_OBSERVATIONS, sample_site
from ddval.data.synthetic import MARKER, write_cohort


def read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        assert raw[:2] == b"\x1f\x8b", f"{path} is not gzip-compressed"
        raw = gzip.decompress(raw)
    return raw.decode().splitlines()


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---- format fidelity ---------------------------------------------------------------------------


def test_nih_format(tiny_cohort):
    _, root = tiny_cohort
    nih = root / "nih"
    lines = read_lines(nih / "Data_Entry_2017_v2020.csv")
    assert lines[0] == NIH_HEADER
    frame = read(nih / "Data_Entry_2017_v2020.csv")
    assert len(frame.columns) == 11  # the bracketed header names split into two columns each
    assert frame["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    assert (frame["Image Index"].str[:8].astype(int) == frame["Patient ID"].astype(int)).all()
    assert (frame["Image Index"].str[9:12].astype(int) == frame["Follow-up #"].astype(int)).all()
    tokens = set("|".join(frame["Finding Labels"]).split("|"))
    assert tokens <= NIH_FINDINGS and "No Finding" in tokens
    assert not frame["Finding Labels"].str.contains("No Finding\\|").any()  # never combined
    assert set(frame["Patient Gender"]) <= {"M", "F"} and set(frame["View Position"]) <= {"PA", "AP"}
    assert frame["Patient Age"].str.fullmatch(r"\d+").all()
    assert frame["OriginalImagePixelSpacing[x"].str.fullmatch(r"0\.\d+").all()
    for name in frame["Image Index"].head(5):
        with Image.open(nih / "images" / name) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "L", (16, 16))
    listed = read_lines(nih / "train_val_list.txt") + read_lines(nih / "test_list.txt")
    assert sorted(listed) == sorted(frame["Image Index"])


def test_chexpert_format(tiny_cohort):
    _, root = tiny_cohort
    base = root / "chexpert" / "CheXpert-v1.0-small"
    for split in ("train", "valid"):
        assert read_lines(base / f"{split}.csv")[0] == CHEXPERT_HEADER
    frame = read(base / "train.csv")
    assert frame["Path"].str.fullmatch(r"CheXpert-v1\.0-small/train/patient\d{5}/study\d+/view\d_frontal\.jpg").all()
    assert set(frame["Sex"]) <= {"Male", "Female", "Unknown"}
    assert set(frame["Frontal/Lateral"]) == {"Frontal"} and set(frame["AP/PA"]) <= {"AP", "PA"}
    values = set(frame[list(CHEXPERT_OBSERVATIONS)].to_numpy().ravel())
    assert values <= {"1.0", "0.0", "-1.0", ""} and {"1.0", ""} <= values
    assert set(frame["No Finding"]) <= {"1.0", ""}  # as the CheXpert labeler
    valid = read(base / "valid.csv")
    assert set(valid[list(CHEXPERT_OBSERVATIONS)].to_numpy().ravel()) <= {"1.0", "0.0"}  # radiologist labels
    with Image.open(root / "chexpert" / frame["Path"].iloc[0]) as img:
        assert img.format == "JPEG" and img.mode == "L" and img.size[0] < img.size[1]  # portrait, as CheXpert


def test_mimic_format(tiny_cohort):
    _, root = tiny_cohort
    mimic = root / "mimic"
    headers = {
        "mimic-cxr-2.0.0-metadata.csv.gz": MIMIC_METADATA_HEADER,
        "mimic-cxr-2.0.0-chexpert.csv.gz": MIMIC_CHEXPERT_HEADER,
        "mimic-cxr-2.0.0-split.csv.gz": MIMIC_SPLIT_HEADER,
        "mimic-iv/hosp/patients.csv.gz": MIMIC_IV_PATIENTS_HEADER,
        "mimic-iv/hosp/admissions.csv.gz": MIMIC_IV_ADMISSIONS_HEADER,
    }
    for rel, header in headers.items():
        assert read_lines(mimic / rel)[0] == header, rel
    meta = read(mimic / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert meta["dicom_id"].str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all() and meta["dicom_id"].is_unique
    assert meta["subject_id"].str.fullmatch(r"1\d{7}").all() and meta["study_id"].str.fullmatch(r"5\d{7}").all()
    assert meta["StudyDate"].str.fullmatch(r"2[12]\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d)").all()
    assert meta["StudyTime"].str.fullmatch(r"\d{6}\.\d{3}").all()
    assert set(meta["ViewPosition"]) <= {"PA", "AP"}
    for _, row in meta.head(5).iterrows():
        s = row["subject_id"]
        path = mimic / "files" / f"p{s[:2]}" / f"p{s}" / f"s{row['study_id']}" / f"{row['dicom_id']}.jpg"
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (int(row["Columns"]), int(row["Rows"]))
    labels = read(mimic / "mimic-cxr-2.0.0-chexpert.csv.gz")
    assert not labels.duplicated(["subject_id", "study_id"]).any()
    assert set(zip(labels["subject_id"], labels["study_id"])) == set(zip(meta["subject_id"], meta["study_id"]))
    assert set(labels.iloc[:, 2:].to_numpy().ravel()) <= {"1.0", "0.0", "-1.0", ""}
    split = read(mimic / "mimic-cxr-2.0.0-split.csv.gz")
    assert set(split["split"]) <= {"train", "validate", "test"} and len(split) == len(meta)
    assert (split.groupby("subject_id")["split"].nunique() == 1).all()
    patients = read(mimic / "mimic-iv/hosp/patients.csv.gz")
    assert patients["subject_id"].is_unique and set(patients["gender"]) <= {"M", "F"}
    assert patients["anchor_year_group"].str.fullmatch(r"\d{4} - \d{4}").all()


def test_gzip_is_reproducible(tiny_cohort):
    _, root = tiny_cohort
    raw = (root / "mimic" / "mimic-cxr-2.0.0-split.csv.gz").read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00"  # no timestamp in the gzip header


def test_indexers_read_the_cohort(tiny_cohort):
    cfg, root = tiny_cohort
    sizes = cfg.data.synthetic.patients
    for name, indexer in (("nih", index_nih), ("chexpert", index_chexpert), ("mimic", index_mimic)):
        frame = indexer(root / name)
        assert frame["patient_id"].nunique() == sizes[name]
        assert frame["scan_id"].is_unique
        assert set(frame["sex"]) <= {"M", "F", "U"} and (frame["view"] == "frontal").all()
        assert frame["path"].map(lambda p: Path(p).exists()).all()


# ---- determinism -------------------------------------------------------------------------------


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = load_config("demo", tiny_overrides(patients=(4, 3, 5)))
    write_cohort(tmp_path / "a", cfg, seed=7)
    write_cohort(tmp_path / "b", cfg, seed=7)
    write_cohort(tmp_path / "c", cfg, seed=8)
    a, b, c = (_tree_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c


def test_a_patient_does_not_change_when_sizes_change():
    small = sample_site("chexpert", 5, 3, seed=0, size=16)
    large = sample_site("chexpert", 9, 3, seed=0, size=16)
    first = small.loc[small["number"] <= 5].drop(columns=["spec", "truth"])
    pd.testing.assert_frame_equal(first, large.loc[large["number"] <= 5].drop(columns=["spec", "truth"]))


def test_rewrite_replaces_own_folder_but_not_foreign_ones(tmp_path):
    cfg = load_config("demo", tiny_overrides(patients=(2, 2, 2)))
    write_cohort(tmp_path, cfg)
    (tmp_path / "nih" / "stale.txt").write_text("old")
    write_cohort(tmp_path, cfg)
    assert not (tmp_path / "nih" / "stale.txt").exists() and (tmp_path / "nih" / MARKER).exists()
    foreign = tmp_path / "other"
    (foreign / "mimic" / "files").mkdir(parents=True)
    (foreign / "mimic" / "files" / "scan.jpg").write_bytes(b"someone's data")
    with pytest.raises(FileExistsError, match="not written by ddval"):
        write_cohort(foreign, cfg)
    assert not list(foreign.glob(".*partial"))
    (foreign / "mimic" / "files" / "scan.jpg").unlink()  # a folder holding no file replaces nothing
    write_cohort(foreign, cfg)
    assert (foreign / "mimic" / MARKER).exists()


# ---- the images carry the labels ---------------------------------------------------------------


def test_findings_change_the_pixels_where_expected():
    """Each finding makes the image denser (brighter) in its region, and pneumothorax more lucent."""
    geometry = anatomy.Geometry()
    normal = render.render(render.ScanSpec(geometry, anatomy.HEART_HALF_WIDTH, False), 64, 64).astype(float)

    def with_(kind, side=0, heart=anatomy.HEART_HALF_WIDTH):
        findings = () if kind == "cardiomegaly" else (Finding(kind, 1.0, side, 3),)
        return render.render(render.ScanSpec(geometry, heart, False, findings), 64, 64).astype(float)

    lower_right_lung = (slice(38, 46), slice(8, 24))  # image rows/cols (patient's right = image left)
    assert with_("pleural_effusion")[lower_right_lung].mean() > normal[lower_right_lung].mean() + 40
    heart_border = (slice(36, 48), slice(46, 54))
    assert with_("cardiomegaly", heart=0.25)[heart_border].mean() > normal[heart_border].mean() + 15
    perihilar = (slice(24, 34), slice(16, 26))
    assert with_("edema")[perihilar].mean() > normal[perihilar].mean() + 15
    apex_lateral = (slice(10, 24), slice(8, 13))
    assert with_("pneumothorax")[apex_lateral].mean() < normal[apex_lateral].mean() - 10
    for kind in ("consolidation", "pneumonia", "atelectasis", "lung_lesion", "support_devices"):
        assert np.abs(with_(kind) - normal).sum() > 64 * 64 * 0.2, kind  # >= 0.2 grey levels per pixel


def test_cohort_is_learnable():
    """A regression guard for the generator: logistic regression on 16 x 16 pixels of the demo-sized
    cohort, patient-level hold-out, must find every label (AUROC well above chance).

    Reference (generator v2, seed 0, demo sizes): mean AUROC 0.92, weakest label (atelectasis) 0.81.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    cfg = load_config("demo")
    frames = []
    for name in ("nih", "chexpert", "mimic"):
        site = sample_site(
            name, cfg.data.synthetic.patients[name], cfg.data.synthetic.max_scans_per_patient, seed=0, size=32
        )
        frames.append(site.assign(patient=name + site["number"].astype(str)))
    cohort = pd.concat(frames, ignore_index=True)
    pixels = (
        np.stack(
            [
                np.asarray(
                    Image.fromarray(render.render(spec, h, w)).resize((16, 16), Image.Resampling.BILINEAR), dtype=float
                ).ravel()
                for spec, h, w in zip(cohort["spec"], cohort["height"], cohort["width"])
            ]
        )
        / 255.0
    )
    source = CHEXPERT_LABELS
    patients = cohort["patient"].unique()
    test = set(np.random.default_rng(0).choice(patients, len(patients) // 4, replace=False))
    held = cohort["patient"].isin(test).to_numpy()
    mean, std = pixels[~held].mean(0), pixels[~held].std(0) + 1e-6
    x = (pixels - mean) / std
    auroc = {}
    for label in LABELS:
        y = (cohort[source[label]] == 1.0).to_numpy().astype(int)  # U-Zeros, as the index
        model = LogisticRegression(C=0.05, max_iter=3000).fit(x[~held], y[~held])
        auroc[label] = roc_auc_score(y[held], model.predict_proba(x[held])[:, 1])
    assert min(auroc.values()) > 0.72, auroc
    assert np.mean(list(auroc.values())) > 0.85, auroc


def test_sites_differ():
    """Non-IID: label prevalence and image statistics differ between the sites."""
    stats = {}
    for name in ("nih", "chexpert", "mimic"):
        site = sample_site(name, 150, 2, seed=0, size=24)
        images = np.stack(
            [
                render.render(s, h, w).astype(float).mean()
                for s, h, w in zip(site["spec"].head(40), site["height"].head(40), site["width"].head(40))
            ]
        )
        stats[name] = {
            "no_finding": (site["No Finding"] == 1.0).mean(),
            "effusion": (site["Pleural Effusion"] == 1.0).mean(),
            "brightness": images.mean(),
        }
    assert stats["nih"]["no_finding"] > stats["mimic"]["no_finding"] > stats["chexpert"]["no_finding"]
    assert stats["chexpert"]["effusion"] > stats["nih"]["effusion"]
    bright = sorted(s["brightness"] for s in stats.values())
    assert bright[-1] - bright[0] > 5


def test_two_writers_at_once_leave_a_complete_cohort(tmp_path):
    """Issue 17, case 5: two runs writing the cohort at the same time shared one `.partial` folder, one
    deleted the other's files, and the cohort was recorded with 313 of 2,252 images. Each writer now
    has a private temporary folder and renames it into place whole."""
    import subprocess
    import sys

    from data_fixtures import tiny_overrides

    code = (
        "import sys; from ddval.config import load_config; from ddval.data.synthetic import write_cohort\n"
        f"write_cohort(sys.argv[1], load_config('demo', {tiny_overrides()!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "lib"), "DDVAL_PROGRESS": "off"}
    shared = tmp_path / "shared"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(shared)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, "-c", code, str(alone)], env=env, check=True, timeout=600)
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file()) == files
    assert all((shared / f).read_bytes() == (alone / f).read_bytes() for f in files)
    assert [p.name for p in shared.iterdir() if p.name.startswith(".")] == []  # no temporary folders left
