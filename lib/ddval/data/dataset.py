"""Torch dataset over partition rows: ``(image 3 x S x S, labels float32[8])``.

Images are read as 8-bit grayscale (:func:`ddval.data.images.read_grayscale`), resized to
``S x S`` if they are not already (the resize stage normally did it), scaled to [0, 1],
replicated to 3 channels and normalised with the ImageNet mean/std (the paper's DenseNet-121 is
ImageNet-pretrained). Training augmentation (``train=True`` and ``TrainConfig.augment``): random
horizontal flip (``hflip``), then one random affine map with rotation in
``[-rotation_degrees, rotation_degrees]`` and translation up to ``translate`` of the side in each
direction (the paper's RandomAffine(translate) + RandomRotation, applied as one bilinear resampling;
the border is filled black). Randomness comes from torch's global generator, so seeding torch
(``ddval.repro.seed_everything``) makes epochs reproducible.

Memory policy: when all images of the dataset fit in ``$DDVAL_IMAGE_CACHE_MB`` (default 1024 MiB
as uint8 ``S x S``; e.g. 250,000 images at 64 px or 16,000 at 256 px) they are decoded once, when
the dataset is built, and kept in memory, which also finds an unreadable file before training
starts; larger datasets read each image when it is requested. A missing or unreadable image is an
error naming its path (never another sample in its place).

The transforms are written with plain tensor operations (``affine_grid``/``grid_sample``) rather
than torchvision's ``v2`` pipeline: a few thousand 32 px images then take ~0.1 s per epoch
instead of several seconds of per-sample dispatch overhead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from ddval.config import LABELS, TrainConfig
from ddval.data.images import read_grayscale

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Default budget of the in-memory image cache (MiB); ``$DDVAL_IMAGE_CACHE_MB`` overrides.
CACHE_MB = 1024


class XrayTransform:
    """Callable: uint8/float image (H x W, 1 x H x W, numpy, tensor or PIL) -> normalised 3 x S x S."""

    def __init__(self, image_size: int, train: bool = False, train_cfg: TrainConfig | None = None):
        cfg = train_cfg or TrainConfig()
        self.size = int(image_size)
        self.augment = bool(train and cfg.augment)
        self.hflip = bool(cfg.hflip)
        self.degrees = float(cfg.rotation_degrees)
        self.translate = float(cfg.translate)
        # Normalisation as one multiply-add per channel, for [0, 1] input: (x - mean) / std.
        self.scale = (1.0 / torch.tensor(IMAGENET_STD, dtype=torch.float32)).view(3, 1, 1)
        self.shift = (-torch.tensor(IMAGENET_MEAN, dtype=torch.float32) * self.scale.view(3)).view(3, 1, 1)
        # Pixel centres in grid_sample's normalised coordinates (align_corners=False): S x S x (x, y).
        c = (torch.arange(self.size, dtype=torch.float32) * 2 + 1) / self.size - 1
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        self._base = torch.stack([xx, yy], dim=-1)

    def __call__(self, image: Any) -> torch.Tensor:
        x = _as_unit_tensor(image)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )[0]
        if self.augment:
            x = self._augment(x)
        return torch.addcmul(self.shift, x, self.scale)  # broadcasts 1 x S x S to 3 x S x S

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand(4).tolist()
        flip = self.hflip and u[0] < 0.5
        angle = (u[1] * 2 - 1) * self.degrees
        tx, ty = (u[2] * 2 - 1) * self.translate, (u[3] * 2 - 1) * self.translate
        return affine(x, flip, angle, tx, ty, self._base)

    def __repr__(self) -> str:
        aug = f", hflip={self.hflip}, degrees={self.degrees}, translate={self.translate}" if self.augment else ""
        return f"XrayTransform(size={self.size}, augment={self.augment}{aug})"


def affine(
    x: torch.Tensor, flip: bool, angle: float, tx: float, ty: float, base: torch.Tensor | None = None
) -> torch.Tensor:
    """Flip (horizontally, first), rotate by ``angle`` degrees (counter-clockwise on screen) about the
    centre, and shift by ``tx``/``ty`` (fractions of the width/height; positive = right/down) a
    1 x S x S image with one bilinear resampling; the border is filled with 0."""
    size = x.shape[-1]
    if base is None:
        c = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        base = torch.stack([xx, yy], dim=-1)
    if angle == 0 and tx == 0 and ty == 0:
        return x.flip(-1) if flip else x
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    f = -1.0 if flip else 1.0
    # grid_sample needs, for each output pixel, its input position. With row vectors and y pointing
    # down, a screen-counter-clockwise rotation maps p_in -> p_in @ M^T with M = [[c, s], [-s, c]], so
    # p_in = (p_out - shift) @ M, then the flip (x -> -x) of the input: p_orig = p_in @ F.
    sx, sy = 2 * tx, 2 * ty  # normalised units: the side is 2 long
    m = torch.tensor([[f * c, s], [-f * s, c]], dtype=torch.float32)  # M @ F
    t = torch.tensor([-f * (sx * c - sy * s), -(sx * s + sy * c)], dtype=torch.float32)
    grid = (base @ m + t)[None]
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _as_unit_tensor(image: Any) -> torch.Tensor:
    """1 x H x W float32 in [0, 1] from uint8/float numpy, tensor or PIL (grayscale)."""
    if isinstance(image, Image.Image):
        image = np.array(image.convert("L"))
    elif isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()  # torch warns on read-only arrays (e.g. np.asarray of a PIL image)
    x = torch.as_tensor(image)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] != 1:
        raise ValueError(f"expected a grayscale image (H x W or 1 x H x W), got shape {tuple(x.shape)}")
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def build_transforms(
    image_size: int, train: bool = False, train_cfg: TrainConfig | None = None
) -> Callable[[Any], torch.Tensor]:
    """The transform of the paper for ``train`` (augmenting) or evaluation (see the module docstring)."""
    return XrayTransform(image_size, train, train_cfg)


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """8-bit grayscale ``H x W`` array of ``path`` (resized to ``size x size`` when given);
    raises :class:`ddval.data.images.CorruptImageError` naming the path when it cannot be read."""
    img = read_grayscale(path)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(img, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def _cache_budget() -> int:
    return int(float(os.environ.get("DDVAL_IMAGE_CACHE_MB", CACHE_MB)) * 2**20)


class XrayDataset(torch.utils.data.Dataset):
    """Scans of a partition (or index) frame with the 8 labels of :data:`ddval.config.LABELS`.

    ``cache``: ``None`` decides by the memory budget (module docstring), ``True``/``False`` force it.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        image_size: int,
        train: bool = False,
        train_cfg: TrainConfig | None = None,
        cache: bool | None = None,
    ):
        missing = [c for c in ("path", *LABELS) if c not in frame.columns]
        if missing:
            raise KeyError(f"XrayDataset needs columns {missing}; got {list(frame.columns)}")
        self.paths = frame["path"].astype(str).tolist()
        self.labels = torch.tensor(frame[list(LABELS)].to_numpy(dtype=np.float32))
        self.image_size = int(image_size)
        self.transform = build_transforms(image_size, train, train_cfg)
        if cache is None:
            cache = len(self.paths) * self.image_size**2 <= _cache_budget()
        self.images: torch.Tensor | None = None
        if cache and self.paths:
            self.images = torch.from_numpy(np.stack([load_image(p, self.image_size) for p in self.paths]))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i] if self.images is not None else load_image(self.paths[i], self.image_size)
        return self.transform(image), self.labels[i]
