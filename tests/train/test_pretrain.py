"""The attribute-pretrained backbone (``train.pretrain: attributes``) on a tiny synthetic cohort."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from ddval import layout, store
from ddval.config import LABELS, load_config
from ddval.data.splits import load_partition
from ddval.train import pretrain, record, run_training_stage
from ddval.train.local import derive_seed
from ddval.train.models import build_model
from ddval.train.setting_data import frame_digest
from ddval.train.stage import EXECUTION_ONLY, coalition_params, model_params

TINY = {
    "data": {
        "image_size": 32,
        "workers": 1,
        "synthetic": {"patients": {"nih": 40, "chexpert": 24, "mimic": 40}, "image_size": 48},
    },
    "settings": [
        {
            "name": "pair",
            "scheme": "noniid",
            "institutions": [
                {"name": "nih", "datasets": ["nih"], "train": 16, "val": 6, "test": 10},
                {"name": "mimic", "datasets": ["mimic"], "train": 16, "val": 6, "test": 10},
            ],
        }
    ],
    "train": {
        "max_rounds": 1,
        "patience": 1,
        "batch_size": 8,
        "lr": 0.1,
        "threads": 1,
        "processes": 1,
        "device": "cpu",
        "small_growth_rate": 4,
        "small_block_config": [1, 1, 1, 1],
        "small_init_features": 8,
        "pretrain": "attributes",
        "pretrain_epochs": 2,
        "replicates": 2,
    },
}


def tiny(**train):
    """The tiny preset with pretraining on, ``train`` changed."""
    return load_config("demo", {**TINY, "train": {**TINY["train"], **train}})


@pytest.fixture(scope="module")
def root(tmp_path_factory, build_cohort):
    return build_cohort(tiny(), tmp_path_factory)


def test_public_scans_are_disjoint_from_every_institution(root):
    cfg = tiny()
    partition = load_partition(cfg, 0, "pair", root=root)
    index = store.read_table(layout.resized_index_path(cfg, root))
    train, val = pretrain.public_scans(index, partition, 0)
    public = pd.concat([train, val])
    assert len(train) > 0 and len(val) > 0
    assert set(public["scan_id"]).isdisjoint(partition["scan_id"])
    assert set(public["patient_id"]).isdisjoint(partition["patient_id"])
    assert set(train["patient_id"]).isdisjoint(val["patient_id"])
    # public: exactly the scans of the patients no institution holds (their unused scans stay out too)
    assert set(public["scan_id"]) == set(index[~index["patient_id"].isin(partition["patient_id"])]["scan_id"])
    with pytest.raises(ValueError, match="no public scans"):
        pretrain.public_scans(index[index["scan_id"].isin(partition["scan_id"])], partition, 0)


def test_targets_are_the_attributes_not_the_findings(root):
    rows = pd.DataFrame(
        {
            "dataset": ["nih", "chexpert", "mimic"],
            "sex": ["M", "F", "U"],
            "view_position": ["AP", "PA", "LATERAL"],
            "age": [25, 55, None],
        }
    )
    expected = [[1, 0, 0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(pretrain.attribute_targets(rows), np.array(expected, dtype=np.float32))
    cfg = tiny()
    index = store.read_table(layout.resized_index_path(cfg, root))
    train, _ = pretrain.public_scans(index, load_partition(cfg, 0, "pair", root=root), 0)
    findings = index.set_index("scan_id").loc[train["scan_id"], list(LABELS)].to_numpy(dtype=np.float32)
    targets = train[list(LABELS)].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(targets, pretrain.attribute_targets(train))
    assert not np.array_equal(targets, findings)


def _head(state):
    return {k: v for k, v in state.items() if k.startswith("classifier.")}


def test_every_coalition_and_replicate_starts_from_the_pretrained_backbone(root, monkeypatch):
    cfg = tiny()
    starts = []

    def spy(model, backbone):
        pretrain.start_from(model, backbone)
        starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(record, "start_from", spy)
    out = run_training_stage(cfg, 0, root=root)
    assert sorted(set(out["replicate"])) == [0, 1]
    assert len(starts) == 3 * 2  # every coalition of both replicates
    partition = load_partition(cfg, 0, "pair", root=root)
    backbone = pretrain.pretrained_backbone(cfg, 0, "pair", partition, frame_digest(partition), root)
    assert backbone and not any(k.startswith("classifier.") for k in backbone)
    for state in starts:
        for k, v in backbone.items():
            assert torch.equal(state[k], v), k
    # the head is the replicate's fresh, seeded one, not the pretrained attribute head
    saved = torch.load(pretrain.pretrain_dir(cfg, 0, "pair", root) / "model.pt", weights_only=False)["state"]
    heads = {}
    for r in (0, 1):
        torch.manual_seed(derive_seed(record.training_seed(0, r), "init"))
        heads[r] = _head(build_model(cfg.train).state_dict())

    def replicate_of(state):
        return [r for r, head in heads.items() if all(torch.equal(state[k], v) for k, v in head.items())]

    assert sorted(r for state in starts for r in replicate_of(state)) == [0, 0, 0, 1, 1, 1]
    assert not any(torch.equal(heads[0][k], saved[k]) for k in heads[0])
    assert not any(torch.equal(heads[0][k], heads[1][k]) for k in heads[0] if k.endswith("weight"))
    # the grand coalition's recorded initial model is that start too
    grand = torch.load(
        layout.coalition_dir(cfg, 0, "pair", ("nih", "mimic"), root) / "rounds" / "000" / "global.pt",
        weights_only=False,
    )["state"]
    assert all(torch.equal(grand[k], v) for k, v in backbone.items())


def test_a_second_call_skips_and_a_change_retrains(root, monkeypatch):
    cfg = tiny()
    partition = load_partition(cfg, 0, "pair", root=root)
    digest = frame_digest(partition)
    pretrain.pretrained_backbone(cfg, 0, "pair", partition, digest, root)
    real, calls = pretrain._pretrain, []

    def counting(*args):
        calls.append(args[0].train.pretrain_epochs)
        return real(*args)

    monkeypatch.setattr(pretrain, "_pretrain", counting)
    first = pretrain.pretrained_backbone(cfg, 0, "pair", partition, digest, root)
    assert calls == []
    other = tiny(pretrain_epochs=1)
    assert pretrain.pretrain_hash(other, 0, "pair", digest) != pretrain.pretrain_hash(cfg, 0, "pair", digest)
    second = pretrain.pretrained_backbone(other, 0, "pair", partition, digest, root)
    assert calls == [1]
    assert any(not torch.equal(first[k], second[k]) for k in first)
    # the coalitions' parameters follow the backbone
    members = ("nih", "mimic")
    assert coalition_params(cfg, 0, "pair", members, partition)["pretrain"] == pretrain.pretrain_hash(
        cfg, 0, "pair", digest
    )


@pytest.mark.parametrize("preset", ["demo", "benchmark"])
def test_presets_without_pretrain_keep_their_hashes(preset):
    cfg = load_config(preset)
    assert cfg.train.pretrain == "none"
    setting = cfg.settings[0]
    members = [i.name for i in setting.institutions]
    params = model_params(cfg, 0, setting.name, members)
    # the train parameters exactly as they were hashed before the pretrain options existed
    before = {
        k: v
        for k, v in dataclasses.asdict(cfg.train).items()
        if k not in (*EXECUTION_ONLY, "pretrain", "pretrain_epochs")
    }
    assert params["train"] == before
    partition = pd.DataFrame({"scan_id": ["a"], "patient_id": ["p"]})
    assert "pretrain" not in coalition_params(cfg, 0, setting.name, members, partition)
    on = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pretrain="attributes"))
    assert store.param_hash(model_params(on, 0, setting.name, members)) != store.param_hash(params)
    assert "pretrain" in coalition_params(on, 0, setting.name, members, partition)
