"""Typed experiment configuration.

An experiment is a *preset* (``configs/<name>.yaml``) run for one or more seeds. A preset may
``extends:`` another preset; mappings are merged key by key, everything else is replaced.
Unknown keys are an error that names the file and the key, so a typo never silently falls back
to a default.

The public entry point is :func:`load_config`. This module is the schema (one frozen dataclass per
section) and its checks; where presets live and how their files are read is ``ddval.preset_files``,
how a dataclass is built from YAML by its type hints is ``ddval.yaml_schema`` (both re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ddval.hashing import OMIT_DEFAULT, plain_data
from ddval.preset_files import (  # noqa: F401 (re-exported: every caller imports them from ddval.config)
    MIMIC_IV_ROOT_ENV,
    PATH_ENV_VARS,
    ROOT_ENV_VARS,
    anchor_path_env,
    available_presets,
    configs_dir,
    is_preset_file,
    preset_path,
    read_with_extends,
    repo_root,
)
from ddval.yaml_schema import ConfigError, build, merge  # noqa: F401 (ConfigError re-exported)

#: The 8 harmonised findings of the paper, in the model's output order.
LABELS: tuple[str, ...] = (
    "atelectasis",
    "cardiomegaly",
    "consolidation",
    "edema",
    "no_finding",
    "pleural_effusion",
    "pneumonia",
    "pneumothorax",
)

#: The three source datasets, by their short names.
DATASETS: tuple[str, ...] = ("nih", "chexpert", "mimic")

#: Views of the unified index (``view`` column): what ``data.views`` may select.
VIEWS: tuple[str, ...] = ("frontal", "lateral", "oblique", "unknown")

#: Folder name prefix of a training replicate ``r >= 1`` (``<S>/train/replicate-<r>``; ``ddval.layout``).
REPLICATE_PREFIX = "replicate-"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of the embedded synthetic cohort (written by ``ddval.data.synthetic``)."""

    seed: int = 0
    patients: dict[str, int] = field(default_factory=lambda: {"nih": 400, "chexpert": 400, "mimic": 400})
    max_scans_per_patient: int = 3
    image_size: int = 96  # side of the written images, before the resize stage


@dataclass(frozen=True)
class DataConfig:
    """Where the scans come from and how they are indexed and resized."""

    source: Literal["synthetic", "real"] = "synthetic"
    datasets: tuple[str, ...] = DATASETS
    # real data: dataset -> folder; a relative path is relative to the preset file's folder.
    # DDVAL_<DATASET>_ROOT, when set, takes precedence (printed by the run)
    roots: dict[str, str] = field(default_factory=dict)
    uncertain: Literal["zeros", "ones"] = "zeros"  # paper: U-Zeros (uncertain -> 0)
    blank: Literal["zeros"] = "zeros"  # paper: blank -> 0
    image_size: int = 256  # side after the resize stage (paper: 256)
    on_corrupt: Literal["error", "quarantine"] = "error"
    # an image listed in a dataset's CSV but absent on disk: stop with an error naming it, or
    # skip the row (counted in the log, listed in index_skipped.csv)
    on_missing: Literal["error", "skip"] = "error"
    # views kept in the index (default: all, as the original, where lateral scans go into training)
    views: tuple[str, ...] = VIEWS
    # MIMIC-CXR: ddval's own seeded patient split (as every dataset), or the official
    # mimic-cxr-2.0.0-split.csv (train + validate -> train/val pool, test -> test pool)
    mimic_split: Literal["ddval", "official"] = "ddval"
    # MIMIC-CXR labels: mimic-cxr-2.0.0-chexpert.csv (default) or mimic-cxr-2.0.0-negbio.csv
    mimic_labels: Literal["chexpert", "negbio"] = "chexpert"
    workers: int = 2
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


#: What an institution's training scans look like (:mod:`ddval.data.degrade` documents each kind).
QualityKind = Literal["clean", "degraded", "shifted", "duplicates", "ood"]


