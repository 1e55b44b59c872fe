"""Input checks of the KNN-Shapley engine and conversion of feature rows to float64.

Errors name the argument (and the row or label) and what was expected. Features may be NumPy arrays,
memory maps (read block by block, never whole), torch tensors or any array-like with ``shape``,
``dtype``, ``reshape`` and row slicing.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def _as_features(x: Any, name: str):
    """A 2-D array-like of features, never copied whole: arrays, memory maps, and lazy row views
    (anything with ``shape``, ``dtype`` and row indexing, e.g. :mod:`ddval.valuation.mapped`) are read
    block by block later."""
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")):
        x = np.asarray(x)
    if len(x.shape) < 2:
        raise ValueError(f"{name} must have shape (n_points, n_features, ...), got shape {tuple(x.shape)}")
    kind = np.dtype(x.dtype).kind
    if kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers (float16/32/64 or integers), got dtype {x.dtype}")
    if len(x.shape) > 2:
        if not hasattr(x, "reshape"):
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: a lazy array of features must be 2-D (rows x features)"
            )
        x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(x.shape)})")
    return x


def _label_codes(train_y: Any, test_y: Any, n: int, m: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Labels as small integer codes: train (L, N), test (M, L); equal codes <=> equal labels."""
    ty = _as_numpy(train_y)
    sy = _as_numpy(test_y)
    if ty.ndim not in (1, 2):
        raise ValueError(f"train_y must have shape (N,) or (N, L), got {ty.shape}")
    if sy.ndim != ty.ndim:
        raise ValueError(
            f"train_y has shape {ty.shape} but test_y has shape {sy.shape}: both (N,)/(M,) or (N, L)/(M, L)"
        )
    if ty.shape[0] != n:
        raise ValueError(f"train_y has {ty.shape[0]} rows but train_x has {n}")
    if sy.shape[0] != m:
        raise ValueError(f"test_y has {sy.shape[0]} rows but test_x has {m}")
    multilabel = ty.ndim == 2
    ty = ty.reshape(n, ty.shape[1] if multilabel else 1)
    sy = sy.reshape(m, sy.shape[1] if multilabel else 1)
    if ty.shape[1] != sy.shape[1]:
        raise ValueError(f"train_y has {ty.shape[1]} labels per row but test_y has {sy.shape[1]}")
    if ty.shape[1] == 0:
        raise ValueError("train_y/test_y have no label columns")
    for name, arr in (("train_y", ty), ("test_y", sy)):
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold integer-valued labels, got dtype {arr.dtype}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
            if bad.any():
                row, col = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(
                    f"{name} row {row}, label {col}: {arr[row, col].item()!r} is not an integer-valued label"
                )
    n_labels = ty.shape[1]
    train_codes = np.empty((n_labels, n), np.int32)
    test_codes = np.empty((m, n_labels), np.int32)
    for col in range(n_labels):
        both = np.concatenate([ty[:, col], sy[:, col]])
        _, inverse = np.unique(both, return_inverse=True)
        train_codes[col] = inverse[:n]
        test_codes[:, col] = inverse[n:]
    small = np.int8 if max(int(train_codes.max(initial=0)), int(test_codes.max(initial=0))) < 127 else np.int32
    return np.ascontiguousarray(train_codes.astype(small)), np.ascontiguousarray(test_codes.astype(small)), multilabel


def _as_mask(test_mask: Any, m: int, n_labels: int) -> np.ndarray | None:
    if test_mask is None:
        return None
    mask = _as_numpy(test_mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"test_mask must be boolean, got dtype {mask.dtype}")
    mask = mask.reshape(m, 1) if mask.ndim == 1 else mask
    if mask.shape != (m, n_labels):
        raise ValueError(f"test_mask must have shape ({m}, {n_labels}) (test points x labels), got {mask.shape}")
    return np.ascontiguousarray(mask)


def _as_numpy(a: Any) -> np.ndarray:
    if _is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _resolve_slice(test_slice: slice | tuple[int, int] | None, m: int) -> tuple[int, int]:
    if test_slice is None:
        return 0, m
    if isinstance(test_slice, tuple):
        test_slice = slice(*test_slice)
    if not isinstance(test_slice, slice):
        raise ValueError(f"test_slice must be a slice or (start, stop), got {test_slice!r}")
    start, stop, step = test_slice.indices(m)
    if step != 1:
        raise ValueError(f"test_slice must be contiguous (step 1), got step {step}")
    return start, max(start, stop)


def _rows_f64(x, r0: int, r1: int, name: str, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows r0:r1 as float64 (in ``out[:r1 - r0]`` when given) and their squared norms; a clear
    error for non-finite or too-large values."""
    block = _f64_rows(x, r0, r1, out)
    sq = np.einsum("ij,ij->i", block, block)
    bad = ~(sq < 1e200)  # catches NaN, inf and values whose squares would overflow differences
    if bad.any():
        row = r0 + int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} row {row}: features must be finite with squared norm < 1e200")
    return block, sq


def _f64_rows(x, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows r0:r1 as a float64, C-contiguous, writable array (torch refuses read-only memory maps).

    With ``out`` the rows are converted into ``out[:r1 - r0]``: a buffer reused block after block
    costs no fresh pages (a new 80 MB array per train block cost more than the GEMM's 10 %)."""
    if out is None:
        block = np.asarray(x[r0:r1], dtype=np.float64)
        if not (block.flags.writeable and block.flags.c_contiguous):
            block = np.array(block, dtype=np.float64, order="C")
        return block
    block = out[: r1 - r0]
    np.copyto(block, np.asarray(x[r0:r1]), casting="unsafe")  # real dtypes only (_as_features)
    return block


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)
