"""Where everything lives: the run-folder layout, the result tables and the valuation methods.

This module is the one owner of these facts; writers and readers import them from here.

Layout (``<root>`` is :func:`results_root`: ``$DDVAL_RESULTS``, else ``results/`` of the checkout the
command runs in)::

    <root>/<preset>/data/                               cohort, index, resized scans (seed-independent)
    <root>/<preset>/seed-<s>/<setting>/                 partition of one seed and setting (``<S>``)
    <S>/train/<coalition>/                              one coalition's model and tables
    <S>/valuation/  <S>/valuation/features/  <S>/valuation/shards/
    <S>/economy/
    <root>/<preset>/figures/                            figures and summary tables over seeds
    <root>/<preset>/notebooks/                          executed notebooks (papermill)

Result tables (columns, one row per what, who writes them) are described in ``docs/tables.md``;
:data:`TABLES` holds the machine-readable part of that contract.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ddval.config import REPLICATE_PREFIX

if TYPE_CHECKING:
    from ddval.config import ExperimentConfig, SettingConfig

#: Every valuation method, in table and display order (``institution_values.csv``'s ``method``).
METHODS: tuple[str, ...] = ("exact", "ddval", "or", "mr", "lambda_mr", "gtg", "safe")

#: The reference allocation that gives every institution the same share (a row of the similarity views).
EQUAL_SPLIT = "equal_split"
#: Reference allocations, rows of ``institution_values.csv`` and ``similarity.csv`` like any method: the
#: total split equally, by training scans, by positive training labels. A method is credited only
#: where it beats the best of them, seed by seed.
REFERENCE_SPLITS: tuple[str, ...] = (EQUAL_SPLIT, "size_split", "positives_split")
#: The row of ``similarity.csv`` that scores the ground truth against itself: exact values from disjoint
#: halves of the training replicates. No method can be judged beyond it.
NOISE_CEILING = "noise_ceiling"
#: Every row of ``similarity.csv``, in display order.
SIMILARITY_ROWS: tuple[str, ...] = (NOISE_CEILING, *METHODS[1:], *REFERENCE_SPLITS)


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------

Root = str | os.PathLike | None


#: What marks the root of a ddval checkout: both of these exist in it.
CHECKOUT_MARKERS: tuple[str, ...] = ("configs", "lib/ddval")


def checkout_root(start: str | os.PathLike | None = None) -> Path | None:
    """The ddval checkout (working tree) that holds ``start`` (default: the current directory): the
    nearest folder at or above it with ``configs/`` and ``lib/ddval/``; None outside every checkout.

    This, not the location of the imported package, decides where results go: two clones may share
    one environment whose editable install points at only one of them."""
    here = Path(start if start is not None else os.getcwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_dir() for marker in CHECKOUT_MARKERS):
            return folder
    return None


def checkout_results(start: str | os.PathLike | None = None) -> Path:
    """``results/`` of :func:`checkout_root` (the tables shipped with the checkout you run in).

    Raises:
        FileNotFoundError: ``start`` (the current directory) is in no ddval checkout.
    """
    checkout = checkout_root(start)
    if checkout is None:
        here = Path(start if start is not None else os.getcwd()).resolve()
        raise FileNotFoundError(
            f"{here} is not inside a ddval checkout (no folder above it has {' and '.join(CHECKOUT_MARKERS)}); "
            "run from your clone, or set DDVAL_RESULTS (or pass the results folder) to say where results go"
        )
    return checkout / "results"


def results_root(root: Root = None) -> Path:
    """Where run folders live: ``root`` if given, else ``$DDVAL_RESULTS``, else ``results/`` of the
    checkout the current directory is in (:func:`checkout_results`), never the checkout the package
    happens to be installed from.

    Raises:
        FileNotFoundError: none of the three applies (outside every checkout, no ``DDVAL_RESULTS``).
    """
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("DDVAL_RESULTS")
    return Path(env).expanduser().resolve() if env else checkout_results()


def preset_dir(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<root>/<preset>``."""
    return results_root(root) / cfg.preset


def data_dir(cfg: ExperimentConfig, root: Root = None) -> Path:
    """Seed-independent data of a preset: cohort, index, resized scans."""
    return preset_dir(cfg, root) / "data"


