"""Synthetic chest radiographs: one real radiograph, deformed per patient, with rendered findings.

The anatomical base is the one real PA chest radiograph that ships with ``pydicom-data``
(``data_store/data/RG1_UNCR.dcm``: CR, MONOCHROME1, 15 bit, NEMA WG04 sample set, MIT). It is
inverted (MONOCHROME1 stores dense tissue dark), windowed, squashed to a square *canonical* frame
and kept in memory. Every synthetic scan is rendered on its own output grid by mapping each output
pixel back into the canonical frame through a per-patient geometry (thorax scale, rotation, shift,
a smooth elastic field) and sampling the base there; findings are analytic shapes placed in
canonical coordinates and evaluated on the same mapped grid, so they move with the anatomy and no
image is interpolated twice.

Conventions: ``u`` runs left to right across the image, ``v`` top to bottom, both in ``[0, 1]``.
Radiological orientation: the patient's right lung is on the image's left (``u < 0.5``). Pixel
values are *density* (0 = air/black, 1 = bone/white), as on a displayed radiograph.

Findings (what a learner can see; sizes are in canonical units):

* cardiomegaly: a cardiac silhouette wider than half the thorax (cardiothoracic ratio > 0.5);
* pleural effusion: homogeneous opacity of the lower zone with a meniscus rising laterally,
  blunting the costophrenic angle (one or both sides);
* consolidation: dense, homogeneous, lobar opacity;
* pneumonia: multifocal, patchy, ill-defined ("fluffy") opacities, mostly mid/lower zones;
* atelectasis: plate-like linear opacities in the mid/lower zones;
* edema: bilateral perihilar ("bat-wing") haze with Kerley B lines at the bases;
* pneumothorax: a visceral pleural line parallel to the chest wall with a lucent, featureless
  (no lung markings) rim lateral/apical to it;
* lung lesion: a round nodule; support devices: a bright tube and lead wires.

Acquisition (per site and scan): gamma, contrast, brightness offset, blur, noise, a burned-in
side marker, AP magnification of the heart. See :mod:`ddval.data.synthetic` for how findings,
patients and sites are sampled.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
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
    [(0.36, 0.09), (0.26, 0.11), (0.17, 0.20), (0.12, 0.38), (0.10, 0.58), (0.085, 0.79), (0.18, 0.745),
     (0.28, 0.715), (0.37, 0.685), (0.41, 0.56), (0.41, 0.35), (0.40, 0.14)],
    [(0.62, 0.09), (0.73, 0.11), (0.83, 0.21), (0.88, 0.40), (0.90, 0.60), (0.915, 0.83), (0.82, 0.80),
     (0.75, 0.775), (0.71, 0.72), (0.72, 0.63), (0.645, 0.52), (0.60, 0.36), (0.595, 0.14)],
)
# Ellipses that follow each lung's lateral/apical wall (centre u, centre v, radius u, radius v):
# the pleural line of a pneumothorax is this ellipse shrunk by the collapse depth.
_CHEST_WALL = ((0.43, 0.79, 0.345, 0.70), (0.57, 0.83, 0.345, 0.74))
# Lung extents used to place findings: (u_min, u_max, v_min, v_max) per side.
LUNG_BOX = ((0.13, 0.39, 0.14, 0.70), (0.61, 0.88, 0.14, 0.76))


def base_radiograph_path() -> Path:
    """Path of ``RG1_UNCR.dcm`` inside the installed ``pydicom-data`` package."""
    try:
        import data_store
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ImportError(
            "the synthetic cohort uses the real radiograph shipped with pydicom-data "
            "(pip install pydicom-data==1.0.0)"
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
def _fluff_texture() -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Shapes (all evaluated on canonical coordinate arrays)
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def ellipse(u, v, cu, cv, ru, rv, edge=0.04):
    """Soft-edged filled ellipse (1 inside, 0 outside; ``edge`` is the relative edge width)."""
    r = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return _sigmoid((1.0 - r) / edge)


def blob(u, v, cu, cv, su, sv):
    """Gaussian blob of peak 1."""
    return np.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def band(u, v, p0, p1, width):
    """Soft line segment from ``p0`` to ``p1`` of half-width ``width`` (peak 1 on the segment)."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv + 1e-12), 0.0, 1.0)
    d2 = (u - p0[0] - t * du) ** 2 + (v - p0[1] - t * dv) ** 2
    return np.exp(-d2 / (width * width))


