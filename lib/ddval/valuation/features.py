"""Deep features: what each institution shares instead of its images.

Every institution runs its own training and test scans through the grand coalition's best model
(``ddval.train.load_model``; evaluation transform, no augmentation) and keeps the output of the
last dense block, ``features.denseblock4`` (captured by a forward hook: the raw block output,
*before* ``norm5``, the ReLU and the pooling of the classifier head). The paper flattens it
(1024 × 8 × 8 = 65,536 dims for DenseNet-121 at 256 px); ``valuation.pooling: gap`` averages it
over the spatial positions instead (1024 dims). On the embedded demo (small DenseNet, 32 px) the
block's map is 1 × 1, so both give the same numbers.

One file per institution, ``<S>/valuation/features/<institution>.npz`` (``valuation.feature_dtype``
float32 or float16), holds the arrays of ``docs/tables.md`` plus the demographics of each scan::

    train_x (N, D)  train_y (N, 8)  train_ids (N,)  train_patients  train_sex  train_age
    test_x  (M, D)  test_y  (M, 8)  test_ids  (M,)  test_patients   test_sex   test_age

In a decentralised deployment only these files leave a site. ``train_y`` holds the labels the
institution trained with (after any label flips): the site does not know which of its labels are
wrong. Identifiers are stored as fixed-width unicode arrays (no pickled objects).

The archive is *uncompressed* (zip members stored), so ``train_x`` and ``test_x`` can be
memory-mapped in place (:func:`read_features` with ``mmap=True``; :mod:`ddval.valuation.mapped`):
the paper's setting holds 3 x 28,000 x 65,536 features (11 GB in float16), more than half the memory
of a laptop, and the valuation reads them block by block. Files too large to build in memory are
written block by block in the same format with :func:`ddval.valuation.mapped.write_npz_streaming`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ddval import numerics, store
from ddval.layout import features_dir
from ddval.config import LABELS, ExperimentConfig
from ddval.progress import progress
from ddval.valuation.mapped import map_npz_array

#: The hooked layer (torchvision module name), as in the paper.
FEATURE_LAYER = "features.denseblock4"
#: Arrays every feature file holds, per split (``train_*`` and ``test_*``).
SPLIT_KEYS = ("x", "y", "ids", "patients", "sex", "age")
STAGE = "features"
#: :func:`load_features` memory-maps the features of files at least this large (by default).
MMAP_MIN_BYTES = 1 << 30


@dataclass(frozen=True)
class SplitFeatures:
    """Features of one institution's train or test split, in partition order."""

    x: np.ndarray  # (n, D) float32/float16, or a read-only MappedArray (read_features(mmap=True))
    y: np.ndarray  # (n, 8) float32 0/1
    ids: np.ndarray  # (n,) scan ids
    patients: np.ndarray  # (n,) patient ids
    sex: np.ndarray  # (n,) "M" / "F" / "U"
    age: np.ndarray  # (n,) float, NaN when unknown

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class InstitutionFeatures:
    """What one institution shares: its train and test features with labels and demographics."""

    institution: str
    train: SplitFeatures
    test: SplitFeatures


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def hooked_layer(model: nn.Module, name: str = FEATURE_LAYER) -> nn.Module:
    """The submodule called ``name`` (default ``features.denseblock4``); a clear error otherwise."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise TypeError(
            f"{type(model).__name__} has no submodule {name!r} (build it with ddval.train.build_model)"
        ) from exc


@contextlib.contextmanager
def capture(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect ``layer``'s outputs (detached) while the context is open; the hook is removed after."""
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    try:
        yield outputs
    finally:
        handle.remove()


