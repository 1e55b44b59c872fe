"""Synthetic deep features with the paper's shapes, for ``bench_paper_scale.py``.

Not random noise: every scan has a latent state (one of ``CLUSTERS`` shared "appearance" clusters,
weighted differently per institution, plus a within-cluster spread) mapped to ``dim`` features by a
fixed low-rank basis, plus an institution-specific offset (the non-IID domain shift of three
datasets) and per-feature noise. The 8 labels depend on the latent state (each label along its own
latent direction, centred on a prevalence per institution close to the real datasets'), so labels
and neighbourhoods are correlated as with real features, and distances have a realistic spread.

Everything is seeded per block of ``BLOCK`` rows (seed, institution, split, block), so a file is the
same however it is written, and the labels of a split can be drawn without its features.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ddval.config import LABELS
from ddval.valuation.features import SPLIT_KEYS
from ddval.valuation.mapped import write_npz_streaming

GENERATOR_VERSION = 1  # bump when the features a seed gives change
LATENT = 16  # rank of the feature signal
CLUSTERS = 32
BLOCK = 1024  # rows per seeded block
SIGNAL, NOISE, SHIFT = 0.6, 0.8, 0.3  # per-feature scales of signal, noise and institution offset
#: Label prevalences per institution, in ``LABELS`` order (atelectasis, cardiomegaly, consolidation,
#: edema, no_finding, pleural_effusion, pneumonia, pneumothorax), near NIH / CheXpert / MIMIC-CXR's;
#: rare labels raised to >= 3 % so that a 10,000-scan test split holds 300 positives, as the real
#: 22,000-75,000-scan test splits do.
PREVALENCE = {
    "nih": (0.10, 0.03, 0.04, 0.03, 0.54, 0.12, 0.03, 0.05),
    "chexpert": (0.15, 0.12, 0.07, 0.24, 0.09, 0.39, 0.03, 0.09),
    "mimic": (0.20, 0.20, 0.05, 0.12, 0.33, 0.24, 0.07, 0.04),
}


@dataclass(frozen=True)
class FeatureGenerator:
    """Seeded generator of one setting's features (``dim`` float16 features per scan)."""

    dim: int
    seed: int = 0

    @cached_property
    def basis(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0])
        basis = rng.standard_normal((LATENT, self.dim), dtype=np.float32) * (SIGNAL / np.sqrt(LATENT))  # float64
        return basis.astype(np.float32)

    @cached_property
    def centers(self) -> np.ndarray:
        return 2.0 * np.random.default_rng([self.seed, 1]).standard_normal((CLUSTERS, LATENT))

    @cached_property
    def label_directions(self) -> np.ndarray:
        d = np.random.default_rng([self.seed, 2]).standard_normal((len(LABELS), LATENT))
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def offset(self, institution: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3, institution])
        return rng.standard_normal(self.dim, dtype=np.float32) * np.float32(SHIFT)

    def cluster_weights(self, institution: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 4, institution]).dirichlet(np.full(CLUSTERS, 0.5))

    def block(self, institution: int, prevalence, split: int, index: int, rows: int, features: bool = True):
        """Block ``index`` of a split: ``(x float16 (rows, dim) or None, y float32 (rows, 8))``."""
        rng = np.random.default_rng([self.seed, 10 + institution, split, index])
        cluster = rng.choice(CLUSTERS, size=rows, p=self.cluster_weights(institution))
        latent = self.centers[cluster] + 0.5 * rng.standard_normal((rows, LATENT))
        logit = np.log(np.asarray(prevalence) / (1 - np.asarray(prevalence))) + latent @ self.label_directions.T / 2.0
        y = (rng.random((rows, len(LABELS))) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        if not features:
            return None, y
        x = latent.astype(np.float32) @ self.basis
        x += self.offset(institution)
        x += np.float32(NOISE) * rng.standard_normal((rows, self.dim), dtype=np.float32)
        return x.astype(np.float16), y

    def labels(self, institution: int, prevalence, split: int, n: int) -> np.ndarray:
        """The labels of a split of ``n`` scans, without generating its features."""
        blocks = [
            self.block(institution, prevalence, split, b, min(BLOCK, n - b * BLOCK), features=False)[1]
            for b in range(-(-n // BLOCK))
        ]
        return np.concatenate(blocks) if blocks else np.empty((0, len(LABELS)), np.float32)

    def write_institution(self, path: Path, institution: int, name: str, n_train: int, n_test: int) -> Path:
        """One institution's feature file (the valuation stage's format), written block by block."""
        prevalence = PREVALENCE[name]
        with write_npz_streaming(path) as stream:
            for split_no, (split, n) in enumerate((("train", n_train), ("test", n_test))):
                ys = []
                with stream.array(f"{split}_x", (n, self.dim), np.float16) as rows:
                    for b in range(-(-n // BLOCK)):
                        x, y = self.block(institution, prevalence, split_no, b, min(BLOCK, n - b * BLOCK))
                        rows.write(x)
                        ys.append(y)
                ids = np.array([f"{name}-{split}-{i}" for i in range(n)])
                meta = {
                    "y": np.concatenate(ys),
                    "ids": ids,
                    "patients": ids,
                    "sex": np.where(np.arange(n) % 2 == 0, "F", "M"),
                    "age": np.full(n, np.nan),
                }
                for key in SPLIT_KEYS[1:]:
                    stream.add(f"{split}_{key}", meta[key])
        return path