@dataclass(frozen=True)
class InstitutionConfig:
    """One institution (client) of a setting: which datasets it draws from and how many scans."""

    name: str
    datasets: tuple[str, ...]
    train: int
    val: int
    test: int | None = None  # None: the whole test pool of its datasets (paper, non-IID)
    flip_rate: float = 0.0  # probability that each training label is flipped (label-flip experiment)
    # how its training scans are rewritten when the partition is cut (ddval.data.degrade); left out of
    # hashes while "clean", so presets without quality kinds keep their hashes and results
    quality: QualityKind = field(default="clean", metadata={OMIT_DEFAULT: True})


@dataclass(frozen=True)
class SettingConfig:
    """One partition of the cohort into institutions (non-IID, IID, label flip, ...)."""

    name: str
    scheme: Literal["noniid", "iid", "shared_test"]
    institutions: tuple[InstitutionConfig, ...]
    coalitions: Literal["all", "grand"] = "all"  # train every coalition, or only the grand one
    test_fraction: float = 0.2  # patient-level share of each dataset reserved for testing
    # training replicates of this setting's coalitions (None: train.replicates), e.g. a noise ceiling for the
    # setting that needs one without replicating every setting; left out of hashes while None
    replicates: int | None = field(default=None, metadata={OMIT_DEFAULT: True})
    # every training and validation block half male, half female patients (the paper's non-IID setting: 14,000
    # + 14,000 training scans per institution); patients of unknown sex are left out of those blocks; left out
    # of hashes while false
    sex_balance: bool = field(default=False, metadata={OMIT_DEFAULT: True})


def setting_identity(setting: SettingConfig) -> SettingConfig:
    """``setting`` as its partition and each of its trainings depend on it: without ``replicates`` (how many
    times the coalitions are retrained is not part of what one training is, so adding replicates keeps the
    partition and replicate 0 as they were)."""
    return dataclasses.replace(setting, replicates=None)


@dataclass(frozen=True)
class TrainConfig:
    """Model and federated/swarm training hyperparameters (paper defaults)."""

    model: Literal["densenet121", "densenet_small"] = "densenet121"
    pretrained: bool = True  # ImageNet weights when present in the local torch cache
    algorithm: Literal["fedavg", "swarm"] = "fedavg"
    weighted: bool = False  # paper: unweighted mean of the state dicts
    max_rounds: int = 200
    patience: int = 10
    local_epochs: int = 1
    lr: float = 0.01
    # learning rate of round r = lr * lr_decay ** (r - 1), the same rule for every coalition
    # (paper: 1.0, a constant rate; the original halved it for single-client coalitions only)
    lr_decay: float = 1.0
    momentum: float = 0.0
    batch_size: int = 32
    eval_batch_size: int = 32
    augment: bool = True
    rotation_degrees: float = 15.0
    translate: float = 0.1
    hflip: bool = True
    threads: int = 2
    num_workers: int = 0
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    # densenet_small only: torchvision DenseNet sizes of the CPU model (densenet121: 32, (6,12,24,16), 64)
    small_growth_rate: int = 8
    small_block_config: tuple[int, ...] = (2, 2, 2, 2)
    small_init_features: int = 16
    # coalitions trained at the same time, each in its own process with `threads` threads (the
    # small demo models gain little from intra-op threads and lose a lot when cores are contended)
    processes: int = 1
    # training replicates of every coalition (settings with coalitions: all): replicate 0 is the run
    # above; replicate r >= 1 retrains every coalition on the same partition with independent training
    # randomness (seed material (seed, r): initial model, batch order, augmentation); the ground truth is
    # the exact Shapley value of the mean utilities, its noise ceiling the agreement of disjoint halves
    # (ddval.valuation.ground_truth)
    replicates: int = 1
    # the coalitions' common start (ddval.train.pretrain, the small model's stand-in for the paper's ImageNet
    # start): "attributes" pretrains the backbone on the cohort's scans no institution holds to predict their
    # acquisition attributes, and every coalition and replicate starts from it with a fresh head
    pretrain: Literal["none", "attributes"] = field(default="none", metadata={OMIT_DEFAULT: True})
    pretrain_epochs: int = field(default=20, metadata={OMIT_DEFAULT: True})  # at most (early stopping)


