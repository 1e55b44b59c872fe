"""The preset loader: every shipped preset loads, typos and bad values fail with the file and key named."""

from pathlib import Path

import pytest

from ddval.config import ConfigError, ExperimentConfig, available_presets, load_config, preset_name


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


def test_a_setting_can_train_its_own_number_of_replicates(tmp_path):
    from ddval.layout import setting_replicates

    inst = "{name: a, datasets: [nih], train: 1, val: 1}, {name: b, datasets: [chexpert], train: 1, val: 1}"
    body = "    scheme: noniid\n    institutions: [" + inst + "]\n"
    text = f"settings:\n  - name: s\n    replicates: 3\n{body}  - name: t\n{body}"
    cfg = load_config(write(tmp_path, text))
    assert (setting_replicates(cfg, "s"), setting_replicates(cfg, "t")) == (3, cfg.train.replicates)
    grand = load_config(
        write(tmp_path, text.replace("    replicates: 3\n", "    replicates: 3\n    coalitions: grand\n"))
    )
    assert setting_replicates(grand, "s") == 1  # no ground truth to replicate
    with pytest.raises(ConfigError, match=r"p\.yaml: settings\.s: replicates must be >= 1, got 0"):
        load_config(write(tmp_path, text.replace("replicates: 3", "replicates: 0")))


def test_training_replicates_are_checked(tmp_path):
    assert load_config(write(tmp_path, "train:\n  replicates: 3\n")).train.replicates == 3
    assert load_config("demo").train.replicates >= 1
    with pytest.raises(ConfigError, match=r"p\.yaml: train\.replicates must be >= 1, got 0"):
        load_config(write(tmp_path, "train:\n  replicates: 0\n"))
    inst = "{name: replicate-1, datasets: [nih], train: 1, val: 1}"  # would share the replicate's folder
    path = write(tmp_path, f"settings:\n  - name: s\n    scheme: noniid\n    institutions: [{inst}]\n")
    with pytest.raises(ConfigError, match="replicate-1"):
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


# ---- presets as files, data roots (issue 17, cases 1 and 3) ------------------------------------


def test_a_preset_file_is_filed_under_its_name_everywhere(tmp_path):
    from ddval import layout, summary

    (tmp_path / "presets").mkdir()
    path = tmp_path / "presets" / "nihreal.yaml"
    path.write_text("extends: demo\nseeds: [0]\n")
    cfg = load_config(path)
    assert cfg.preset == "nihreal" and preset_name(path) == preset_name(str(path)) == "nihreal"
    assert preset_name("demo") == "demo"
    assert layout.figures_dir(cfg, tmp_path) == tmp_path / "nihreal" / "figures"
    tables = summary.ResultTables.open(tmp_path, str(path))  # what notebook 06 gets as `preset`
    assert tables.preset_dir == tmp_path / "nihreal" and tables.figures_dir == tmp_path / "nihreal" / "figures"


def test_extends_finds_a_sibling_preset_file_next_to_the_extending_one(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "base.yaml").write_text("extends: demo\ntrain:\n  lr: 0.5\n")
    (folder / "child.yaml").write_text("extends: base.yaml\nseeds: [7]\n")
    monkeypatch.chdir(tmp_path)  # not the presets' folder
    cfg = load_config(folder / "child.yaml")
    assert (cfg.preset, cfg.seeds, cfg.train.lr) == ("child", (7,), 0.5)


def test_relative_data_roots_are_relative_to_the_preset_file(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "nih.yaml").write_text("extends: paper_noniid\ndata:\n  roots: {nih: ../scans/nih, mimic: /abs/mimic}\n")
    monkeypatch.chdir(folder.parent.parent)
    monkeypatch.delenv("DDVAL_NIH_ROOT", raising=False)
    cfg = load_config(folder / "nih.yaml")
    assert cfg.data.roots == {"nih": str(tmp_path / "scans" / "nih"), "mimic": "/abs/mimic"}


def test_root_precedence_is_stated_with_the_root(monkeypatch, tmp_path):
    cfg = load_config("paper_noniid", {"data": {"roots": {"nih": "/from/preset", "chexpert": "/from/preset2"}}})
    for var in ("DDVAL_NIH_ROOT", "DDVAL_CHEXPERT_ROOT", "DDVAL_MIMIC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DDVAL_NIH_ROOT", str(tmp_path))
    monkeypatch.setenv("DDVAL_CHEXPERT_ROOT", "")  # empty: not set
    root, why = cfg.dataset_root_origin("nih")
    assert root == tmp_path and why == "from $DDVAL_NIH_ROOT; it takes precedence over data.roots.nih = /from/preset"
    root, why = cfg.dataset_root_origin("chexpert")
    assert root == Path("/from/preset2") and "data.roots.chexpert of preset 'paper_noniid'" in why
    assert cfg.dataset_root_origin("mimic") == (None, "not configured: set $DDVAL_MIMIC_ROOT or data.roots.mimic")


def test_a_settings_replicates_are_not_part_of_its_partition_or_of_one_training():
    """Adding replicates to a setting keeps its partition and replicate 0's models (their parameters hash the
    same), so a results folder gains replicates without retraining what it has."""
    import dataclasses

    from ddval.store import param_hash
    from ddval.train.stage import model_params

    cfg = load_config("demo")
    for n in (None, 1, 3):
        other = dataclasses.replace(
            cfg,
            settings=tuple(
                dataclasses.replace(s, replicates=n if s.name == "noniid" else s.replicates) for s in cfg.settings
            ),
        )
        assert param_hash(model_params(other, 0, "noniid", ("nih",))) == param_hash(
            model_params(cfg, 0, "noniid", ("nih",))
        )
