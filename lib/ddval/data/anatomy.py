"""The anatomy of the synthetic chest radiographs: one real radiograph in a canonical frame, deformed per patient.

The anatomical base is the one real PA chest radiograph that ships with ``pydicom-data``
(``data_store/data/RG1_UNCR.dcm``: CR, MONOCHROME1, 15 bit, NEMA WG04 sample set, MIT). It is
inverted (MONOCHROME1 stores dense tissue dark), windowed, squashed to a square *canonical* frame
and kept in memory. Every synthetic scan is rendered on its own output grid by mapping each output
pixel back into the canonical frame through a per-patient geometry (thorax scale, rotation, shift,
a smooth elastic field) and sampling the base there (:mod:`ddval.data.render` draws the whole scan,
:mod:`ddval.data.findings` the findings, in the same canonical coordinates).

Conventions: ``u`` runs left to right across the image, ``v`` top to bottom, both in ``[0, 1]``.
Radiological orientation: the patient's right lung is on the image's left (``u < 0.5``). Pixel
values are *density* (0 = air/black, 1 = bone/white), as on a displayed radiograph.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage


#: Side of the canonical frame in which the base radiograph and the lung masks are stored.
CANONICAL = 256

# Landmarks of the base radiograph in canonical coordinates (read off the image on a 0.1 grid).
HEART_CENTER = (0.565, 0.655)
HEART_HALF_WIDTH = 0.16  # normal silhouette of the base image: u 0.40 ... 0.72
HILA = ((0.33, 0.44), (0.65, 0.44))
LUNG_BOTTOM = (0.72, 0.78)  # diaphragm level under the right (image left) and left lung
# Polygons of the right (image left) and left lung fields.
_LUNG_POLYGONS = (
    [
        (0.36, 0.09),
        (0.26, 0.11),
        (0.17, 0.20),
        (0.12, 0.38),
        (0.10, 0.58),
        (0.085, 0.79),
        (0.18, 0.745),
        (0.28, 0.715),
        (0.37, 0.685),
        (0.41, 0.56),
        (0.41, 0.35),
        (0.40, 0.14),
    ],
    [
        (0.62, 0.09),
        (0.73, 0.11),
        (0.83, 0.21),
        (0.88, 0.40),
        (0.90, 0.60),
        (0.915, 0.83),
        (0.82, 0.80),
        (0.75, 0.775),
        (0.71, 0.72),
        (0.72, 0.63),
        (0.645, 0.52),
        (0.60, 0.36),
        (0.595, 0.14),
    ],
)
# Ellipses that follow each lung's lateral/apical wall (centre u, centre v, radius u, radius v):
# the pleural line of a pneumothorax is this ellipse shrunk by the collapse depth.
CHEST_WALL = ((0.43, 0.79, 0.345, 0.70), (0.57, 0.83, 0.345, 0.74))
# Lung extents used to place findings: (u_min, u_max, v_min, v_max) per side.
LUNG_BOX = ((0.13, 0.39, 0.14, 0.70), (0.61, 0.88, 0.14, 0.76))


def base_radiograph_path() -> Path:
    """Path of ``RG1_UNCR.dcm`` inside the installed ``pydicom-data`` package."""
    try:
        import data_store
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ImportError(
            "the synthetic cohort uses the real radiograph shipped with pydicom-data (pip install pydicom-data==1.0.0)"
        ) from exc
    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.exists():  # pragma: no cover - broken install
        raise FileNotFoundError(f"{path}: pydicom-data is installed but RG1_UNCR.dcm is missing")
    return path


@functools.lru_cache(maxsize=1)
def canonical_layers() -> np.ndarray:
    """``(4, C, C)`` float32: base radiograph, right-lung mask, left-lung mask, lung texture.

    Computed once per process (about 0.5 s): read the DICOM, invert MONOCHROME1, window to the
    1st-99.5th percentile, darken the lungs with a gamma of 1.6 (the stored CR image is flat),
    squash to ``C x C`` with area averaging, and rasterise the lung polygons.
    """
    import pydicom
    from PIL import Image, ImageDraw

    ds = pydicom.dcmread(base_radiograph_path())
    raw = ds.pixel_array.astype(np.float32)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        raw = raw.max() - raw
    lo, hi = np.percentile(raw, [1.0, 99.5])
    img = np.clip((raw - lo) / (hi - lo), 0.0, 1.0) ** 1.6
    base = np.asarray(
        Image.fromarray(img.astype(np.float32), mode="F").resize((CANONICAL, CANONICAL), Image.Resampling.BOX),
        dtype=np.float32,
    )
    masks = []
    for poly in _LUNG_POLYGONS:
        canvas = Image.new("F", (CANONICAL, CANONICAL), 0.0)
        ImageDraw.Draw(canvas).polygon([(u * CANONICAL, v * CANONICAL) for u, v in poly], fill=1.0)
        masks.append(ndimage.gaussian_filter(np.asarray(canvas, dtype=np.float32), 2.0))
    # Lung markings (vessels) of the base: its high-pass detail; removed inside a pneumothorax.
    texture = base - ndimage.gaussian_filter(base, 4.0)
    return np.stack([base, masks[0], masks[1], texture]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def fluff_texture() -> np.ndarray:
    """A fixed, smooth random field (canonical frame) that makes pneumonia patchy."""
    rng = np.random.default_rng(20230502)
    field_ = ndimage.gaussian_filter(rng.standard_normal((CANONICAL, CANONICAL)).astype(np.float32), 3.0)
    return (field_ - field_.min()) / (field_.max() - field_.min())


# --------------------------------------------------------------------------------------------
# Geometry: output pixel -> canonical coordinates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Per-patient anatomy as a mapping of the base radiograph (canonical -> image).

    ``scale`` stretches the thorax about the image centre, ``angle`` (degrees) rotates it, ``shift``
    moves it, and ``warp`` holds (amplitude, kx, ky, phase) of smooth sinusoidal displacements.
    """

    scale: tuple[float, float] = (1.0, 1.0)
    angle: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    warp: tuple[tuple[float, float, float, float], ...] = ()


def canonical_grid(geometry: Geometry, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical ``(u, v)`` of every pixel centre of a ``height x width`` output image."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (x + 0.5) / width - 0.5 - geometry.shift[0]
    y = (y + 0.5) / height - 0.5 - geometry.shift[1]
    a = math.radians(geometry.angle)
    c, s = math.cos(a), math.sin(a)
    u = (c * x + s * y) / geometry.scale[0] + 0.5
    v = (-s * x + c * y) / geometry.scale[1] + 0.5
    for amp, kx, ky, phase in geometry.warp:
        arg = 2 * math.pi * (kx * u + ky * v) + phase
        u = u + amp * np.sin(arg)
        v = v + amp * np.cos(arg + 0.7)
    return u, v


def sample_layers(layers: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of every canonical layer at ``(u, v)`` (edges clamp): shape ``(K, *u.shape)``."""
    c = layers.shape[-1]
    x = np.clip(u * c - 0.5, 0, c - 1.001)
    y = np.clip(v * c - 0.5, 0, c - 1.001)
    x0 = x.astype(np.int32)
    y0 = y.astype(np.int32)
    fx = x - x0
    fy = y - y0
    flat = layers.reshape(layers.shape[0], -1)
    i00 = y0 * c + x0
    out = (
        flat[:, i00] * ((1 - fx) * (1 - fy))
        + flat[:, i00 + 1] * (fx * (1 - fy))
        + flat[:, i00 + c] * ((1 - fx) * fy)
        + flat[:, i00 + c + 1] * (fx * fy)
    )
    return out
