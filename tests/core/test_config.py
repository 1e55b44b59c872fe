"""The preset loader: every shipped preset loads, typos and bad values fail with the file and key named."""

from pathlib import Path

import pytest

from ddval.config import ConfigError, ExperimentConfig, available_presets, load_config


@pytest.mark.parametrize("preset", available_presets())
def test_every_shipped_preset_loads(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.preset == preset
    assert cfg.settings, f"{preset} defines no setting"


def test_demo_is_the_embedded_default():
    cfg = load_config("demo")
    assert cfg.data.source == "synthetic"
    assert {s.name for s in cfg.settings} >= {"noniid", "iid"}
    assert cfg.train.model == "densenet_small"


def test_extends_merges_sections_and_replaces_lists():
    iid = load_config("paper_iid")
    noniid = load_config("paper_noniid")
    assert iid.train == noniid.train  # inherited section
    assert [s.name for s in iid.settings] == ["iid"]  # list replaced, not appended
    assert iid.preset == "paper_iid"


def test_overrides_apply_and_are_typed():
    cfg = load_config("demo", {"train": {"lr": 1}, "seeds": [5]})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.seeds == (5,)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.1\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml.*learning_rate"):
        load_config(path)


def test_wrong_type_names_the_key(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: big\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(path)


def test_literal_values_are_checked(tmp_path):
    path = write(tmp_path, "train:\n  algorithm: gossip\n")
    with pytest.raises(ConfigError, match="gossip"):
        load_config(path)


def test_institution_names_must_be_unique_and_plain(tmp_path):
    inst = "{name: a+b, datasets: [nih], train: 1, val: 1}"
    path = write(tmp_path, f"settings:\n  - name: s\n    scheme: noniid\n    institutions: [{inst}]\n")
    with pytest.raises(ConfigError, match=r"a\+b"):
        load_config(path)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="demo"):
        load_config("no_such_preset")


def test_dataset_root_prefers_environment(monkeypatch, tmp_path):
    cfg = load_config("paper_noniid", {"data": {"roots": {"nih": "/from/config"}}})
    assert cfg.dataset_root("nih") == Path("/from/config")
    monkeypatch.setenv("DDVAL_NIH_ROOT", str(tmp_path))
    assert cfg.dataset_root("nih") == tmp_path
    monkeypatch.delenv("DDVAL_MIMIC_ROOT", raising=False)
    assert cfg.dataset_root("mimic") is None
