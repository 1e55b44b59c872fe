"""Patient-level splits and institution partitions (one per setting and seed).

For each dataset, its patients (sorted by id) are shuffled with a seeded generator; the first
``1 - test_fraction`` of the *scans*, cut at a patient boundary, form the train/val pool and the rest
the test pool (as the original code). A dataset whose index rows carry an official split
(``official_split``: MIMIC-CXR with ``data.mimic_split: official``) uses it instead: its ``test``
patients form the test pool, ``train`` and ``validate`` the train/val pool (both still shuffled).
Institutions then take consecutive blocks of whole patients from the pools: a block of ``n`` scans
takes patients until ``n`` is reached and drops the surplus scans of its last patient, so sizes are
exact and no patient is split between blocks. All train blocks of a dataset are cut before its val
blocks (changing a val size never changes a training set). An institution drawing on ``k`` datasets
takes ``n / k`` scans from each.

With ``SettingConfig.sex_balance`` (the paper's non-IID setting) every train and val block takes
``n // 2`` scans from the pool's male patients and the rest from its female ones, each from its own run
of consecutive whole patients in the same shuffled order (a patient's sex is that of their first scan;
patients of unknown sex are not used for training or validation). Test pools are not balanced.

Schemes (``SettingConfig.scheme``):

* ``noniid``: each institution draws on exactly one dataset (the paper: one per dataset); test
  ``null`` = its dataset's whole test pool, ``n`` = its own block of the pool;
* ``iid``: every institution draws on the same datasets, an equal share of each; test ``n`` =
  disjoint blocks, ``null`` = the whole pools;
* ``shared_test``: institutions share one test set: the first ``test`` scans (``null``: all) of
  the pools of their datasets (the label-flip and scalability experiments).

A scan of a shared test pool appears once per institution (``institution`` says whose test set
the row belongs to); train and val rows are unique. :func:`check_partition` asserts that no
patient is in two splits and no train/val scan is in two institutions.

Label flips (``InstitutionConfig.flip_rate``): each of the 8 training labels of each training
scan of the institution is flipped (0 <-> 1) independently with that probability, from a seeded
generator. The labels used for training stay under the label names; the originals are in
``orig_<label>``, the count in ``n_flipped``. Validation and test labels are never flipped.
Everything is deterministic given (index, setting, seed).

Institution quality (``InstitutionConfig.quality``): :func:`load_partition` rewrites each institution's
training scans as its quality kind says (:mod:`ddval.data.degrade`; the scans are outputs of the stage) and
adds the ``quality`` and ``quality_params`` columns; a setting without quality kinds is cut as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import DATASETS, LABELS, ExperimentConfig, InstitutionConfig, SettingConfig, setting_identity
from ddval.data import degrade

#: The split names, in row order.
SPLITS = ("train", "val", "test")
#: Stream ids that keep the seeded generators of shuffling and flipping independent.
_SHUFFLE, _FLIP = 1, 2


class PartitionError(ValueError):
    """A setting cannot be cut from the index (pool too small, scheme violated)."""


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *keys])


def patient_pools(index: pd.DataFrame, seed: int, test_fraction: float) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Per dataset: (train/val pool, test pool), scans ordered by shuffled patient, then study, scan."""
    if not 0.0 <= test_fraction < 1.0:
        raise PartitionError(f"test_fraction must be in [0, 1), got {test_fraction}")
    pools = {}
    for dataset in DATASETS:
        scans = index.loc[index["dataset"] == dataset]
        if scans.empty:
            continue
        patients = np.sort(scans["patient_id"].unique())
        order = pd.Series(
            np.arange(len(patients)), index=_rng(seed, _SHUFFLE, DATASETS.index(dataset)).permutation(patients)
        )
        ordered = scans.assign(_rank=scans["patient_id"].map(order)).sort_values(
            ["_rank", "study_id", "scan_id"], kind="stable"
        )
        if _has_official_split(ordered):
            mask = (ordered["official_split"] == "test").to_numpy()
        else:
            counts = ordered.groupby("_rank", sort=True).size()
            before = counts.cumsum() - counts  # scans of the patients ahead of each patient
            in_test = before >= (1.0 - test_fraction) * len(ordered)
            test_ranks = set(in_test.index[in_test.to_numpy()])
            mask = ordered["_rank"].isin(test_ranks).to_numpy()
        pools[dataset] = (ordered.loc[~mask].reset_index(drop=True), ordered.loc[mask].reset_index(drop=True))
    return pools


def _has_official_split(scans: pd.DataFrame) -> bool:
    return "official_split" in scans.columns and bool(scans["official_split"].fillna("").ne("").all())


