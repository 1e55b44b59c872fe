"""Synthetic chest radiographs: the whole scan, from its specification to 8-bit pixels.

A :class:`ScanSpec` fixes everything about one scan: the patient's geometry and cardiac silhouette
(:mod:`ddval.data.anatomy`), its findings (:mod:`ddval.data.findings`) and its acquisition. Acquisition
(per site and scan): gamma, contrast, brightness offset, blur, noise, a burned-in side marker, AP
magnification of the heart. See :mod:`ddval.data.sampling` for how findings, patients and sites are sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ddval.data.anatomy import HEART_CENTER, HEART_HALF_WIDTH, Geometry, canonical_grid, canonical_layers, sample_layers
from ddval.data.findings import RENDERERS, Finding, ellipse, over, pneumothorax


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
            d = over(d, 0.12 * ellipse(u, v, cu, 0.80, 0.17, 0.14, edge=0.3))
    heart = spec.heart_half_width * (1.1 if spec.acquisition.ap else 1.0)
    hu, hv = HEART_CENTER
    # The silhouette is drawn for every scan (normal ones match the base heart); its width is what
    # cardiomegaly changes. The lower edge sits on the diaphragm, so it grows up and sideways.
    d = over(
        d,
        0.6
        * ellipse(
            u,
            v,
            hu + 0.15 * (heart - HEART_HALF_WIDTH),
            hv - 0.3 * (heart - HEART_HALF_WIDTH),
            heart,
            0.13 + 0.35 * (heart - HEART_HALF_WIDTH),
            edge=0.10,
        ),
    )
    for f in spec.findings:
        if f.kind == "pneumothorax":
            d = pneumothorax(d, u, v, lungs, f, spec.acquisition.ap, texture=texture)
        elif f.kind in RENDERERS:
            d = RENDERERS[f.kind](d, u, v, lungs, f, spec.acquisition.ap)
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
