"""The classifier: a torchvision DenseNet with an 8-way sigmoid head.

``densenet121`` is the paper's network (ImageNet weights when they are already in the local torch
cache); ``densenet_small`` is a DenseNet of the same family with a small block configuration for CPU
runs (sizes from :class:`ddval.config.TrainConfig`). Both keep torchvision's module names, so the
deep-feature layer of the valuation stage is ``model.features.denseblock4`` in both
(:func:`feature_layer`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import DenseNet, DenseNet121_Weights

from ddval.config import LABELS, TrainConfig

log = logging.getLogger(__name__)

#: torchvision's DenseNet-121 sizes (Huang et al. 2017).
DENSENET121 = {"growth_rate": 32, "block_config": (6, 12, 24, 16), "num_init_features": 64}


class XrayDenseNet(DenseNet):
    """torchvision ``DenseNet`` whose head pools with ``mean`` instead of ``adaptive_avg_pool2d``.

    The two are the same function, but the backward of ``adaptive_avg_pool2d`` on CUDA has no
    deterministic implementation and raises under ``torch.use_deterministic_algorithms(True)``;
    a plain mean has one. The state-dict keys are torchvision's, so ImageNet weights load as is.
    """

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.features(x))
        return self.classifier(out.mean(dim=(2, 3)))


def build_model(train_cfg: TrainConfig, num_labels: int = len(LABELS)) -> nn.Module:
    """A fresh network for ``train_cfg.model`` with a ``Linear + Sigmoid`` head of ``num_labels``.

    Random parts are drawn from torch's global RNG: seed it first (``ddval.repro.seed_everything``)
    for a reproducible initialisation. With ``pretrained`` the ImageNet weights of DenseNet-121 must
    already be in the torch hub cache (nothing is downloaded): without them training stops with
    :class:`PretrainedWeightsMissing` rather than silently starting from random weights.
    """
    if train_cfg.model == "densenet121":
        model = XrayDenseNet(**DENSENET121)
        if train_cfg.pretrained:
            _load_cached_imagenet(model)
    elif train_cfg.model == "densenet_small":
        model = XrayDenseNet(
            growth_rate=train_cfg.small_growth_rate,
            block_config=tuple(train_cfg.small_block_config),
            num_init_features=train_cfg.small_init_features,
        )
        if train_cfg.pretrained:
            log.warning("train.pretrained is ignored for densenet_small (no ImageNet weights exist for it)")
    else:  # the config loader already restricts the names; this guards direct construction
        raise ValueError(f"train.model: unknown model {train_cfg.model!r}; known: densenet121, densenet_small")
    model.classifier = nn.Sequential(nn.Linear(model.classifier.in_features, num_labels), nn.Sigmoid())
    return model


def feature_layer(model: nn.Module) -> nn.Module:
    """The last dense block (``features.denseblock4``), whose output DDVal uses as deep features."""
    try:
        return model.features.denseblock4
    except AttributeError as exc:
        raise TypeError(f"{type(model).__name__} has no features.denseblock4; build it with build_model") from exc


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the DenseNet-121 ImageNet weights in the local torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(DenseNet121_Weights.IMAGENET1K_V1.url).name


class PretrainedWeightsMissing(FileNotFoundError):
    """``train.pretrained: true`` but the ImageNet weights are not in the torch cache; says what to do."""


def pretrained_weights_digest(train_cfg: TrainConfig) -> dict[str, str]:
    """``{"imagenet_weights": <SHA-256 of the cached file>}`` when ``train_cfg`` loads ImageNet weights,
    else ``{}``: part of the training parameters, so nodes holding other weights (or none) never
    share one setting's coalitions."""
    if train_cfg.model != "densenet121" or not train_cfg.pretrained:
        return {}
    from ddval.verify import file_sha256

    return {"imagenet_weights": file_sha256(_require_weights())}


def _require_weights() -> Path:
    path = imagenet_weights_path()
    if not path.exists():
        raise PretrainedWeightsMissing(
            f"train.pretrained is true, but the ImageNet weights of DenseNet-121 are not in the torch cache: {path}. "
            f'Put them there (once, on a machine with internet: python -c "import torchvision; '
            f"torchvision.models.densenet121(weights='IMAGENET1K_V1')\", then copy {path.name} into {path.parent} "
            "on every node; $TORCH_HOME moves the cache), or set train.pretrained: false to start from random weights"
        )
    return path


def _load_cached_imagenet(model: XrayDenseNet) -> None:
    path = _require_weights()
    try:
        cached = _read_cached_imagenet()
    except Exception as exc:  # a truncated or foreign file under torchvision's name
        raise RuntimeError(
            f"{path}: unusable ImageNet weights ({exc}); delete the file or set train.pretrained: false"
        ) from exc
    # The cached file is torchvision's: rename its legacy keys, drop its 1000-way head.
    state = {_modern_key(k): v for k, v in cached.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise RuntimeError(
            f"{path}: unusable ImageNet weights (not DenseNet-121's: {len(missing)} keys missing, e.g. {missing[:2]}, "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); delete the file or set train.pretrained: false"
        )


def _read_cached_imagenet() -> dict[str, Tensor]:
    # torchvision finds the file in the cache (no download); it checks hashes only when downloading
    return DenseNet121_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)


def _modern_key(key: str) -> str:
    """``…denselayer1.norm.1.weight`` (the checkpoint's legacy name) → ``…denselayer1.norm1.weight``."""
    for part in ("norm", "relu", "conv"):
        for i in ("1", "2"):
            key = key.replace(f".{part}.{i}.", f".{part}{i}.")
    return key
