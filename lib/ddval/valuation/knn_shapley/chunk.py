"""What a backend receives for one chunk of test points: the call's state and the chunk's rows.

This module sits below :mod:`.engine` and the backends (:mod:`.host`, :mod:`.torch_path`,
:mod:`.guard`): the engine builds :class:`_ChunkRows` and hands it to a backend, and the backends
read the call's state through the :class:`EngineState` protocol, so no backend imports the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class EngineState(Protocol):
    """The part of one engine call (:class:`.engine._EngineCall`) that the backends read."""

    X: Any  # (N, D) train features: the guard recomputes near-tied distances exactly from them
    ytr: np.ndarray  # (L, N) train label codes
    yte: np.ndarray  # (M, L) test label codes
    mask: np.ndarray | None  # (M, L) which test points count for which label, or None (all)
    threads: int  # host worker threads
    group: int  # test rows per host worker group
    norms: np.ndarray  # (N,) float64 squared norms of the train rows
    weights: np.ndarray  # (N,) int64 recursion weights in units of 2**-62
    low_bits: int  # low bits of the packed sort key that hold the train index

    @property
    def n(self) -> int:
        """Number of training points N."""

    @property
    def n_labels(self) -> int:
        """Number of labels L."""


@dataclass
class _ChunkRows:
    """Per-chunk row data shared by both backends."""

    ctx: EngineState
    c0: int
    c1: int
    tests: np.ndarray  # (c, D) float64
    sq_test: np.ndarray  # (c,) squared norms of the test rows
    thr1: np.ndarray  # (c,) level-1 near-tie threshold (packed-key order)
    thr2: np.ndarray  # (c,) level-2 threshold (float64 order)

    def labels(self) -> np.ndarray:
        """Label codes (c, L) of the chunk's test rows."""
        return self.ctx.yte[self.c0 : self.c1]

    def active(self) -> np.ndarray | None:
        """Which labels count for each of the chunk's test rows (c, L), or None (all)."""
        return None if self.ctx.mask is None else self.ctx.mask[self.c0 : self.c1]