def _over(density: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Add an opacity: dense material over what is there (stays within [0, 1])."""
    return density + (1.0 - density) * np.clip(alpha, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One rendered finding: its kind, severity in (0, 1], side (0 right/image-left, 1 left, 2 both)
    and a seed for its shape details (positions, number of foci)."""

    kind: str
    severity: float
    side: int
    seed: int


@dataclass(frozen=True)
class Acquisition:
    """How one image is exposed and processed (site and scan specific)."""

    gamma: float = 1.0
    contrast: float = 1.0
    offset: float = 0.0
    blur: float = 0.0  # Gaussian sigma in output pixels
    noise: float = 0.0  # Gaussian sigma in density units
    marker: tuple[float, float] | None = None  # (u, v) of a burned-in side marker
    ap: bool = False  # AP projection: the heart looks larger (magnification)


@dataclass(frozen=True)
class ScanSpec:
    """Everything that determines the pixels of one synthetic scan."""

    geometry: Geometry
    heart_half_width: float  # patient's cardiac silhouette (canonical half-width)
    female: bool
    findings: tuple[Finding, ...] = ()
    acquisition: Acquisition = field(default_factory=Acquisition)
    seed: int = 0  # noise


def _sides(side: int) -> tuple[int, ...]:
    return (0, 1) if side == 2 else (side,)


def _lung_point(rng, side, zone=(0.0, 1.0)):
    """A random point inside the box of lung ``side``, in the vertical fraction ``zone``."""
    u0, u1, v0, v1 = LUNG_BOX[side]
    v = v0 + (v1 - v0) * rng.uniform(*zone)
    return rng.uniform(u0 + 0.03, u1 - 0.03), v


def _effusion(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    for side in _sides(f.side):
        u0, u1, _, _ = LUNG_BOX[side]
        height = 0.05 + 0.17 * f.severity * rng.uniform(0.8, 1.2)
        lateral = (u1 - u) / (u1 - u0) if side == 1 else (u - u0) / (u1 - u0)
        lateral = 1.0 - np.clip(lateral, 0.0, 1.0)  # 1 at the chest wall
        level = LUNG_BOTTOM[side] - height - 0.07 * f.severity * lateral**2  # meniscus
        alpha = (0.55 + 0.35 * f.severity) * _sigmoid((v - level) / 0.012) * np.clip(lungs[side] * 1.4, 0, 1)
        d = _over(d, alpha)
    return d


def _consolidation(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    for side in _sides(f.side):
        cu, cv = _lung_point(rng, side, rng.choice([(0.05, 0.35), (0.35, 0.65), (0.6, 0.95)]))
        ru, rv = rng.uniform(0.08, 0.11) * (0.8 + 0.4 * f.severity), rng.uniform(0.09, 0.13)
        region = ellipse(u, v, cu, cv, ru, rv, edge=0.18) * np.clip(lungs[side] * 1.3, 0, 1)
        d = _over(d, (0.55 + 0.4 * f.severity) * region)
    return d


def _pneumonia(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    fluff = sample_layers(_fluff_texture()[None], u + rng.uniform(-0.3, 0.3), v + rng.uniform(-0.3, 0.3))[0]
    for side in _sides(f.side):
        alpha = np.zeros_like(u)
        for _ in range(int(rng.integers(3, 8))):
            cu, cv = _lung_point(rng, side, (0.3, 1.0))
            s = rng.uniform(0.03, 0.05)
            alpha = np.maximum(alpha, blob(u, v, cu, cv, s, s * rng.uniform(0.8, 1.4)))
        patchy = alpha * (0.45 + 0.9 * fluff)
        d = _over(d, (0.45 + 0.4 * f.severity) * np.clip(patchy, 0, 1) * np.clip(lungs[side] * 1.3, 0, 1))
    return d


def _atelectasis(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    for side in _sides(f.side):
        for _ in range(int(rng.integers(1, 3))):
            cu, cv = _lung_point(rng, side, (0.45, 0.92))
            half = rng.uniform(0.06, 0.10)
            ang = math.radians(rng.uniform(-20, 20))
            p0 = (cu - half * math.cos(ang), cv - half * math.sin(ang))
            p1 = (cu + half * math.cos(ang), cv + half * math.sin(ang))
            width = 0.014 + 0.010 * f.severity
            d = _over(d, (0.5 + 0.35 * f.severity) * band(u, v, p0, p1, width) * np.clip(lungs[side] * 1.5, 0, 1))
        # volume loss: a subsegmental wedge of density at the base
        u0, u1, _, _ = LUNG_BOX[side]
        wedge = blob(u, v, (u0 + u1) / 2, LUNG_BOTTOM[side] - 0.03, 0.09, 0.035)
        d = _over(d, 0.5 * f.severity * wedge * np.clip(lungs[side] * 1.5, 0, 1))
    return d


def _edema(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    both = np.clip((lungs[0] + lungs[1]) * 1.3, 0, 1)
    haze = sum(blob(u, v, hu, hv + 0.04, 0.085, 0.13) for hu, hv in HILA)
    d = _over(d, (0.35 + 0.4 * f.severity) * np.clip(haze, 0, 1) * both)
    # Kerley B lines: short horizontal lines reaching the lateral pleura at the bases
    for side in (0, 1):
        u0, u1, _, v1 = LUNG_BOX[side]
        edge_u = u0 if side == 0 else u1
        direction = 1.0 if side == 0 else -1.0
        for k in range(4):
            vv = v1 - 0.03 - 0.035 * k + rng.uniform(-0.008, 0.008)
            d = _over(d, 0.5 * f.severity * band(u, v, (edge_u, vv), (edge_u + direction * 0.05, vv), 0.006) * both)
    return d


def _pneumothorax(d, u, v, lungs, f: Finding, ap: bool, texture=None):
    for side in _sides(f.side):
        cu, cv, ru, rv = _CHEST_WALL[side]
        hu, hv = HILA[side]
        # The collapsed lung is the chest-wall ellipse shrunk towards the hilum: the pleural gap is
        # widest at the apex and the lateral wall and vanishes towards the hilum and the base.
        keep = 1.0 - (0.18 + 0.22 * f.severity)
        pu, pv = hu + (u - hu) / keep, hv + (v - hv) / keep
        r = np.sqrt(((pu - cu) / ru) ** 2 + ((pv - cv) / rv) ** 2)
        upper = _sigmoid((0.62 - v) / 0.04)  # upright patient: air collects apically
        inside = np.clip(lungs[side] * 1.2, 0, 1) * upper
        rim = _sigmoid((r - 1.0) / 0.015) * inside
        if texture is not None:
            d = d - rim * texture  # no lung markings beyond the pleural line
        d = d * (1.0 - 0.6 * rim)  # air: more lucent than aerated lung
        line = np.exp(-(((r - 1.0) / 0.012) ** 2)) * inside
        d = _over(d, 0.5 * line)
    return d


def _lung_lesion(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    side = f.side if f.side < 2 else int(rng.integers(0, 2))
    cu, cv = _lung_point(rng, side)
    s = 0.014 + 0.014 * f.severity
    return _over(d, 0.75 * ellipse(u, v, cu, cv, s, s, edge=0.25))


def _support_devices(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    tip = (0.5 + rng.uniform(-0.02, 0.02), rng.uniform(0.22, 0.32))
    d = _over(d, 0.85 * band(u, v, (0.49, -0.05), tip, 0.007))  # endotracheal tube
    start = (rng.uniform(0.12, 0.2), 0.12)
    d = _over(d, 0.8 * band(u, v, start, (0.47, rng.uniform(0.3, 0.38)), 0.006))  # central line
    for _ in range(3):  # ECG lead buttons
        cu, cv = rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.9)
        d = _over(d, 0.9 * ellipse(u, v, cu, cv, 0.016, 0.016, edge=0.2))
    return d


_RENDERERS = {
    "pleural_effusion": _effusion,
    "consolidation": _consolidation,
    "pneumonia": _pneumonia,
    "atelectasis": _atelectasis,
    "edema": _edema,
    "lung_lesion": _lung_lesion,
    "support_devices": _support_devices,
}
#: Kinds of :class:`Finding` that change pixels. (Cardiomegaly is not a Finding: it is the patient's
#: cardiac silhouette, ``ScanSpec.heart_half_width``.)
RENDERED = tuple(_RENDERERS) + ("pneumothorax",)


# --------------------------------------------------------------------------------------------
# The whole scan
# --------------------------------------------------------------------------------------------


def render(spec: ScanSpec, height: int, width: int) -> np.ndarray:
    """Render one scan as an 8-bit grayscale ``(height, width)`` array."""
    u, v = canonical_grid(spec.geometry, height, width)
    base, lung_r, lung_l, texture = sample_layers(canonical_layers(), u, v)
    lungs = (lung_r, lung_l)
    d = base.copy()
    if spec.female:  # breast shadows over the lower zones
        for cu in (0.22, 0.78):
            d = _over(d, 0.12 * ellipse(u, v, cu, 0.80, 0.17, 0.14, edge=0.3))
    heart = spec.heart_half_width * (1.1 if spec.acquisition.ap else 1.0)
    hu, hv = HEART_CENTER
    # The silhouette is drawn for every scan (normal ones match the base heart); its width is what
    # cardiomegaly changes. The lower edge sits on the diaphragm, so it grows up and sideways.
    d = _over(d, 0.6 * ellipse(u, v, hu + 0.15 * (heart - HEART_HALF_WIDTH), hv - 0.3 * (heart - HEART_HALF_WIDTH),
                                 heart, 0.13 + 0.35 * (heart - HEART_HALF_WIDTH), edge=0.10))
    for f in spec.findings:
        if f.kind == "pneumothorax":
            d = _pneumothorax(d, u, v, lungs, f, spec.acquisition.ap, texture=texture)
        elif f.kind in _RENDERERS:
            d = _RENDERERS[f.kind](d, u, v, lungs, f, spec.acquisition.ap)
    return _acquire(d, spec.acquisition, height, width, spec.seed)


def _acquire(d: np.ndarray, acq: Acquisition, height: int, width: int, seed: int) -> np.ndarray:
    """Detector and post-processing of a site: marker, gamma, contrast, offset, blur, noise, 8 bit."""
    if acq.marker is not None:
        mu, mv = acq.marker
        y, x = np.mgrid[0:height, 0:width]
        du, dv = (x + 0.5) / width - mu, (y + 0.5) / height - mv
        stem = (np.abs(du + 0.015) < 0.01) & (np.abs(dv) < 0.035)  # an "L" side marker
        foot = (np.abs(du) < 0.025) & (np.abs(dv - 0.027) < 0.008)
        d = np.where(stem | foot, 0.97, d)
    d = np.clip(d, 0.0, 1.0) ** acq.gamma
    d = (d - 0.5) * acq.contrast + 0.5 + acq.offset
    if acq.blur > 0:
        d = ndimage.gaussian_filter(d, acq.blur)
    if acq.noise > 0:
        d = d + np.random.default_rng(seed).normal(0.0, acq.noise, d.shape)
    return np.clip(np.rint(d * 255.0), 0, 255).astype(np.uint8)