@dataclass(frozen=True)
class ValuationConfig:
    """DDVal and the baselines."""

    k: int = 3
    test_per_class: int = 300  # balanced test set per label and institution: up to 300 + 300
    pooling: Literal["flatten", "gap"] = "flatten"  # paper: flatten denseblock4
    feature_dtype: Literal["float32", "float16"] = "float32"
    methods: tuple[str, ...] = ("exact", "ddval", "or", "mr", "lambda_mr", "gtg", "safe")
    memory_budget_mb: int = 512  # working memory of knn_shapley (distances of a test chunk, buffers)
    device: str = "auto"  # knn_shapley: "auto" (cuda if available, else host), "host", "cpu", "cuda"
    chunk: int | None = None  # knn_shapley test points per chunk; None: as many as memory_budget_mb allows
    threads: int = 0  # knn_shapley host threads (BLAS + workers); 0: torch.get_num_threads() if torch is loaded, else the usable cores
    shards: int = 1  # test-point shards (one SLURM array task each)
    lambda_mr: float = 0.5  # discount of the lambda-MR rounds
    lambda_grid: tuple[float, ...] = (
        0.1,
        0.25,
        0.5,
        0.75,
        0.9,
        1.0,
    )  # lambda_sensitivity.csv (settings with exact values)
    # OR's BatchNorm running statistics: rebuilt from the updates, the grand model's, or the initial model's
    or_batchnorm: Literal["rebuilt", "grand", "initial"] = "rebuilt"
    gtg_eps: float = 0.001
    gtg_round_trunc: float = 0.01
    gtg_max_permutations: int = 50
    dp_noise_scales: tuple[float, ...] = ()  # Gaussian noise x feature std on shared train features
    scalability_clients: tuple[int, ...] = ()  # client counts of the scalability experiment
    scalability_points_per_client: int = 8000
    # --- valuation pipeline (ddval.valuation.stage / experiments / baselines) ---
    grand_only_methods: tuple[str, ...] = (
        "ddval",
    )  # methods run on `coalitions: grand` settings (no exact values there)
    safe_alphas: tuple[float, ...] = (
        0.01,
        0.1,
        1.0,
        10.0,
        100.0,
        1000.0,
        10000.0,
    )  # SaFE ridge penalties (RidgeCV, leave-one-out)
    gtg_min_permutations: int = 30  # GTG-Shapley: permutations before the convergence test (Liu et al.: max(30, n))
    gtg_converge_tol: float = 0.05  # GTG-Shapley: mean relative change of the running values over the window
    gtg_converge_window: int = 10  # GTG-Shapley: permutations the convergence test looks back
    scalability_setting: str | None = (
        None  # setting whose features/rounds the scalability runs use (None: most institutions)
    )
    scalability_time_cap_s: float = 5.0  # per method: measure client counts while the projected time stays under this
    model_threads: int = (
        0  # torch threads of the valuation stage (feature extraction, model evaluation); 0: train.threads
    )