def pool(maps: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(B, C, H, W)`` block output → ``(B, C·H·W)`` (``flatten``, the paper) or ``(B, C)`` (``gap``)."""
    if pooling == "flatten":
        return maps.flatten(1)
    if pooling == "gap":
        return maps.mean(dim=(2, 3))
    raise ValueError(f"valuation.pooling: unknown pooling {pooling!r}; known: flatten, gap")


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: Dataset,
    *,
    pooling: str = "flatten",
    batch_size: int = 64,
    layer: str = FEATURE_LAYER,
    dtype: str | np.dtype = np.float32,
    desc: str = "features",
) -> np.ndarray:
    """Deep features of every item of ``data`` (``(x, y)`` pairs), in order: the hooked ``layer``'s
    output, pooled by ``pooling``, as a ``(len(data), D)`` array of ``dtype``. The model runs in
    eval mode (BatchNorm uses its running statistics) and is put back in its previous mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    try:
        with capture(hooked_layer(model, layer)) as outputs:
            for x, _ in progress(
                DataLoader(data, batch_size=batch_size, shuffle=False), desc=desc, leave=False, unit="batch"
            ):
                model(x.to(device))
                chunks.append(pool(outputs.pop(), pooling).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError(f"{desc}: no items to extract features from")
    return np.concatenate(chunks).astype(dtype, copy=False)


def split_features(
    model: nn.Module, frame: pd.DataFrame, image_size: int, *, pooling: str, dtype: str, batch_size: int, desc: str
) -> SplitFeatures:
    """Features plus labels, ids and demographics of the partition rows ``frame`` (in order)."""
    from ddval.data.dataset import XrayDataset

    data = XrayDataset(frame.reset_index(drop=True), image_size, train=False)  # evaluation transform
    return SplitFeatures(
        x=extract_features(model, data, pooling=pooling, batch_size=batch_size, dtype=dtype, desc=desc),
        y=frame[list(LABELS)].to_numpy(dtype=np.float32),
        ids=frame["scan_id"].astype(str).to_numpy(dtype=str),
        patients=frame["patient_id"].astype(str).to_numpy(dtype=str),
        sex=frame["sex"].fillna("U").astype(str).to_numpy(dtype=str),
        age=frame["age"].to_numpy(dtype=np.float64),
    )


def stage_threads(cfg: ExperimentConfig) -> int:
    """Torch threads of the valuation stage: ``valuation.model_threads``, else ``train.threads``.
    (Small models on contended cores run faster on one thread: extra threads only spin.)"""
    return cfg.valuation.model_threads or cfg.train.threads


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_features(path: str | os.PathLike, feats: InstitutionFeatures) -> Path:
    """Atomically write one institution's feature file."""
    arrays = {
        f"{split}_{key}": getattr(getattr(feats, split), key) for split in ("train", "test") for key in SPLIT_KEYS
    }
    return store.write_npz(path, **arrays)


def read_features(
    path: str | os.PathLike, institution: str | None = None, *, mmap: bool = False
) -> InstitutionFeatures:
    """Read and check a feature file; a missing key or inconsistent shape names the file and field.

    With ``mmap=True`` the features ``train_x`` / ``test_x`` are memory-mapped read-only
    (:class:`~ddval.valuation.mapped.MappedArray`: rows are read when indexed, never all at once);
    the labels, ids and demographics are read as usual."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: feature file not found (run the valuation stage's feature extraction)")
    with np.load(path, allow_pickle=False) as npz:
        missing = [f"{s}_{k}" for s in ("train", "test") for k in SPLIT_KEYS if f"{s}_{k}" not in npz.files]
        if missing:
            raise KeyError(f"{path}: missing array(s) {missing}")

        def array(split: str, key: str):
            name = f"{split}_{key}"
            return map_npz_array(path, name) if mmap and key == "x" else npz[name]

        splits = {s: SplitFeatures(**{k: array(s, k) for k in SPLIT_KEYS}) for s in ("train", "test")}
    for name, sp in splits.items():
        n = len(sp.ids)
        if sp.x.ndim != 2 or len(sp.x) != n:
            raise ValueError(f"{path}: {name}_x has shape {sp.x.shape}, expected ({n}, D)")
        if sp.y.shape != (n, len(LABELS)):
            raise ValueError(f"{path}: {name}_y has shape {sp.y.shape}, expected ({n}, {len(LABELS)})")
        for key in ("patients", "sex", "age"):
            if len(getattr(sp, key)) != n:
                raise ValueError(f"{path}: {name}_{key} has {len(getattr(sp, key))} rows, expected {n}")
    if splits["train"].x.shape[1] != splits["test"].x.shape[1]:
        raise ValueError(
            f"{path}: train_x and test_x have different widths ({splits['train'].x.shape[1]} vs {splits['test'].x.shape[1]})"
        )
    return InstitutionFeatures(institution or path.stem, splits["train"], splits["test"])


def features_params(cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None) -> dict:
    """What the feature files depend on: the grand model (its training record's hash), the layer,
    the pooling, the dtype, the image size and the CPU numerics (:mod:`ddval.numerics`)."""
    from ddval.layout import coalition_dir
    from ddval.train.stage import STAGE as TRAIN_STAGE

    grand = [i.name for i in cfg.setting(setting).institutions]
    record = store.record_path(coalition_dir(cfg, seed, setting, grand, root), TRAIN_STAGE)
    model_hash = store.read_json(record)["params_hash"] if record.exists() else None
    return {
        "model": model_hash,
        "layer": FEATURE_LAYER,
        "pooling": cfg.valuation.pooling,
        "dtype": cfg.valuation.feature_dtype,
        "image_size": cfg.data.image_size,
        "numerics": numerics.fingerprint(),
    }


def run_features_stage(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Extract (or reuse) every institution's feature file of ``setting``; returns name → path.

    Resumable: skipped when the files exist for the same grand model and feature options."""
    from ddval.data.splits import load_partition
    from ddval.train import load_model

    fdir = features_dir(cfg, seed, setting, root)
    names = [i.name for i in cfg.setting(setting).institutions]
    paths = {name: fdir / f"{name}.npz" for name in names}

    def compute() -> list[Path]:
        numerics.apply_to_torch()
        torch.set_num_threads(stage_threads(cfg))
        model = load_model(cfg, seed, setting, root=root)  # fails clearly when training is missing
        partition = load_partition(cfg, seed, setting, root=root)
        for name in names:
            rows = partition[partition["institution"] == name]
            feats = InstitutionFeatures(
                name,
                *(
                    split_features(
                        model,
                        rows[rows["split"] == split],
                        cfg.data.image_size,
                        pooling=cfg.valuation.pooling,
                        dtype=cfg.valuation.feature_dtype,
                        batch_size=cfg.train.eval_batch_size,
                        desc=f"{setting} {name} {split}",
                    )
                    for split in ("train", "test")
                ),
            )
            write_features(paths[name], feats)
        return list(paths.values())

    store.run_stage(fdir, STAGE, features_params(cfg, seed, setting, root), compute)
    return paths


def load_features(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None, *, mmap: bool | None = None
) -> dict[str, InstitutionFeatures]:
    """Every institution's features of ``setting`` (extracted first when missing or stale).

    ``mmap``: memory-map the features (see :func:`read_features`); default: for files of at least
    ``MMAP_MIN_BYTES`` (1 GiB), so the paper's setting is read block by block and the demo as before."""
    paths = run_features_stage(cfg, seed, setting, root)
    return {
        name: read_features(path, name, mmap=path.stat().st_size >= MMAP_MIN_BYTES if mmap is None else mmap)
        for name, path in paths.items()
    }
