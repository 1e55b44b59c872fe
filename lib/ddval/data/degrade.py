"""Institutions that differ in quality, not in size: what each kind does to an institution's training scans.

A setting's institution can say ``quality: <kind>`` (:class:`ddval.config.InstitutionConfig`). When its
partition is cut (:func:`ddval.data.splits.load_partition`), the institution's **training** scans are
rewritten as that kind says; its validation and test scans stay as they are (the task the consortium
trains for is the clean one; label flips, the other kind of low quality, also touch training labels
only). Every kind keeps the number of training scans, so a setting of equal-size institutions differs
only in what the data is worth:

* ``clean``: unchanged;
* ``degraded``: a poor acquisition chain: Gaussian blur (σ = :data:`BLUR_SIGMA` of the side), low
  contrast (x :data:`LOW_CONTRAST` around the image mean) and faint pixel noise (σ = :data:`PIXEL_NOISE`);
* ``shifted``: a domain shift, another site's imaging chain: a narrower field of view (the central
  1 / :data:`ZOOM` of the image, enlarged), a brighter display curve (gamma :data:`SHIFT_GAMMA`) and a
  black collimation frame; the anatomy and the findings are still there, differently drawn;
* ``duplicates``: redundant data: only the first ceil(n / :data:`DUPLICATE_COPIES`) training scans are
  distinct, each held :data:`DUPLICATE_COPIES` times with a shift of up to one pixel and faint noise
  (scan ids ``<id>~<copy>``, labels and patient of the original);
* ``ood``: out-of-distribution scans: the images are replaced by smooth random fields with bright blobs
  (no chest anatomy at all) while the labels stay those of the replaced scans, so they carry no signal.

Label noise is the institution's ``flip_rate`` (:mod:`ddval.data.splits`). Rewritten scans are PNG files
under ``<S>/scans/<institution>/`` (outputs of the partition stage, so its completion record vouches for
them) and the partition's ``path`` points there. A setting with a kind other than ``clean`` gets the columns
``quality`` (the kind of every row; ``clean`` for validation and test rows) and ``quality_params`` (the hash
of :data:`PARAMETERS` on rewritten rows, so the partition's content digest changes with them); a setting
without one is cut exactly as before. Everything is deterministic given (seed, institution number, scan id).
"""

from __future__ import annotations

import hashlib
import os
import re
import typing
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from ddval import store
from ddval.config import QualityKind, SettingConfig
from ddval.data.images import read_grayscale

#: The quality kinds (``ddval.config.QualityKind``), in the order the documentation lists them.
QUALITY_KINDS: tuple[str, ...] = typing.get_args(QualityKind)
#: ``degraded``: blur σ as a fraction of the image side, contrast factor, noise σ (intensity in [0, 1]).
BLUR_SIGMA, LOW_CONTRAST, PIXEL_NOISE = 0.04, 0.5, 0.01
#: ``shifted``: zoom factor of the field of view, display gamma, collimation frame (fraction of the side).
ZOOM, SHIFT_GAMMA, FRAME = 1.35, 0.6, 0.08
#: ``duplicates``: copies of every distinct scan, and the noise σ that makes the copies near (not exact) ones.
DUPLICATE_COPIES, DUPLICATE_NOISE = 4, 0.01
#: Everything above that shapes a rewritten scan (part of the partition stage's parameters).
PARAMETERS = {
    "blur_sigma": BLUR_SIGMA,
    "low_contrast": LOW_CONTRAST,
    "pixel_noise": PIXEL_NOISE,
    "zoom": ZOOM,
    "shift_gamma": SHIFT_GAMMA,
    "frame": FRAME,
    "duplicate_copies": DUPLICATE_COPIES,
    "duplicate_noise": DUPLICATE_NOISE,
}
#: Partition column that names each row's quality kind, and the one with the hash of :data:`PARAMETERS`.
QUALITY_COLUMN, PARAMS_COLUMN = "quality", "quality_params"
#: Separator of a duplicate's scan id: ``<id>~<copy>``.
COPY_SEPARATOR = "~"


def scan_rng(seed: int, number: int, scan_id: str) -> np.random.Generator:
    """The generator that rewrites one scan.

    Args:
        seed: the run's seed.
        number: the institution's position in its setting.
        scan_id: the (rewritten) scan's id.

    Returns:
        A generator that depends on these three only.
    """
    key = int.from_bytes(hashlib.sha256(str(scan_id).encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), 0x7175, int(number), key])  # 0x7175: "qu"


