"""The indexers on hand-written rows of each real format, and every bad-input case."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from data_fixtures import (
    MIMIC_META_ROWS,
    NIH_HEADER,
    NIH_ROWS,
    mimic_image_path,
    tiny_image,
    write_text,
)

from ddval.config import LABELS, load_config
from ddval.data.index import (
    INDEX_COLUMNS,
    DataFormatError,
    build_index_with_skips,
    index_chexpert,
    index_mimic,
    index_nih,
    real_roots,
)
from ddval.data.views import counts_by_sex


def labels_of(frame: pd.DataFrame, scan_id: str) -> dict[str, float]:
    row = frame.set_index("scan_id").loc[scan_id]
    return {lab: row[lab] for lab in LABELS}


def only(*positive: str) -> dict[str, float]:
    return {lab: float(lab in positive) for lab in LABELS}


def test_unified_columns_match_the_contract():
    # docs/tables.md: index.parquet columns
    assert INDEX_COLUMNS == (
        "dataset",
        "scan_id",
        "path",
        "patient_id",
        "study_id",
        "sex",
        "age",
        "view",
        "view_position",
        "atelectasis",
        "cardiomegaly",
        "consolidation",
        "edema",
        "no_finding",
        "pleural_effusion",
        "pneumonia",
        "pneumothorax",
    )


# ---- NIH ---------------------------------------------------------------------------------------


def test_nih_rows(nih_root):
    frame = index_nih(nih_root)
    assert tuple(frame.columns) == INDEX_COLUMNS
    assert len(frame) == 5
    assert (frame["dataset"] == "nih").all()
    first = frame.set_index("scan_id").loc["nih:00000001_000"]
    assert first["patient_id"] == "nih:00000001" and first["study_id"] == "nih:00000001_000"
    assert first["path"] == str(nih_root.resolve() / "images" / "00000001_000.png")
    assert first["age"] == 58.0 and first["view"] == "frontal" and first["view_position"] == "PA"
    # sex is the patient's most frequent value (M, M, F -> M for every scan)
    assert set(frame.loc[frame["patient_id"] == "nih:00000001", "sex"]) == {"M"}
    assert labels_of(frame, "nih:00000001_000") == only("cardiomegaly", "pleural_effusion")
    assert labels_of(frame, "nih:00000001_001") == only("no_finding")
    assert labels_of(frame, "nih:00000001_002") == only("pneumonia")  # Infiltration is not one of the 8
    assert labels_of(frame, "nih:00000002_000") == only("atelectasis", "consolidation", "edema", "pneumothorax")
    assert labels_of(frame, "nih:00000003_000") == only()  # Hernia: a finding, so not "No Finding"
    assert frame["age"].dtype == float and all(frame[lab].dtype == float for lab in LABELS)


def test_nih_split_download_layout_and_old_csv(tmp_path):
    """Kaggle/Box layout images_NNN/images/ and the older Data_Entry_2017.csv (ages like 058Y, trailing comma)."""
    root = tmp_path / "nih"
    rows = [r.replace(",58,", ",058Y,") + "," for r in NIH_ROWS[:2]]
    write_text(root / "Data_Entry_2017.csv", [NIH_HEADER + ","] + rows)
    tiny_image(root / "images_001" / "images" / "00000001_000.png")
    tiny_image(root / "images_002" / "images" / "00000001_001.png")
    frame = index_nih(root)
    assert list(frame["age"]) == [58.0, 58.0]
    assert frame["path"].tolist() == [
        str(root.resolve() / "images_001/images/00000001_000.png"),
        str(root.resolve() / "images_002/images/00000001_001.png"),
    ]


def test_nih_implausible_age_becomes_unknown(nih_root, caplog):
    csv = nih_root / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text().replace(",81,", ",414,"))
    frame = index_nih(nih_root)
    assert math.isnan(frame.set_index("scan_id").loc["nih:00000002_000", "age"])
    assert "implausible age" in caplog.text


# ---- CheXpert ----------------------------------------------------------------------------------


def test_chexpert_rows_u_zeros(chexpert_root):
    frame = index_chexpert(chexpert_root)
    assert tuple(frame.columns) == INDEX_COLUMNS and len(frame) == 6
    sid = "chexpert:patient00001/study1/view1_frontal"
    row = frame.set_index("scan_id").loc[sid]
    assert row["patient_id"] == "chexpert:patient00001" and row["study_id"] == "chexpert:patient00001/study1"
    assert row["path"] == str(
        chexpert_root.resolve() / "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    )
    assert (row["sex"], row["age"], row["view"], row["view_position"]) == ("F", 68.0, "frontal", "AP")
    assert labels_of(frame, sid) == only("no_finding")
    # uncertain (-1.0) and blank -> 0 under U-Zeros
    assert labels_of(frame, "chexpert:patient00002/study2/view1_frontal") == only()
    lateral = frame.set_index("scan_id").loc["chexpert:patient00002/study1/view2_lateral"]
    assert (lateral["view"], lateral["view_position"]) == ("lateral", "LATERAL")
    assert labels_of(frame, "chexpert:patient00003/study1/view1_frontal") == only("edema")
    unknown = frame.set_index("scan_id").loc["chexpert:patient00004/study1/view1_frontal"]
    assert unknown["sex"] == "U"
    assert labels_of(frame, "chexpert:patient00004/study1/view1_frontal") == only(
        "cardiomegaly", "pneumonia", "pneumothorax", "pleural_effusion"
    )


def test_chexpert_u_ones(chexpert_root):
    frame = index_chexpert(chexpert_root, uncertain="ones")
    assert labels_of(frame, "chexpert:patient00002/study2/view1_frontal") == only(
        "atelectasis", "cardiomegaly", "consolidation", "edema", "pleural_effusion"
    )


def test_chexpert_root_may_be_the_csv_folder_and_renamed(chexpert_root, tmp_path):
    renamed = tmp_path / "my-chexpert-copy"
    shutil.copytree(chexpert_root / "CheXpert-v1.0-small", renamed)
    frame = index_chexpert(renamed)
    assert frame["path"].str.startswith(str(renamed.resolve()) + "/train/").all()
    assert len(frame) == 6


# ---- MIMIC -------------------------------------------------------------------------------------


def test_mimic_rows(mimic_root):
    frame = index_mimic(mimic_root)
    assert tuple(frame.columns) == INDEX_COLUMNS
    # the image of study 59999999 has no label row: dropped by the inner join
    assert len(frame) == 5 and "mimic:f8f1c2b1-1e2d3c4b-5a6b7c8d-9e0f1a2b-3c4d5e6f" not in set(frame["scan_id"])
    rows = frame.set_index("scan_id")
    pa = rows.loc["mimic:02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"]
    assert pa["path"] == str(mimic_image_path(mimic_root.resolve(), MIMIC_META_ROWS[0]))
    assert (pa["patient_id"], pa["study_id"], pa["sex"], pa["age"]) == ("mimic:10000032", "mimic:50414267", "F", 52.0)
    assert (pa["view"], pa["view_position"]) == ("frontal", "PA")
    assert labels_of(frame, "mimic:02aa804e-bde0afdd-112c0b34-7bc16630-4e384014") == only("no_finding")
    # labels are per study: both images of study 50414267 carry them
    assert labels_of(frame, "mimic:174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962") == only("no_finding")
    assert rows.loc["mimic:174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "view"] == "lateral"
    assert labels_of(frame, "mimic:2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab") == only(
        "atelectasis", "pleural_effusion"
    )
    # blank ViewPosition: the view comes from ViewCodeSequence_CodeMeaning ("left lateral")
    blank = rows.loc["mimic:68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714"]
    assert (blank["view"], blank["view_position"], blank["sex"], blank["age"]) == ("lateral", "", "M", 86.0)
    # a subject missing from MIMIC-IV patients.csv: sex U, age unknown
    missing = rows.loc["mimic:096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4"]
    assert missing["sex"] == "U" and math.isnan(missing["age"])
    assert labels_of(frame, "mimic:096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4") == only(
        "cardiomegaly", "pneumothorax"
    )


def test_mimic_age_at_study_from_the_shared_date_shift(mimic_root):
    path = mimic_root / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode().replace("21800626", "21830626")
    path.write_bytes(gzip.compress(text.encode()))
    frame = index_mimic(mimic_root).set_index("scan_id")
    assert frame.loc["mimic:2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "age"] == 55.0  # 52 at 2180, scanned 2183


def test_mimic_iv_from_environment(mimic_root, tmp_path, monkeypatch):
    elsewhere = tmp_path / "mimiciv" / "2.2"
    shutil.move(str(mimic_root / "mimic-iv" / "hosp"), str(elsewhere / "hosp"))
    with pytest.raises(FileNotFoundError, match="DDVAL_MIMIC_IV_ROOT"):
        index_mimic(mimic_root)
    monkeypatch.setenv("DDVAL_MIMIC_IV_ROOT", str(elsewhere))
    assert len(index_mimic(mimic_root)) == 5


# ---- bad input: a clear error naming file, line and field ---------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    raw = path.read_bytes()
    gz = path.suffix == ".gz"
    text = (gzip.decompress(raw) if gz else raw).decode()
    assert old in text, f"test setup: {old!r} not in {path}"
    text = text.replace(old, new, 1)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())


BAD_CASES = {
    # name: (dataset, file, old text, new text, expected pieces of the message)
    "nih-age": (
        "nih",
        "Data_Entry_2017_v2020.csv",
        ",81,F,",
        ",eighty,F,",
        ["Data_Entry_2017_v2020.csv", "line 5", "Patient Age", "eighty"],
    ),
    "nih-view": ("nih", "Data_Entry_2017_v2020.csv", ",74,F,PA,", ",74,F,XX,", ["line 6", "View Position", "XX"]),
    "nih-duplicate": (
        "nih",
        "Data_Entry_2017_v2020.csv",
        "00000003_000.png,",
        "00000002_000.png,",
        ["line 5", "line 6", "Image Index", "duplicate"],
    ),
    "nih-renamed-column": (
        "nih",
        "Data_Entry_2017_v2020.csv",
        "Patient Gender",
        "Sex",
        ["Data_Entry_2017_v2020.csv", "Patient Gender", "missing column"],
    ),
    "nih-unknown-finding": (
        "nih",
        "Data_Entry_2017_v2020.csv",
        "Hernia",
        "Hernai",
        ["line 6", "Finding Labels", "Hernai"],
    ),
    "nih-sex": ("nih", "Data_Entry_2017_v2020.csv", ",81,F,", ",81,X,", ["line 5", "Patient Gender"]),
    "chexpert-age": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        "Male,41,",
        "Male,4l,",
        ["train.csv", "line 6", "Age", "4l"],
    ),
    "chexpert-view": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        ",Lateral,",
        ",Sideways,",
        ["line 5", "Frontal/Lateral", "Sideways"],
    ),
    "chexpert-ap-pa": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        "20,Frontal,PA",
        "20,Frontal,QQ",
        ["line 7", "AP/PA", "QQ"],
    ),
    "chexpert-label": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        "Male,41,Frontal,AP,,,,,,1.0",
        "Male,41,Frontal,AP,,,,,,2.0",
        ["line 6", "Edema", "2.0"],
    ),
    "chexpert-duplicate": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        "patient00003/study1/view1_frontal",
        "patient00002/study1/view1_frontal",
        ["duplicate", "Path"],
    ),
    "chexpert-path": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        "patient00003/study1/view1_frontal.jpg",
        "patient00003/view1_frontal.jpg",
        ["line 6", "Path"],
    ),
    "chexpert-missing-column": (
        "chexpert",
        "CheXpert-v1.0-small/train.csv",
        ",Pneumothorax,",
        ",Pneumo thorax,",
        ["train.csv", "Pneumothorax", "missing column"],
    ),
    "mimic-view": (
        "mimic",
        "mimic-cxr-2.0.0-metadata.csv.gz",
        ",LATERAL,",
        ",SIDEWAYS,",
        ["metadata", "line 3", "ViewPosition", "SIDEWAYS"],
    ),
    "mimic-duplicate": (
        "mimic",
        "mimic-cxr-2.0.0-metadata.csv.gz",
        "f8f1c2b1-1e2d3c4b-5a6b7c8d-9e0f1a2b-3c4d5e6f",
        "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4",
        ["metadata", "line 6", "line 7", "dicom_id"],
    ),
    "mimic-label-duplicate": (
        "mimic",
        "mimic-cxr-2.0.0-chexpert.csv.gz",
        "10000764,57375967",
        "10000032,53189527",
        ["chexpert.csv.gz", "line 3", "line 4", "subject_id+study_id"],
    ),
    "mimic-label": (
        "mimic",
        "mimic-cxr-2.0.0-chexpert.csv.gz",
        "10000764,57375967,,,1.0",
        "10000764,57375967,,,yes",
        ["chexpert.csv.gz", "line 4", "Consolidation", "yes"],
    ),
    "mimic-age": (
        "mimic",
        "mimic-iv/hosp/patients.csv.gz",
        "10000764,M,86",
        "10000764,M,old",
        ["patients.csv.gz", "line 3", "anchor_age", "old"],
    ),
    "mimic-subject": (
        "mimic",
        "mimic-cxr-2.0.0-metadata.csv.gz",
        ",10000898,50771383,",
        ",p10000898,50771383,",
        ["metadata", "line 6", "subject_id"],
    ),
    "mimic-gender": (
        "mimic",
        "mimic-iv/hosp/patients.csv.gz",
        "10000764,M,",
        "10000764,Q,",
        ["patients.csv.gz", "line 3", "gender", "Q"],
    ),
}
INDEXERS = {"nih": index_nih, "chexpert": index_chexpert, "mimic": index_mimic}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_line_and_field(case, request):
    dataset, rel, old, new, pieces = BAD_CASES[case]
    root = request.getfixturevalue(f"{dataset}_root")
    _edit(root / rel, old, new)
    with pytest.raises(DataFormatError) as err:
        INDEXERS[dataset](root)
    for piece in pieces:
        assert piece in str(err.value), f"{piece!r} not in: {err.value}"


@pytest.mark.parametrize(
    "dataset, rel",
    [
        ("nih", "Data_Entry_2017_v2020.csv"),
        ("chexpert", "CheXpert-v1.0-small/train.csv"),
        ("mimic", "mimic-cxr-2.0.0-metadata.csv.gz"),
        ("mimic", "mimic-cxr-2.0.0-chexpert.csv.gz"),
        ("mimic", "mimic-iv/hosp/patients.csv.gz"),
    ],
)
def test_missing_csv_is_named(dataset, rel, request):
    root = request.getfixturevalue(f"{dataset}_root")
    (root / rel).unlink()
    with pytest.raises(FileNotFoundError) as err:
        INDEXERS[dataset](root)
    assert Path(rel).name.replace(".gz", "") in str(err.value)


def test_truncated_csv_is_a_format_error(mimic_root):
    path = mimic_root / "mimic-cxr-2.0.0-metadata.csv.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="metadata"):
        index_mimic(mimic_root)


@pytest.mark.parametrize("dataset", ["nih", "chexpert", "mimic"])
def test_image_listed_but_absent(dataset, request):
    root = request.getfixturevalue(f"{dataset}_root")
    frame = INDEXERS[dataset](root)
    victim = Path(frame["path"].iloc[1])
    victim.unlink()
    with pytest.raises(DataFormatError) as err:
        INDEXERS[dataset](root)
    assert str(victim) in str(err.value) and "absent" in str(err.value) and "line" in str(err.value)
    kept = INDEXERS[dataset](root, on_missing="skip")
    assert len(kept) == len(frame) - 1 and str(victim) not in set(kept["path"])


def test_skipped_rows_are_reported(nih_root, chexpert_root, mimic_root):
    (nih_root / "images" / "00000003_000.png").unlink()
    cfg = load_config("demo", {"data": {"on_missing": "skip"}})
    index, skipped = build_index_with_skips(cfg, {"nih": nih_root, "chexpert": chexpert_root, "mimic": mimic_root})
    assert len(index) == 4 + 6 + 5
    assert skipped[["dataset", "line"]].values.tolist() == [["nih", 6]]
    assert skipped["path"].iloc[0].endswith("00000003_000.png")


def test_real_roots_lists_everything_missing(tmp_path, monkeypatch):
    for var in ("DDVAL_NIH_ROOT", "DDVAL_CHEXPERT_ROOT", "DDVAL_MIMIC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DDVAL_CHEXPERT_ROOT", str(tmp_path / "nope"))
    cfg = load_config("paper_noniid")
    with pytest.raises(FileNotFoundError) as err:
        real_roots(cfg)
    msg = str(err.value)
    assert "DDVAL_NIH_ROOT" in msg and "DDVAL_MIMIC_ROOT" in msg and str(tmp_path / "nope") in msg


def test_build_index_concatenates_in_dataset_order(nih_root, chexpert_root, mimic_root):
    cfg = load_config("demo")
    index, skipped = build_index_with_skips(cfg, {"nih": nih_root, "chexpert": chexpert_root, "mimic": mimic_root})
    assert list(pd.unique(index["dataset"])) == ["nih", "chexpert", "mimic"]
    assert index["scan_id"].is_unique and skipped.empty
    table = counts_by_sex(index)
    assert table.loc["scans", ("nih", "all")] == 5 and table.loc["patients", ("mimic", "all")] == 3
    assert table.loc["scans", ("chexpert", "U")] == 1
    assert table.loc["pleural_effusion", ("nih", "M")] == 1
    assert int(table.loc["scans"].xs("all", level="sex").sum()) == len(index)


def test_index_is_independent_of_csv_row_order(nih_root):
    first = index_nih(nih_root)
    csv = nih_root / "Data_Entry_2017_v2020.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + lines[1:][::-1]) + "\n")
    pd.testing.assert_frame_equal(first, index_nih(nih_root))


def test_no_half_written_index_on_failure(tmp_path, nih_root):
    """A stage that fails leaves no index.parquet and no completion record."""
    from ddval.data import run_index_stage

    _edit(nih_root / "Data_Entry_2017_v2020.csv", ",81,F,", ",eighty,F,")
    cfg = load_config(
        "demo", {"data": {"source": "real", "datasets": ["nih"], "roots": {"nih": str(nih_root)}}, "settings": []}
    )
    with pytest.raises(DataFormatError):
        run_index_stage(cfg, root=tmp_path / "results")
    data = tmp_path / "results" / "demo" / "data"
    assert not (data / "index.parquet").exists() and not (data / ".index.done.json").exists()
    assert not list(data.glob(".index.parquet.*"))
