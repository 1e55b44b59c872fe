"""Institutions that differ in quality, not in size: what each kind does to an institution's training scans.

A setting's institution can say ``quality: <kind>`` (``ddval.config.InstitutionConfig``). When its
partition is cut (:func:`ddval.data.splits.load_partition`), the institution's **training** scans are
rewritten as that kind says; its validation and test scans stay as they are (the task the consortium
trains for is the clean one, and label flips, the other kind of low quality, also touch training labels
only). Every kind keeps the number of training scans, so a setting of equal-size institutions differs
only in what the data is worth:

* ``clean``: unchanged;
* ``degraded``: a poor acquisition chain: Gaussian blur (σ = :data:`BLUR_SIGMA` of the side), low
  contrast (×:data:`LOW_CONTRAST` around the image mean) and pixel noise (σ = :data:`PIXEL_NOISE`);
* ``shifted``: a domain shift, another site's imaging chain: a narrower field of view (the central
  1/:data:`ZOOM` of the image, enlarged), a brighter display curve (gamma :data:`SHIFT_GAMMA`) and a
  collimation frame; the anatomy and the findings are still there, differently drawn;
* ``duplicates``: redundant data: only every :data:`DUPLICATE_COPIES`-th scan is distinct, each shown
  :data:`DUPLICATE_COPIES` times with a one-pixel shift and faint noise (scan ids ``<id>~<copy>``);
* ``ood``: out-of-distribution scans: the images are replaced by smooth random fields with bright blobs
  (no chest anatomy at all) while the labels stay those of the replaced scans, so they carry no signal.

Label noise is the institution's ``flip_rate`` (:mod:`ddval.data.splits`). Rewritten scans are written
as PNG under ``<S>/scans/<institution>/`` and the partition's ``path`` points there; the column
``quality`` names the kind of every row (``clean`` for untouched ones). Everything is deterministic
given (seed, institution number, scan id).
"""

from __future__ import annotations

import hashlib
import os
import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from ddval import store
from ddval.config import QualityKind, SettingConfig

#: The quality kinds (``ddval.config.QualityKind``), in the order the documentation lists them.
QUALITY_KINDS: tuple[str, ...] = typing.get_args(QualityKind)
#: ``degraded``: blur σ as a fraction of the image side, contrast factor, noise σ (intensity in [0, 1]).
BLUR_SIGMA, LOW_CONTRAST, PIXEL_NOISE = 0.025, 0.6, 0.05
#: ``shifted``: zoom factor of the field of view, display gamma, collimation frame (fraction of the side).
ZOOM, SHIFT_GAMMA, FRAME = 1.35, 0.6, 0.08
#: ``duplicates``: copies of every distinct scan, and the noise σ that makes the copies near (not exact) ones.
DUPLICATE_COPIES, DUPLICATE_NOISE = 4, 0.01
#: Everything above that shapes a rewritten scan (part of the partition's stage parameters).
PARAMETERS = {"blur_sigma": BLUR_SIGMA, "low_contrast": LOW_CONTRAST, "pixel_noise": PIXEL_NOISE, "zoom": ZOOM,
              "shift_gamma": SHIFT_GAMMA, "frame": FRAME, "duplicate_copies": DUPLICATE_COPIES,
              "duplicate_noise": DUPLICATE_NOISE}
#: Column of the partition that names each row's quality kind.
QUALITY_COLUMN = "quality"


def _rng(seed: int, number: int, scan_id: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(str(scan_id).encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), 0x7175, int(number), key])  # 0x7175: "qu"


def _unit(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``degraded``: blur, low contrast, pixel noise (uint8 H x W in and out)."""
    x = ndimage.gaussian_filter(_unit(img), BLUR_SIGMA * img.shape[0])
    x = x.mean() + LOW_CONTRAST * (x - x.mean())
    return _uint8(x + rng.normal(0.0, PIXEL_NOISE, x.shape))


def shift(img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``shifted``: narrower field of view, brighter display curve, collimation frame."""
    h, w = img.shape
    ch, cw = int(round(h / ZOOM)), int(round(w / ZOOM))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.asarray(img, dtype=np.uint8)[top:top + ch, left:left + cw])
    x = _unit(np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR))) ** SHIFT_GAMMA
    b = max(1, int(round(FRAME * h)))
    x[:b], x[-b:], x[:, :b], x[:, -b:] = 0.0, 0.0, 0.0, 0.0
    return _uint8(x)


def near_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``duplicates``: the scan shifted by up to one pixel with faint noise."""
    dy, dx = rng.integers(-1, 2, size=2)
    x = np.roll(_unit(img), (int(dy), int(dx)), axis=(0, 1))
    return _uint8(x + rng.normal(0.0, DUPLICATE_NOISE, x.shape))


def out_of_distribution(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ood``: a smooth random field with a few bright elliptical blobs, the size of ``img``."""
    h, w = img.shape
    x = ndimage.gaussian_filter(rng.normal(size=(h, w)), 0.12 * h)
    x = (x - x.min()) / (np.ptp(x) + 1e-12)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], dtype=float)[:, None, None]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx, ry, rx = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
        x = np.maximum(x, (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0) * rng.uniform(0.7, 1.0))
    return _uint8(x)


