"""Choices a user of the real datasets makes (issue 17, case 4b): a views filter, MIMIC's official split
and NegBio labels, and NIH's Kaggle ``sample_labels.csv`` layout with ages in months and days."""

from __future__ import annotations

import pandas as pd
import pytest
from data_fixtures import (
    MIMIC_CHEXPERT_HEADER,
    MIMIC_LABEL_ROWS,
    MIMIC_META_ROWS,
    MIMIC_SPLIT_HEADER,
    NIH_ROWS,
    tiny_image,
    write_text,
)

from ddval.config import ConfigError, InstitutionConfig, SettingConfig, load_config
from ddval.data.index import DataFormatError, build_index_with_skips, index_mimic, index_nih
from ddval.data.splits import make_partition

# The header of the Kaggle sample (nih-chest-xrays/sample), written out independently of ddval.
KAGGLE_SAMPLE_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImageWidth,OriginalImageHeight,"
    "OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y"
)


def real(datasets: list[str], **data) -> object:
    """A real-data config reading only ``datasets`` (no settings: the tests index, or cut by hand)."""
    return load_config("paper_noniid", {"data": {"source": "real", "datasets": datasets, **data}, "settings": []})


@pytest.mark.parametrize("name", ["sample_labels.csv", "Data_Entry_2017.csv"])
def test_kaggle_sample_layout_with_ages_in_months_and_days(tmp_path, name):
    root = tmp_path / "nih"
    ages = ["060Y", "013M", "001D", "002W", "045Y"]
    rows = [",".join(r.split(",")[:4] + [age] + r.split(",")[5:]) for r, age in zip(NIH_ROWS, ages)]
    write_text(root / name, [KAGGLE_SAMPLE_HEADER] + rows)
    for row in rows:
        tiny_image(root / "images" / row.split(",")[0])
    frame = index_nih(root).set_index("scan_id")
    assert frame.loc["nih:00000001_000", "age"] == 60.0
    assert frame.loc["nih:00000001_001", "age"] == pytest.approx(13 / 12)  # months, not 13 years
    assert frame.loc["nih:00000001_002", "age"] == pytest.approx(1 / 365.25)  # days, not 1 year
    assert frame.loc["nih:00000002_000", "age"] == pytest.approx(14 / 365.25)


def test_an_age_with_an_unknown_unit_names_file_line_and_field(nih_root):
    csv = nih_root / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text().replace(",81,", ",081Q,"))
    with pytest.raises(DataFormatError, match=r"line 5: Patient Age='081Q'"):
        index_nih(nih_root)


def test_views_filter_keeps_only_the_chosen_views(chexpert_root, mimic_root):
    roots = {"chexpert": chexpert_root, "mimic": mimic_root}
    everything, _ = build_index_with_skips(real(["chexpert", "mimic"]), roots)
    assert set(everything["view"]) == {"frontal", "lateral"}  # default: all views, as the original
    frontal, _ = build_index_with_skips(real(["chexpert", "mimic"], views=["frontal"]), roots)
    assert set(frontal["view"]) == {"frontal"}
    assert len(frontal) == (everything["view"] == "frontal").sum()


def test_views_filter_rejects_unknown_views():
    with pytest.raises(ConfigError, match=r"data\.views must list some of"):
        load_config("paper_noniid", {"data": {"views": ["frontal", "sideways"]}})


def test_mimic_negbio_labels(mimic_root):
    # NegBio disagrees with the CheXpert labeler on study 50414267: effusion positive, not "No Finding"
    negbio = [
        r.replace("10000032,50414267,,,,,,,,,1.0,,,,,", "10000032,50414267,,,,,,,,,,1.0,,,,") for r in MIMIC_LABEL_ROWS
    ]
    write_text(mimic_root / "mimic-cxr-2.0.0-negbio.csv.gz", [MIMIC_CHEXPERT_HEADER] + negbio, gz=True)
    scan = "mimic:02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
    chexpert = index_mimic(mimic_root).set_index("scan_id").loc[scan]
    assert (chexpert["no_finding"], chexpert["pleural_effusion"]) == (1.0, 0.0)
    cfg = real(["mimic"], mimic_labels="negbio")
    frame, _ = build_index_with_skips(cfg, {"mimic": mimic_root})
    row = frame.set_index("scan_id").loc[scan]
    assert (row["no_finding"], row["pleural_effusion"]) == (0.0, 1.0)


def test_mimic_negbio_labels_missing_file_is_named(mimic_root):
    cfg = real(["mimic"], mimic_labels="negbio")
    with pytest.raises(FileNotFoundError, match=r"mimic-cxr-2\.0\.0-negbio\.csv"):
        build_index_with_skips(cfg, {"mimic": mimic_root})


def _official_split(mimic_root, splits: dict[str, str]) -> None:
    rows = []
    for row in MIMIC_META_ROWS:
        dicom, subject, study = row.split(",")[:3]
        rows.append(f"{dicom},{study},{subject},{splits[subject]}")
    write_text(mimic_root / "mimic-cxr-2.0.0-split.csv.gz", [MIMIC_SPLIT_HEADER] + rows, gz=True)


def test_mimic_official_split_decides_the_test_pool(mimic_root):
    _official_split(mimic_root, {"10000032": "train", "10000764": "validate", "10000898": "test"})
    cfg = real(["mimic"], mimic_split="official")
    index, _ = build_index_with_skips(cfg, {"mimic": mimic_root})
    by_patient = index.groupby("patient_id")["official_split"].first().to_dict()
    assert by_patient == {"mimic:10000032": "train", "mimic:10000764": "validate", "mimic:10000898": "test"}
    setting = SettingConfig(
        "s", "noniid", (InstitutionConfig("m", ("mimic",), train=1, val=1, test=None),), test_fraction=0.5
    )
    for seed in range(4):  # whatever the seed, the official test patient is the test set
        part = make_partition(index, setting, seed)
        assert set(part.loc[part["split"] == "test", "patient_id"]) == {"mimic:10000898"}
    default = real(["mimic"])
    assert "official_split" not in build_index_with_skips(default, {"mimic": mimic_root})[0].columns


def test_mimic_official_split_must_cover_every_image_and_keep_subjects_whole(mimic_root):
    cfg = real(["mimic"], mimic_split="official")
    _official_split(mimic_root, {"10000032": "train", "10000764": "validate", "10000898": "holdout"})
    with pytest.raises(DataFormatError, match=r"split\.csv\.gz: .* bad 'split'.*holdout"):
        build_index_with_skips(cfg, {"mimic": mimic_root})
    path = mimic_root / "mimic-cxr-2.0.0-split.csv.gz"
    _official_split(mimic_root, {"10000032": "train", "10000764": "validate", "10000898": "test"})
    frame = pd.read_csv(path)
    frame.iloc[1:].to_csv(path, index=False)  # the first image has no split
    with pytest.raises(DataFormatError, match=r"1 image\(s\) of the metadata have no split"):
        build_index_with_skips(cfg, {"mimic": mimic_root})
    frame.loc[0, "split"] = "test"  # subject 10000032 in train and test
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"one split per subject"):
        build_index_with_skips(cfg, {"mimic": mimic_root})


def test_default_options_do_not_change_the_index_stage_parameters():
    """The shipped demo run stays valid: options at their defaults add nothing to the stage hash."""
    from ddval.data.stage import _changed_options

    assert _changed_options(load_config("demo")) == {}
    changed = load_config("demo", {"data": {"views": ["frontal"], "mimic_labels": "negbio"}})
    assert _changed_options(changed) == {"views": ("frontal",), "mimic_labels": "negbio"}
