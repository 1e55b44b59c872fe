"""The networks: both sizes expose denseblock4, the head is deterministic-safe, no downloads."""

import re

import pytest
import torch
from torchvision.models import DenseNet, densenet121

from ddval.config import TrainConfig
from ddval.train import models
from ddval.train.models import XrayDenseNet, build_model, feature_layer, imagenet_weights_path


def test_small_densenet_outputs_probabilities_and_has_the_feature_layer():
    cfg = TrainConfig(model="densenet_small", pretrained=False)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, DenseNet)
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 8) and ((out > 0) & (out < 1)).all()
    seen = []
    feature_layer(model).register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(2, 3, 64, 64))
    assert seen and seen[0][0] == 2 and seen[0][2:] == (2, 2)  # 64 / 32


def test_mean_pooling_head_equals_torchvision_forward():
    torch.manual_seed(0)
    ours = XrayDenseNet(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, num_classes=5).eval()
    theirs = DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, num_classes=5).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.fixture
def empty_hub(tmp_path):
    """An empty torch hub cache (nothing may be downloaded), restored afterwards."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_densenet121_without_cached_weights_is_refused(empty_hub):
    # issue 17 case 4: it used to start from random weights with a log line (tests/core/test_pretrained.py)
    assert not imagenet_weights_path().exists()
    with pytest.raises(models.PretrainedWeightsMissing, match="set train.pretrained: false"):
        build_model(TrainConfig(model="densenet121", pretrained=True))
    model = build_model(TrainConfig(model="densenet121", pretrained=False))
    assert feature_layer(model).denselayer16 is not None
    assert model.classifier[0].out_features == 8 and model.classifier[0].in_features == 1024


def test_densenet121_loads_cached_imagenet_weights(empty_hub, monkeypatch):
    # torchvision's checkpoint uses legacy key names ("norm.1") and a 1000-way head
    torch.manual_seed(0)
    reference = densenet121(weights=None)
    legacy = {
        re.sub(r"(denselayer\d+\.(norm|relu|conv))([12])\.", r"\1.\3.", k): v for k, v in reference.state_dict().items()
    }
    assert any(".norm.1." in k for k in legacy)
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cached")
    monkeypatch.setattr(models, "_read_cached_imagenet", lambda: legacy)
    model = build_model(TrainConfig(model="densenet121", pretrained=True))
    for key, value in reference.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(model.state_dict()[key], value), key
    assert model.classifier[0].out_features == 8


def test_a_foreign_file_in_the_cache_is_refused(empty_hub):
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, path)  # right name, wrong bytes
    with pytest.raises(RuntimeError, match="unusable ImageNet weights"):
        build_model(TrainConfig(model="densenet121", pretrained=True))