#: Image rewrite of every kind that rewrites images one by one.
_REWRITE = {"degraded": degrade, "shifted": shift, "duplicates": near_copy, "ood": out_of_distribution}


def apply(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The image ``img`` (uint8 H x W) as an institution of quality ``kind`` holds it."""
    check_kind(kind)
    return np.asarray(img, dtype=np.uint8).copy() if kind == "clean" else _REWRITE[kind](np.asarray(img), rng)


def check_kind(kind: str, where: str = "quality") -> None:
    """Raise ``ValueError`` naming ``where`` when ``kind`` is not one of :data:`QUALITY_KINDS`."""
    if kind not in QUALITY_KINDS:
        raise ValueError(f"{where}: unknown quality {kind!r}; known: {list(QUALITY_KINDS)}")


def _duplicate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The first ``⌈n / copies⌉`` rows, each repeated (in order) until there are ``n`` rows again, with
    scan ids ``<id>~<copy>``."""
    n = len(rows)
    distinct = rows.iloc[: -(-n // DUPLICATE_COPIES)]
    out = distinct.loc[distinct.index.repeat(DUPLICATE_COPIES)].iloc[:n].copy()
    copy = out.groupby(level=0).cumcount().to_numpy()
    out["scan_id"] = [f"{s}~{c}" for s, c in zip(out["scan_id"].astype(str), copy)]
    return out.reset_index(drop=True)


def rewrite_institution(rows: pd.DataFrame, kind: str, seed: int, number: int, out_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[Path]]:
    """Training ``rows`` of institution ``number`` as quality ``kind``: images rewritten under
    ``out_dir`` (``<scan_id>.png``), ``path`` re-pointed; returns the rows and the files written."""
    check_kind(kind)
    if kind == "clean" or rows.empty:
        return rows, []
    from ddval.data.dataset import load_image

    rows = _duplicate_rows(rows) if kind == "duplicates" else rows.reset_index(drop=True)
    out_dir = Path(out_dir)
    paths = []
    for scan_id, src in zip(rows["scan_id"].astype(str), rows["path"].astype(str)):
        dst = out_dir / f"{scan_id}.png"
        pixels = apply(load_image(src), kind, _rng(seed, number, scan_id))
        with store.atomic_path(dst) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        paths.append(dst)
    return rows.assign(path=[str(p) for p in paths]), paths


def apply_qualities(partition: pd.DataFrame, setting: SettingConfig, seed: int, scans_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[Path]]:
    """The partition with every institution's training scans rewritten as its ``quality`` says, and the
    ``quality`` column added (rows keep their order; a ``duplicates`` institution's training rows are
    replaced by the repeated ones). Returns the partition and the image files written."""
    parts, written = [], []
    kinds = {i.name: i.quality for i in setting.institutions}
    numbers = {i.name: k for k, i in enumerate(setting.institutions)}
    keys = partition["institution"].astype(str) + "\0" + partition["split"].astype(str)
    for key, rows in partition.groupby(keys, sort=False):
        name, split = key.split("\0")
        kind = kinds[name] if split == "train" else "clean"
        rows, files = rewrite_institution(rows, kind, seed, numbers[name], Path(scans_dir) / name)
        parts.append(rows.assign(**{QUALITY_COLUMN: kind}))
        written += files
    return pd.concat(parts, ignore_index=True), written


def quality_examples(index: pd.DataFrame, kinds: Sequence[str] = QUALITY_KINDS, n: int = 4, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``n`` scans of ``index`` (the same ones for every kind) as each quality kind renders them, for a
    montage (notebook 02)."""
    from ddval.data.dataset import load_image

    picked = index.sample(n=min(n, len(index)), random_state=seed)
    out = {}
    for kind in kinds:
        out[kind] = [apply(load_image(p), kind, _rng(seed, 0, s)) for s, p in zip(picked["scan_id"], picked["path"])]
    return out


def quality_montage(index: pd.DataFrame, kinds: Sequence[str] = QUALITY_KINDS, n: int = 4, seed: int = 0):
    """A matplotlib figure: one row per quality kind, the same ``n`` scans in every row."""
    import matplotlib.pyplot as plt

    examples = quality_examples(index, kinds, n, seed)
    fig, axes = plt.subplots(len(examples), n, figsize=(1.5 * n, 1.6 * len(examples)), squeeze=False)
    for r, (kind, images) in enumerate(examples.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(kind)
    fig.tight_layout()
    return fig