def _unit(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``degraded``: blur, low contrast, faint pixel noise.

    Args:
        img: uint8 ``H x W`` scan.
        rng: the scan's generator (:func:`scan_rng`).

    Returns:
        The degraded scan (uint8, same shape).
    """
    x = ndimage.gaussian_filter(_unit(img), BLUR_SIGMA * img.shape[0])
    x = x.mean() + LOW_CONTRAST * (x - x.mean())
    return _uint8(x + rng.normal(0.0, PIXEL_NOISE, x.shape))


def shift(img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``shifted``: narrower field of view, brighter display curve, black collimation frame.

    Args:
        img: uint8 ``H x W`` scan.
        rng: unused (the shift is the same for every scan of the site).

    Returns:
        The scan as the other site draws it (uint8, same shape).
    """
    h, w = img.shape
    ch, cw = round(h / ZOOM), round(w / ZOOM)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.asarray(img, dtype=np.uint8)[top : top + ch, left : left + cw])
    x = _unit(np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR))) ** SHIFT_GAMMA
    b = max(1, round(FRAME * h))
    x[:b], x[-b:], x[:, :b], x[:, -b:] = 0.0, 0.0, 0.0, 0.0
    return _uint8(x)


def near_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``duplicates``: one copy of a scan, shifted by up to one pixel, with faint noise.

    Args:
        img: uint8 ``H x W`` scan.
        rng: the copy's generator.

    Returns:
        The copy (uint8, same shape).
    """
    dy, dx = rng.integers(-1, 2, size=2)
    x = np.roll(_unit(img), (int(dy), int(dx)), axis=(0, 1))
    return _uint8(x + rng.normal(0.0, DUPLICATE_NOISE, x.shape))


def out_of_distribution(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ood``: a smooth random field with two to four bright elliptical blobs, the size of ``img``.

    Args:
        img: uint8 ``H x W`` scan (only its shape is used).
        rng: the scan's generator.

    Returns:
        The replacement image (uint8, same shape).
    """
    h, w = img.shape
    x = ndimage.gaussian_filter(rng.normal(size=(h, w)), 0.12 * h)
    x = (x - x.min()) / (np.ptp(x) + 1e-12)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], dtype=float)[:, None, None]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx, ry, rx = rng.uniform(0.15, 0.85, 2).tolist() + rng.uniform(0.05, 0.2, 2).tolist()
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
        x = np.maximum(x, blob * rng.uniform(0.7, 1.0))
    return _uint8(x)


#: The image rewrite of every kind but ``clean``.
_REWRITE = {"degraded": degrade, "shifted": shift, "duplicates": near_copy, "ood": out_of_distribution}


def check_kind(kind: str, where: str = "quality") -> None:
    """Raise ``ValueError`` naming ``where`` when ``kind`` is not one of :data:`QUALITY_KINDS`.

    Args:
        kind: the quality kind.
        where: what to name in the message (setting and institution).
    """
    if kind not in QUALITY_KINDS:
        raise ValueError(f"{where}: unknown quality {kind!r}; known: {list(QUALITY_KINDS)}")


