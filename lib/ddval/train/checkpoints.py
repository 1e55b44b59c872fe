"""Checkpoint files of the training stage: a torch archive of tensors and plain data, stamped with the
format and the parameter hash of what wrote it, written atomically and byte-identically every time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ddval.store import atomic_path

CHECKPOINT_FORMAT = "ddval-train-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, or was written with other parameters; the message names the file."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], params_hash: str) -> Path:
    """Atomically write ``payload`` (tensors and plain data) with its parameter hash. Written through
    a file object: given a path, ``torch.save`` names the archive's records after the file (here a
    random temporary name), and the same checkpoint would get different bytes, hence CIDs, each time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "params_hash": params_hash, **payload}, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, params_hash: str | None) -> dict[str, Any]:
    """Read a checkpoint of :func:`save_checkpoint`; a corrupt file or one written with other
    parameters (``params_hash`` differs; ``None`` skips the check) raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc}); delete it to retrain"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a ddval training checkpoint (format {found!r}); delete it to retrain")
    if params_hash is not None and data.get("params_hash") != params_hash:
        raise CheckpointError(
            f"{path}: written by a different configuration (params hash {data.get('params_hash')}, "
            f"expected {params_hash}); it will not be reused: delete it (or its coalition folder) to retrain, "
            "or use another results root"
        )
    return data