@dataclass(frozen=True)
class EconomyConfig:
    """Token economy: chain, IPFS and payouts (``ddval.economy``; policy in ``ddval.economy.rewards``)."""

    rpc_url: str | None = None  # None -> embedded chain (eth-tester); keys only from the environment
    chain_id: int | None = None  # expected chain id of rpc_url; required unless it is a dev chain (31337/1337)
    ipfs_api: str | None = None  # None -> embedded content-addressed store
    cid_version: int = 1  # 1: `ipfs add --cid-version=1` (raw leaves); 0: Kubo's default Qm...
    token_address: str | None = None  # an existing ERC-20 as pool asset; None -> deploy the demo token
    treasury: str | None = None  # receives leftovers after the deadline; None -> a dev account (dev chains only)
    accounts_csv: str | None = None  # kind, recipient_id, account; None -> derived demo accounts (dev chains only)
    pool_amount: int = 1_000_000 * 10**18
    value_method: str = "ddval"  # institution_values.csv method that weighs the institutions
    individual_share: float = 0.5  # share of each institution's reward passed on to its patients
    negative_values: Literal["zero", "error"] = "zero"  # clip negative values to 0, or reject them
    quorum: int = 2  # institutions that must attest the same allocation (a strict majority of the setting's)
    round_timeout_s: int = 24 * 3600  # a swarm round (and the features after training) closes without the silent
    max_val_loss: float = 100.0  # the registry refuses validation losses above this (no overflow, bounded sway)
    attestation_window_s: int = 7 * 24 * 3600  # after this, an unattested pool returns to the treasury
    claim_window_s: int = 7 * 24 * 3600
    sweep: bool = True  # dev chains: jump past the claim deadline and return leftovers to the treasury
    n_individuals: int = 20  # individuals that claim in the notebook
    recipient_counts: tuple[int, ...] = (10, 100, 1000, 10000)
    loop_batch_size: int = 1000  # recipients per transfer-loop transaction (fits a 30 M gas block)
    measure_all_up_to: int = 1000  # embedded chain: above this many recipients, measure a sample
    claims_all_up_to: int = 10  # embedded chain: above this many recipients, measure a sample of claims
    claim_sample: int = 20  # claims measured per recipient count when sampling


@dataclass(frozen=True)
class SlurmStageConfig:
    """Per-stage overrides of the SLURM resources; a field left ``None`` inherits from ``slurm:``."""

    partition: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    gpus: int | None = None
    time: str | None = None
    max_parallel: int | None = None