def cohort_dir(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<data>/raw``: the synthetic cohort, one folder per dataset in its real on-disk format."""
    return data_dir(cfg, root) / "raw"


def index_path(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<data>/index.parquet``: one row per scan of every configured dataset (stage 01)."""
    return data_dir(cfg, root) / "index.parquet"


def resized_dir(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<data>/resized/<data.image_size>``: the resized scans (stage 02)."""
    return data_dir(cfg, root) / "resized" / str(cfg.data.image_size)


def resized_index_path(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<data>/index_resized.parquet``: the index re-pointed at the resized scans (stage 02)."""
    return data_dir(cfg, root) / "index_resized.parquet"


def run_dir(cfg: ExperimentConfig, seed: int, root: Root = None) -> Path:
    """``<root>/<preset>/seed-<seed>``."""
    return preset_dir(cfg, root) / f"seed-{seed}"


def setting_dir(cfg: ExperimentConfig, seed: int, setting: str, root: Root = None) -> Path:
    """``<root>/<preset>/seed-<seed>/<setting>`` (``<S>``)."""
    cfg.setting(setting)  # fails clearly on an unknown setting
    return run_dir(cfg, seed, root) / setting


def figures_dir(cfg: ExperimentConfig, root: Root = None) -> Path:
    """``<root>/<preset>/figures``."""
    return preset_dir(cfg, root) / "figures"


def coalition_id(members: Sequence[str]) -> str:
    """A coalition's name and folder: member names joined by ``+`` (in config order)."""
    return "+".join(members)


def all_coalitions(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty coalition, by size, members in ``names`` order (the grand coalition last)."""
    return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


def setting_coalitions(setting: SettingConfig) -> list[tuple[str, ...]]:
    """The coalitions a setting trains: all of them, or only the grand one (``coalitions: grand``)."""
    names = tuple(i.name for i in setting.institutions)
    return all_coalitions(names) if setting.coalitions == "all" else [names]


def parse_coalition(setting: SettingConfig, coalition: str | Sequence[str]) -> tuple[str, ...]:
    """Members of ``coalition`` (an id such as ``"nih+mimic"`` or a list of names), in config order."""
    names = [i.name for i in setting.institutions]
    wanted = coalition.split("+") if isinstance(coalition, str) else list(coalition)
    unknown = [w for w in wanted if w not in names]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        raise ValueError(
            f"setting {setting.name!r}: bad coalition {coalition!r}; institutions are {names}, joined by '+'"
        )
    members = tuple(n for n in names if n in wanted)
    if members not in setting_coalitions(setting):
        raise ValueError(
            f"setting {setting.name!r} trains only the grand coalition ({coalition_id(names)}), not {coalition!r}"
        )
    return members


def grand_coalition_id(cfg: ExperimentConfig, setting: str) -> str:
    """The grand coalition's id: every institution of ``setting``, in config order."""
    return coalition_id([i.name for i in cfg.setting(setting).institutions])


def train_dir(cfg: ExperimentConfig, seed: int, setting: str, root: Root = None) -> Path:
    """``<S>/train``."""
    return setting_dir(cfg, seed, setting, root) / "train"


def setting_replicates(cfg: ExperimentConfig, setting: str) -> int:
    """How many times a setting trains each coalition: its own ``replicates`` or else ``train.replicates`` when it
    trains every coalition (its exact values are the ground truth, the replicates its mean and noise ceiling),
    else 1 (``coalitions: grand`` has no ground truth to replicate)."""
    s = cfg.setting(setting)
    if s.coalitions != "all":
        return 1
    return s.replicates if s.replicates is not None else cfg.train.replicates


def replicate_train_dir(cfg: ExperimentConfig, seed: int, setting: str, replicate: int = 0, root: Root = None) -> Path:
    """The training folder of one training replicate: ``<S>/train`` for replicate 0 (the run DDVal and the
    baselines read), ``<S>/train/replicate-<r>`` for ``r >= 1`` (:func:`setting_replicates`)."""
    n = setting_replicates(cfg, setting)
    if not 0 <= replicate < n:
        raise ValueError(f"setting {setting!r}: replicate {replicate} not in 0..{n - 1} (train.replicates)")
    tdir = train_dir(cfg, seed, setting, root)
    return tdir / f"{REPLICATE_PREFIX}{replicate}" if replicate else tdir


def coalition_dir(
    cfg: ExperimentConfig, seed: int, setting: str, members: Sequence[str], root: Root = None, replicate: int = 0
) -> Path:
    """``<S>/train/<coalition>``: one coalition's model and tables (replicate ``r >= 1``:
    ``<S>/train/replicate-<r>/<coalition>``, :func:`replicate_train_dir`)."""
    return replicate_train_dir(cfg, seed, setting, replicate, root) / coalition_id(members)


def valuation_dir(cfg: ExperimentConfig, seed: int, setting: str, root: Root = None) -> Path:
    """``<S>/valuation``."""
    return setting_dir(cfg, seed, setting, root) / "valuation"


def features_dir(cfg: ExperimentConfig, seed: int, setting: str, root: Root = None) -> Path:
    """``<S>/valuation/features``: one feature file per institution (what leaves a site)."""
    return valuation_dir(cfg, seed, setting, root) / "features"


def shard_path(vdir: Path, shard: int, n_shards: int) -> Path:
    """``<S>/valuation/shards/knn-<i>-of-<n>.npz``."""
    return vdir / "shards" / f"knn-{shard}-of-{n_shards}.npz"


def economy_dir(cfg: ExperimentConfig, seed: int, setting: str, root: Root = None) -> Path:
    """``<S>/economy``."""
    return setting_dir(cfg, seed, setting, root) / "economy"


# --------------------------------------------------------------------------------------------
# Result tables (docs/tables.md)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A per-seed, per-setting result table: the stage folder it lives in (``<S>/<stage>/<name>``),
    the columns its writer produces, the columns a reader requires and those that must be numeric."""

    name: str
    stage: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    numeric: tuple[str, ...]


def _table(
    name: str, stage: str, columns: Sequence[str], numeric: Sequence[str], required: Sequence[str] | None = None
) -> Table:
    return Table(name, stage, tuple(columns), tuple(required if required is not None else columns), tuple(numeric))


_TABLE_LIST = (
    _table(
        "institution_values.csv",
        "valuation",
        ("setting", "seed", "method", "institution", "value", "n_utility_evals"),
        ("value",),
        required=("setting", "seed", "method", "institution", "value"),
    ),
    _table(
        "similarity.csv",
        "valuation",
        ("setting", "seed", "method", "cosine", "pearson", "spearman", "l1_share", "max_abs_error"),
        ("cosine", "pearson", "spearman", "l1_share", "max_abs_error"),
        required=("setting", "seed", "method", "cosine", "pearson", "spearman", "max_abs_error"),
    ),
    _table(
        "replicates.csv",
        "valuation",
        ("setting", "seed", "replicate", "coalition", "n_members", "utility", "rounds", "best_round", "stop"),
        ("replicate", "utility", "rounds", "best_round"),
    ),
    _table(
        "lambda_sensitivity.csv",
        "valuation",
        ("setting", "seed", "lambda", "cosine", "spearman", "l1_share"),
        ("lambda", "cosine", "spearman", "l1_share"),
    ),
    _table(
        "or_batchnorm.csv",
        "valuation",
        ("setting", "seed", "batchnorm", "cosine", "spearman", "l1_share"),
        ("cosine", "spearman", "l1_share"),
    ),
    _table(
        "point_values.parquet",
        "valuation",
        ("institution", "scan_id", "patient_id", "sex", "age", "n_flipped", "value"),
        ("n_flipped", "value"),
        required=("institution", "scan_id", "n_flipped", "value"),
    ),
    _table(
        "labelflip.csv", "valuation", ("setting", "seed", "institution", "flip_rate", "value"), ("flip_rate", "value")
    ),
    _table(
        "flip_detection.csv",
        "valuation",
        ("setting", "seed", "auroc", "n_flipped", "n_clean"),
        ("auroc", "n_flipped", "n_clean"),
    ),
    _table(
        "dp.csv",
        "valuation",
        ("setting", "seed", "noise_scale", "cosine", "pearson", "spearman"),
        ("noise_scale", "cosine"),
    ),
    _table(
        "scalability.csv",
        "valuation",
        ("method", "n_clients", "n_points", "wall_time_s", "n_utility_evals", "measured", "basis"),
        ("n_clients", "n_points", "wall_time_s"),
        required=("method", "n_clients", "n_points", "wall_time_s", "n_utility_evals"),
    ),
    _table(
        "gas.csv",
        "economy",
        ("operation", "actor", "gas_used", "tx_hash"),
        ("gas_used",),
        required=("operation", "actor", "gas_used"),
    ),
    _table(
        "payout_scaling.csv",
        "economy",
        (
            "method",
            "n_recipients",
            "n_transactions",
            "n_measured",
            "setup_gas",
            "payer_gas",
            "total_gas",
            "gas_per_recipient",
            "gas_per_recipient_min",
            "gas_per_recipient_max",
        ),
        ("n_recipients", "total_gas", "gas_per_recipient", "n_transactions"),
        required=("method", "n_recipients", "total_gas", "gas_per_recipient", "n_transactions"),
    ),
    _table(
        "curves.csv",
        "train",
        ("setting", "seed", "coalition", "round", "train_loss", "val_loss", "is_best"),
        ("round", "train_loss", "val_loss"),
        required=("setting", "seed", "coalition", "round", "train_loss", "val_loss"),
    ),
)

#: Every result table that notebooks and figures read, by file name.
TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}


def columns(name: str) -> list[str]:
    """The columns the writer of table ``name`` produces, in order."""
    return list(TABLES[name].columns)
