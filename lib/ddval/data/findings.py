"""Findings of the synthetic chest radiographs: analytic shapes in canonical coordinates.

Each finding is evaluated on the scan's mapped grid (:func:`ddval.data.anatomy.canonical_grid`), so it
moves with the anatomy and no image is interpolated twice. What a learner can see (sizes in canonical units):

* cardiomegaly: a cardiac silhouette wider than half the thorax (cardiothoracic ratio > 0.5; drawn by
  :func:`ddval.data.render.render` from the patient's silhouette, not a :class:`Finding`);
* pleural effusion: homogeneous opacity of the lower zone with a meniscus rising laterally,
  blunting the costophrenic angle (one or both sides);
* consolidation: dense, homogeneous, lobar opacity;
* pneumonia: multifocal, patchy, ill-defined ("fluffy") opacities, mostly mid/lower zones;
* atelectasis: plate-like linear opacities in the mid/lower zones;
* edema: bilateral perihilar ("bat-wing") haze with Kerley B lines at the bases;
* pneumothorax: a visceral pleural line parallel to the chest wall with a lucent, featureless
  (no lung markings) rim lateral/apical to it;
* lung lesion: a round nodule; support devices: a bright tube and lead wires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ddval.data.anatomy import CHEST_WALL, HILA, LUNG_BOTTOM, LUNG_BOX, fluff_texture, sample_layers

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


def over(density: np.ndarray, alpha: np.ndarray) -> np.ndarray:
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
        d = over(d, alpha)
    return d


def _consolidation(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    for side in _sides(f.side):
        cu, cv = _lung_point(rng, side, rng.choice([(0.05, 0.35), (0.35, 0.65), (0.6, 0.95)]))
        ru, rv = rng.uniform(0.08, 0.11) * (0.8 + 0.4 * f.severity), rng.uniform(0.09, 0.13)
        region = ellipse(u, v, cu, cv, ru, rv, edge=0.18) * np.clip(lungs[side] * 1.3, 0, 1)
        d = over(d, (0.55 + 0.4 * f.severity) * region)
    return d


def _pneumonia(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    fluff = sample_layers(fluff_texture()[None], u + rng.uniform(-0.3, 0.3), v + rng.uniform(-0.3, 0.3))[0]
    for side in _sides(f.side):
        alpha = np.zeros_like(u)
        for _ in range(int(rng.integers(3, 8))):
            cu, cv = _lung_point(rng, side, (0.3, 1.0))
            s = rng.uniform(0.03, 0.05)
            alpha = np.maximum(alpha, blob(u, v, cu, cv, s, s * rng.uniform(0.8, 1.4)))
        patchy = alpha * (0.45 + 0.9 * fluff)
        d = over(d, (0.45 + 0.4 * f.severity) * np.clip(patchy, 0, 1) * np.clip(lungs[side] * 1.3, 0, 1))
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
            d = over(d, (0.5 + 0.35 * f.severity) * band(u, v, p0, p1, width) * np.clip(lungs[side] * 1.5, 0, 1))
        # volume loss: a subsegmental wedge of density at the base
        u0, u1, _, _ = LUNG_BOX[side]
        wedge = blob(u, v, (u0 + u1) / 2, LUNG_BOTTOM[side] - 0.03, 0.09, 0.035)
        d = over(d, 0.5 * f.severity * wedge * np.clip(lungs[side] * 1.5, 0, 1))
    return d


def _edema(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    both = np.clip((lungs[0] + lungs[1]) * 1.3, 0, 1)
    haze = sum(blob(u, v, hu, hv + 0.04, 0.085, 0.13) for hu, hv in HILA)
    d = over(d, (0.35 + 0.4 * f.severity) * np.clip(haze, 0, 1) * both)
    # Kerley B lines: short horizontal lines reaching the lateral pleura at the bases
    for side in (0, 1):
        u0, u1, _, v1 = LUNG_BOX[side]
        edge_u = u0 if side == 0 else u1
        direction = 1.0 if side == 0 else -1.0
        for k in range(4):
            vv = v1 - 0.03 - 0.035 * k + rng.uniform(-0.008, 0.008)
            d = over(d, 0.5 * f.severity * band(u, v, (edge_u, vv), (edge_u + direction * 0.05, vv), 0.006) * both)
    return d


def pneumothorax(d, u, v, lungs, f: Finding, ap: bool, texture=None):
    for side in _sides(f.side):
        cu, cv, ru, rv = CHEST_WALL[side]
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
        d = over(d, 0.5 * line)
    return d


def _lung_lesion(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    side = f.side if f.side < 2 else int(rng.integers(0, 2))
    cu, cv = _lung_point(rng, side)
    s = 0.014 + 0.014 * f.severity
    return over(d, 0.75 * ellipse(u, v, cu, cv, s, s, edge=0.25))


def _support_devices(d, u, v, lungs, f: Finding, ap: bool):
    rng = np.random.default_rng(f.seed)
    tip = (0.5 + rng.uniform(-0.02, 0.02), rng.uniform(0.22, 0.32))
    d = over(d, 0.85 * band(u, v, (0.49, -0.05), tip, 0.007))  # endotracheal tube
    start = (rng.uniform(0.12, 0.2), 0.12)
    d = over(d, 0.8 * band(u, v, start, (0.47, rng.uniform(0.3, 0.38)), 0.006))  # central line
    for _ in range(3):  # ECG lead buttons
        cu, cv = rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.9)
        d = over(d, 0.9 * ellipse(u, v, cu, cv, 0.016, 0.016, edge=0.2))
    return d


RENDERERS = {
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
RENDERED = tuple(RENDERERS) + ("pneumothorax",)