class _Cursor:
    """Consecutive blocks of whole patients from an ordered pool."""

    def __init__(self, pool: pd.DataFrame, name: str):
        self.pool = pool
        self.name = name
        self.row = 0  # first row of the next block (always the first scan of a patient)
        self.starts = (
            np.flatnonzero(np.r_[True, pool["_rank"].to_numpy()[1:] != pool["_rank"].to_numpy()[:-1]])
            if len(pool)
            else np.array([], dtype=int)
        )

    def take(self, n: int, who: str) -> pd.DataFrame:
        if n == 0:
            return self.pool.iloc[0:0]
        end = self.row + n
        if end > len(self.pool):
            raise PartitionError(
                f"{who}: needs {n} more scans from the {self.name}, which has {len(self.pool) - self.row} left "
                f"(of {len(self.pool)}); lower the sizes, raise test_fraction's complement, or add data"
            )
        block = self.pool.iloc[self.row : end]
        nxt = self.starts[self.starts >= end]  # skip the rest of the last patient
        self.row = int(nxt[0]) if len(nxt) else len(self.pool)
        return block


class _SexBalancedCursor:
    """Blocks of ``n // 2`` scans of male and ``n - n // 2`` of female patients (``sex_balance``), each
    from a :class:`_Cursor` over that sex's patients of the pool, in the pool's order."""

    SEXES = (("M", "male"), ("F", "female"))

    def __init__(self, pool: pd.DataFrame, name: str):
        sex = pool.groupby("_rank", sort=False)["sex"].transform("first")
        self.cursors = [
            _Cursor(pool.loc[sex == code].reset_index(drop=True), f"{name}'s {word} patients")
            for code, word in self.SEXES
        ]

    def take(self, n: int, who: str) -> pd.DataFrame:
        male, female = self.cursors
        return pd.concat([male.take(n // 2, who), female.take(n - n // 2, who)], ignore_index=True)


def _shares(n: int, datasets: tuple[str, ...]) -> dict[str, int]:
    """``n`` scans split over ``datasets`` as equally as possible (remainder to the first ones)."""
    k = len(datasets)
    return {d: n // k + (1 if i < n % k else 0) for i, d in enumerate(datasets)}


def _check_scheme(setting: SettingConfig) -> None:
    if not setting.institutions:
        raise PartitionError(f"setting {setting.name!r} has no institutions")
    if setting.scheme == "noniid":
        bad = [i.name for i in setting.institutions if len(i.datasets) != 1]
        if bad:
            raise PartitionError(
                f"setting {setting.name!r} (noniid): institutions {bad} must draw on exactly one dataset"
            )
    if setting.scheme == "iid":
        kinds = {tuple(sorted(i.datasets)) for i in setting.institutions}
        if len(kinds) != 1:
            raise PartitionError(
                f"setting {setting.name!r} (iid): every institution must draw on the same datasets, got {sorted(kinds)}"
            )
    for inst in setting.institutions:
        if not inst.datasets:
            raise PartitionError(f"setting {setting.name!r}: institution {inst.name!r} draws on no dataset")
        if min(inst.train, inst.val) < 0 or (inst.test is not None and inst.test < 0):
            raise PartitionError(f"setting {setting.name!r}: institution {inst.name!r} has a negative size")


def make_partition(index: pd.DataFrame, setting: SettingConfig, seed: int) -> pd.DataFrame:
    """Cut ``setting`` from ``index`` for ``seed``: one row per (institution, split, scan), columns
    of the index plus ``institution, split``, the (possibly flipped) labels, ``orig_<label>`` and
    ``n_flipped``. Raises :class:`PartitionError` when a pool is too small."""
    _check_scheme(setting)
    used = sorted({d for inst in setting.institutions for d in inst.datasets}, key=DATASETS.index)
    missing = [d for d in used if d not in set(index["dataset"])]
    if missing:
        raise PartitionError(f"setting {setting.name!r} draws on {missing}, which the index does not contain")
    pools = patient_pools(index.loc[index["dataset"].isin(used)], seed, setting.test_fraction)
    cursor = _SexBalancedCursor if setting.sex_balance else _Cursor
    trainval = {d: cursor(pools[d][0], f"{d} train/val pool") for d in used}
    tests = {d: _Cursor(pools[d][1], f"{d} test pool") for d in used}
    blocks: dict[tuple[str, str], list[pd.DataFrame]] = {(i.name, s): [] for i in setting.institutions for s in SPLITS}
    for split in ("train", "val"):
        for inst in setting.institutions:
            for d, n in _shares(getattr(inst, split), inst.datasets).items():
                blocks[(inst.name, split)].append(trainval[d].take(n, f"setting {setting.name!r}, {inst.name} {split}"))
    for inst in setting.institutions:
        for d in inst.datasets:
            if inst.test is None:
                blocks[(inst.name, "test")].append(pools[d][1])
            elif setting.scheme == "shared_test":
                n = _shares(inst.test, inst.datasets)[d]
                blocks[(inst.name, "test")].append(
                    _Cursor(pools[d][1], f"{d} test pool").take(n, f"setting {setting.name!r}, {inst.name} test")
                )
            else:
                n = _shares(inst.test, inst.datasets)[d]
                blocks[(inst.name, "test")].append(tests[d].take(n, f"setting {setting.name!r}, {inst.name} test"))
    parts = []
    for number, inst in enumerate(setting.institutions):
        for split in SPLITS:
            frame = pd.concat(blocks[(inst.name, split)], ignore_index=True).drop(columns="_rank")
            frame.insert(frame.columns.get_loc("view_position") + 1, "institution", inst.name)
            frame.insert(frame.columns.get_loc("institution") + 1, "split", split)
            parts.append(_flip(frame, inst, split, seed, number))
    partition = pd.concat(parts, ignore_index=True)
    check_partition(partition)
    return partition


def _flip(frame: pd.DataFrame, inst: InstitutionConfig, split: str, seed: int, number: int) -> pd.DataFrame:
    """Record the original labels; flip training labels with ``inst.flip_rate``."""
    labels = frame[list(LABELS)].to_numpy(dtype=float)
    flips = np.zeros_like(labels, dtype=bool)
    if split == "train" and inst.flip_rate > 0 and len(frame):
        flips = _rng(seed, _FLIP, number).random(labels.shape) < inst.flip_rate
    out = frame.copy()
    out[list(LABELS)] = np.where(flips, 1.0 - labels, labels)
    for k, label in enumerate(LABELS):
        out[f"orig_{label}"] = labels[:, k]
    out["n_flipped"] = flips.sum(axis=1).astype(np.int64)
    return out


def check_partition(partition: pd.DataFrame) -> None:
    """Raise ``AssertionError`` when a patient is in two splits, or a train/val scan is in two
    institutions or twice in one, or a test scan is twice in one institution."""
    splits = partition.groupby("patient_id")["split"].nunique()
    leaked = splits.index[splits > 1]
    if len(leaked):
        raise AssertionError(f"patient leakage: {len(leaked)} patient(s) in two splits, e.g. {list(leaked[:5])}")
    fit = partition.loc[partition["split"] != "test"]
    dup = fit["scan_id"].duplicated(keep=False)
    if dup.any():
        raise AssertionError(f"train/val scans used twice: {fit.loc[dup, 'scan_id'].head().tolist()}")
    test = partition.loc[partition["split"] == "test"]
    dup = test.duplicated(["institution", "scan_id"], keep=False)
    if dup.any():
        raise AssertionError(f"test scans listed twice for one institution: {test.loc[dup, 'scan_id'].head().tolist()}")


def partition_summary(partition: pd.DataFrame) -> pd.DataFrame:
    """Scans, patients, flipped labels and label prevalence per institution and split."""
    grouped = partition.groupby(["institution", "split"], sort=False)
    table = grouped[list(LABELS)].mean()
    table.insert(0, "scans", grouped.size())
    table.insert(1, "patients", grouped["patient_id"].nunique())
    table.insert(2, "flipped_labels", grouped["n_flipped"].sum())
    return table


def load_partition(
    cfg: ExperimentConfig, seed: int, setting_name: str, root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The partition of ``setting_name`` for ``seed``: ``<results>/<preset>/seed-<s>/<setting>/partition.parquet``,
    created from ``index_resized.parquet`` on first use (a stage with its completion record)."""
    setting = cfg.setting(setting_name)
    ddir = layout.data_dir(cfg, root)
    record = store.require_record(
        ddir,
        "resize",
        "run stages 01 and 02 first (notebooks 01_index and 02_resize, or "
        "ddval.data.run_index_stage and ddval.data.run_resize_stage)",
    )
    sdir = layout.setting_dir(cfg, seed, setting_name, root)
    params = {"setting": setting_identity(setting), "seed": int(seed), "index": record["params_hash"]}
    if degrade.has_quality(setting):  # only then: a setting without quality kinds keeps its hash
        params["quality"] = degrade.PARAMETERS

    def compute() -> list[Path]:
        index = store.read_table(layout.resized_index_path(cfg, root))
        partition, scans = degrade.apply_qualities(make_partition(index, setting, seed), setting, seed, sdir / "scans")
        check_partition(partition)
        return [store.write_table(sdir / "partition.parquet", partition), *scans]

    store.run_stage(sdir, "partition", params, compute)
    return store.read_table(sdir / "partition.parquet")
