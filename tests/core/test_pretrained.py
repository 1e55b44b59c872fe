"""Pretrained weights (issue 17, case 4): `pretrained: true` without ImageNet weights in the torch cache
silently trained DenseNet-121 from random weights, and the training parameters did not say which."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torchvision.models import densenet121

from ddval.config import load_config
from ddval.train.models import PretrainedWeightsMissing, build_model, imagenet_weights_path
from ddval.train.stage import coalition_params
from ddval.verify import file_sha256


@pytest.fixture
def hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield
    torch.hub.set_dir(old)


def paper_params(partition: pd.DataFrame) -> dict:
    cfg = load_config("paper_noniid")
    return coalition_params(cfg, 0, "noniid", ["nih"], partition)


def test_paper_preset_refuses_to_train_without_the_weights(hub):
    cfg = load_config("paper_noniid")
    assert cfg.train.model == "densenet121" and cfg.train.pretrained
    with pytest.raises(PretrainedWeightsMissing) as err:
        build_model(cfg.train)
    text = str(err.value)
    assert str(imagenet_weights_path()) in text and "torchvision.models.densenet121(weights='IMAGENET1K_V1')" in text
    assert "set train.pretrained: false" in text
    with pytest.raises(PretrainedWeightsMissing):  # before any coalition trains: the parameters need them
        paper_params(pd.DataFrame({"scan_id": ["a"]}))


def test_the_hash_of_the_loaded_weights_is_a_training_parameter(hub):
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(densenet121(weights=None).state_dict(), path)
    partition = pd.DataFrame({"scan_id": ["a"]})
    first = paper_params(partition)
    assert first["imagenet_weights"] == file_sha256(path)
    build_model(load_config("paper_noniid").train)  # and they load
    torch.manual_seed(1)
    torch.save(densenet121(weights=None).state_dict(), path)  # another node, other weights
    assert paper_params(partition)["imagenet_weights"] != first["imagenet_weights"]
    demo = load_config("demo")  # random initialisation: nothing added (the demo's hashes are unchanged)
    assert "imagenet_weights" not in coalition_params(demo, 0, "noniid", ["nih"], partition)