@dataclass(frozen=True)
class SlurmConfig:
    """Resources of the SLURM job arrays (``ddval submit``) and the task granularity of the manifest."""

    partition: str | None = None
    account: str | None = None
    cpus_per_task: int = 2
    mem: str = "4G"
    gpus: int = 0
    time: str = "01:00:00"
    max_parallel: int | None = None  # the %K of --array
    # per-stage overrides, keyed by manifest stage (index, resize, train, valuation-shard, valuation,
    # economy, figures): e.g. GPUs only for train/valuation, a short time limit for figures
    stages: dict[str, SlurmStageConfig] = field(default_factory=dict)
    # extra sbatch options passed verbatim to every job array (site specifics: --qos=..., --constraint=...)
    extra_args: tuple[str, ...] = ()
    # "coalition": one task per coalition (cluster); "setting": one task trains all coalitions of a
    # setting (a laptop: 2^n - 1 fewer kernel start-ups). Used by the local backend as well.
    train_tasks: Literal["coalition", "setting"] = "coalition"


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole preset. ``preset`` is the file stem; ``seeds`` are the repetitions."""

    preset: str
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    settings: tuple[SettingConfig, ...] = ()
    train: TrainConfig = field(default_factory=TrainConfig)
    valuation: ValuationConfig = field(default_factory=ValuationConfig)
    economy: EconomyConfig = field(default_factory=EconomyConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def setting(self, name: str) -> SettingConfig:
        """The setting called ``name``; a clear error lists the known ones."""
        for s in self.settings:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.settings) or "(none)"
        raise KeyError(f"preset {self.preset!r} has no setting {name!r}; known: {known}")

    def dataset_root(self, dataset: str) -> Path | None:
        """Root folder of a real dataset: environment variable, else ``data.roots`` (None: neither)."""
        return self.dataset_root_origin(dataset)[0]

    def dataset_root_origin(self, dataset: str) -> tuple[Path | None, str]:
        """Root folder of a real dataset and where it comes from, in words (the precedence rule:
        ``DDVAL_<DATASET>_ROOT`` when set and not empty, else ``data.roots.<dataset>``)."""
        var = ROOT_ENV_VARS[dataset]
        env, preset = os.environ.get(var), self.data.roots.get(dataset)
        if env:
            beaten = f"; it takes precedence over data.roots.{dataset} = {preset}" if preset else ""
            return Path(env).expanduser().absolute(), f"from ${var}{beaten}"
        if preset:
            return Path(preset).expanduser(), f"from data.roots.{dataset} of preset {self.preset!r} (${var} is not set)"
        return None, f"not configured: set ${var} or data.roots.{dataset}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for hashing and provenance; options that keep old hashes omitted at their default)."""
        return plain_data(self)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(preset: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a preset by name (``"demo"``) or path, apply ``overrides`` (nested dict), validate.

    Raises :class:`ConfigError` naming the file and key for unknown keys or wrong types.
    """
    path = preset_path(preset)
    raw = read_with_extends(path, seen=())
    if overrides:
        raw = merge(raw, overrides)
    raw.setdefault("preset", path.stem)
    cfg = build(ExperimentConfig, raw, where=str(path))
    _validate(cfg, str(path))
    return cfg


def preset_name(preset: str | os.PathLike) -> str:
    """The name results are filed under (``<results>/<name>/``) for a preset given by name or as a
    YAML file: the file's ``preset:`` key, else its stem."""
    return load_config(preset).preset if is_preset_file(preset) else str(preset)


def _validate(cfg: ExperimentConfig, where: str) -> None:
    unknown = [d for d in cfg.data.datasets if d not in DATASETS]
    if unknown:
        raise ConfigError(f"{where}: data.datasets has unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    bad_views = [v for v in cfg.data.views if v not in VIEWS]
    if bad_views or not cfg.data.views:
        raise ConfigError(f"{where}: data.views must list some of {list(VIEWS)}, got {list(cfg.data.views)}")
    names = [s.name for s in cfg.settings]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: setting names must be unique, got {names}")
    for s in cfg.settings:
        inst = [i.name for i in s.institutions]
        if len(set(inst)) != len(inst):
            raise ConfigError(f"{where}: settings.{s.name}: institution names must be unique, got {inst}")
        for i in s.institutions:
            if "+" in i.name or "/" in i.name:
                raise ConfigError(f"{where}: settings.{s.name}: institution name {i.name!r} may not contain '+' or '/'")
            if i.name.startswith(REPLICATE_PREFIX):  # the folder of a training replicate
                raise ConfigError(
                    f"{where}: settings.{s.name}: institution name {i.name!r} may not start with {REPLICATE_PREFIX!r}"
                )
            bad = [d for d in i.datasets if d not in cfg.data.datasets]
            if bad:
                raise ConfigError(f"{where}: settings.{s.name}.{i.name}: dataset(s) {bad} not in data.datasets")
            if not 0.0 <= i.flip_rate <= 1.0:
                raise ConfigError(f"{where}: settings.{s.name}.{i.name}: flip_rate {i.flip_rate} not in [0, 1]")
        if s.replicates is not None and s.replicates < 1:
            raise ConfigError(f"{where}: settings.{s.name}: replicates must be >= 1, got {s.replicates}")
    if cfg.train.replicates < 1:
        raise ConfigError(f"{where}: train.replicates must be >= 1, got {cfg.train.replicates}")
    if cfg.train.pretrain_epochs < 1:
        raise ConfigError(f"{where}: train.pretrain_epochs must be >= 1, got {cfg.train.pretrain_epochs}")
    if cfg.valuation.k < 1:
        raise ConfigError(f"{where}: valuation.k must be >= 1, got {cfg.valuation.k}")
    if not cfg.seeds:
        raise ConfigError(f"{where}: seeds must list at least one seed")