def apply(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The scan ``img`` as an institution of quality ``kind`` holds it.

    Args:
        img: uint8 ``H x W`` scan.
        kind: one of :data:`QUALITY_KINDS`.
        rng: the scan's generator (:func:`scan_rng`).

    Returns:
        The rewritten scan (a copy for ``clean``).
    """
    check_kind(kind)
    img = np.asarray(img, dtype=np.uint8)
    return img.copy() if kind == "clean" else _REWRITE[kind](img, rng)


def has_quality(setting: SettingConfig) -> bool:
    """Whether any institution of ``setting`` has a quality kind other than ``clean``."""
    return any(i.quality != "clean" for i in setting.institutions)


def _duplicate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The first ``ceil(n / copies)`` rows, each repeated in order until there are ``n`` rows again, with
    scan ids ``<id>~<copy>``."""
    n = len(rows)
    distinct = rows.iloc[: -(-n // DUPLICATE_COPIES)]
    out = distinct.loc[distinct.index.repeat(DUPLICATE_COPIES)].iloc[:n].copy()
    copy = out.groupby(level=0).cumcount().to_numpy()
    out["scan_id"] = [f"{s}{COPY_SEPARATOR}{c}" for s, c in zip(out["scan_id"].astype(str), copy)]
    return out.reset_index(drop=True)


def _file_name(k: int, scan_id: str) -> str:
    """``<row>_<scan id with every character but letters, digits, ._~- as _>.png`` (unique by the row)."""
    return f"{k:05d}_{re.sub(r'[^A-Za-z0-9._~-]', '_', scan_id)}.png"


def rewrite_institution(
    rows: pd.DataFrame, kind: str, seed: int, number: int, out_dir: str | os.PathLike
) -> tuple[pd.DataFrame, list[Path]]:
    """One institution's training rows as quality ``kind`` holds them.

    Args:
        rows: the institution's training rows of the partition.
        kind: its quality kind.
        seed: the run's seed.
        number: the institution's position in its setting.
        out_dir: where its rewritten scans go.

    Returns:
        The rows (as many as given; ``path`` re-pointed at the rewritten scans) and the files written.
    """
    check_kind(kind)
    if kind == "clean" or rows.empty:
        return rows, []
    rows = _duplicate_rows(rows) if kind == "duplicates" else rows.reset_index(drop=True)
    paths = []
    for k, (scan_id, src) in enumerate(zip(rows["scan_id"].astype(str), rows["path"].astype(str))):
        pixels = apply(np.asarray(read_grayscale(src)), kind, scan_rng(seed, number, scan_id))
        with store.atomic_path(Path(out_dir) / _file_name(k, scan_id)) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        paths.append(Path(out_dir) / _file_name(k, scan_id))
    return rows.assign(path=[str(p) for p in paths]), paths


def apply_qualities(
    partition: pd.DataFrame, setting: SettingConfig, seed: int, scans_dir: str | os.PathLike
) -> tuple[pd.DataFrame, list[Path]]:
    """The partition with every institution's training scans rewritten as its ``quality`` says.

    Args:
        partition: the partition cut by :func:`ddval.data.splits.make_partition`.
        setting: its setting.
        seed: the run's seed.
        scans_dir: ``<S>/scans``; institution ``i``'s scans go to ``<scans_dir>/<i>``.

    Returns:
        The partition (rows in their order, a ``duplicates`` institution's training rows replaced by the
        repeated ones, columns :data:`QUALITY_COLUMN` and :data:`PARAMS_COLUMN` added) and the files written.
        A setting without quality kinds comes back unchanged, with no file written.
    """
    if not has_quality(setting):
        return partition, []
    for inst in setting.institutions:
        check_kind(inst.quality, f"setting {setting.name!r}, institution {inst.name!r}")
    params = store.param_hash(PARAMETERS)
    parts, written = [], []
    numbers = {inst.name: k for k, inst in enumerate(setting.institutions)}
    kinds = {inst.name: inst.quality for inst in setting.institutions}
    block = (partition[["institution", "split"]] != partition[["institution", "split"]].shift()).any(axis=1)
    for _, rows in partition.groupby(block.cumsum().to_numpy(), sort=True):
        name, split = str(rows["institution"].iloc[0]), str(rows["split"].iloc[0])
        kind = kinds[name] if split == "train" else "clean"
        rows, files = rewrite_institution(rows, kind, seed, numbers[name], Path(scans_dir) / name)
        parts.append(rows.assign(**{QUALITY_COLUMN: kind, PARAMS_COLUMN: params if kind != "clean" else ""}))
        written += files
    return pd.concat(parts, ignore_index=True), written


def quality_examples(index: pd.DataFrame, setting: SettingConfig, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """One scan as every institution of ``setting`` would hold it in training, for a montage.

    Args:
        index: the resized index (``index_resized.parquet``).
        setting: a setting (with quality kinds, for the montage to say something).
        seed: the seed whose generators rewrite the scan.

    Returns:
        ``(institution, kind, image)`` per institution, in config order: the same scan (the first of the
        index in the first institution's first dataset) rewritten with that institution's generator.
    """
    row = index.loc[index["dataset"] == setting.institutions[0].datasets[0]].iloc[0]
    img = np.asarray(read_grayscale(row["path"]))
    out = []
    for number, inst in enumerate(setting.institutions):
        scan_id = f"{row['scan_id']}{COPY_SEPARATOR}0" if inst.quality == "duplicates" else str(row["scan_id"])
        out.append((inst.name, inst.quality, apply(img, inst.quality, scan_rng(seed, number, scan_id))))
    return out
