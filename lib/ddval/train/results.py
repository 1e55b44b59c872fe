"""Readers of the training stage's outputs: coalition utilities, training curves, trained models,
the grand coalition's recorded rounds and the test sets utilities are measured on.

Every reader checks that what it reads was trained with the current config (the coalition's stage
record, ``ddval.train.stage``); a missing or stale coalition is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from ddval import store
from ddval.config import ExperimentConfig
from ddval.layout import coalition_dir, coalition_id, parse_coalition, replicate_train_dir
from ddval.train.aggregate import State
from ddval.train.checkpoints import load_checkpoint
from ddval.train.models import build_model
from ddval.train.record import STAGE, round_path
from ddval.train.setting_data import load_setting_data
from ddval.train.stage import assemble_if_complete, coalition_params, coalition_status, stage_scope

#: Worth of the empty coalition (a random classifier's AUROC).
EMPTY_COALITION_UTILITY = 0.5


def test_sets(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None
) -> dict[str, Dataset]:
    """Every institution's test set of ``setting`` (what a coalition utility is measured on)."""
    return load_setting_data(cfg, seed, setting, root).test


def _require_complete(cfg: ExperimentConfig, seed: int, setting: str, root, replicate: int = 0) -> Path:
    """The replicate's training folder, its tables assembled; an error names the coalitions not trained."""
    from ddval.data.splits import load_partition

    partition = load_partition(cfg, seed, setting, root=root)
    status = coalition_status(cfg, seed, setting, partition, root, replicate)
    missing = [f"{coalition_id(m)} ({s})" for m, (s, _) in status.items() if s != "complete"]
    tdir = replicate_train_dir(cfg, seed, setting, replicate, root)
    if missing:
        which = f", replicate={replicate}" if replicate else ""
        raise FileNotFoundError(
            f"{tdir}: coalitions not trained with the current config: {', '.join(missing)}; "
            f"run ddval.train.run_training_stage(cfg, {seed}, {setting!r}{which}) (or notebook 03) first"
        )
    assemble_if_complete(cfg, seed, setting, partition, root, replicate)
    return tdir


def load_utilities(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None, replicate: int = 0
) -> pd.DataFrame:
    """The ``utilities.csv`` of a setting's training replicate (every coalition × label + ``mean``); a clear
    error names the coalitions that are missing or were trained with another config."""
    return store.read_table(_require_complete(cfg, seed, setting, root, replicate) / "utilities.csv")


def load_curves(
    cfg: ExperimentConfig,
    seed: int,
    setting: str | None = None,
    coalition: str | Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    replicate: int = 0,
) -> pd.DataFrame:
    """Training curves (coalition × round: ``train_loss, val_loss, is_best``) of the same scope as
    :func:`run_training_stage` (every setting, one setting, or one coalition of it) in one training
    replicate; a coalition not trained with the current config is an error naming it."""
    from ddval.data.splits import load_partition

    frames, missing, partitions = [], [], {}
    for name, members in stage_scope(cfg, setting, coalition):
        if name not in partitions:
            partitions[name] = load_partition(cfg, seed, name, root=root)
        cdir = coalition_dir(cfg, seed, name, members, root, replicate)
        params = coalition_params(cfg, seed, name, members, partitions[name], replicate)
        status = store.stage_status(cdir, STAGE, params)
        if status != "complete":
            missing.append(f"{name}/{coalition_id(members)} ({status})")
        else:
            frames.append(store.read_table(cdir / "curve.csv"))
    if missing:
        raise FileNotFoundError(
            f"coalitions not trained with the current config{f' (replicate {replicate})' if replicate else ''}: "
            f"{', '.join(missing)}; "
            "run ddval.train.run_training_stage first"
        )
    return pd.concat(frames, ignore_index=True)


def utility_map(utilities: pd.DataFrame) -> dict[frozenset[str], float]:
    """``frozenset(members) → utility`` from a utilities table, the empty coalition (0.5) included —
    the input of ``ddval.valuation.exact_shapley``."""
    means = utilities[utilities["label"] == "mean"]
    out = {frozenset(): EMPTY_COALITION_UTILITY}
    out.update({frozenset(str(c).split("+")): float(u) for c, u in zip(means["coalition"], means["auroc"])})
    return out


def _checked_members(cfg: ExperimentConfig, setting: str, coalition: str | Sequence[str] | None) -> tuple[str, ...]:
    s = cfg.setting(setting)
    return tuple(i.name for i in s.institutions) if coalition is None else parse_coalition(s, coalition)


def load_model(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    coalition: str | Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
) -> nn.Module:
    """The best model of ``coalition`` (the grand coalition by default), on the CPU in eval mode.
    A model trained with another config, or a corrupt file, raises an error."""
    from ddval.data.splits import load_partition

    members = _checked_members(cfg, setting, coalition)
    cdir = coalition_dir(cfg, seed, setting, members, root)
    params = coalition_params(cfg, seed, setting, members, load_partition(cfg, seed, setting, root=root))
    status, why = store.stage_check(cdir, STAGE, params)
    if status != "complete":
        raise FileNotFoundError(
            f"{cdir}: coalition {coalition_id(members)} is {status} for the current config ({why}); "
            "run the training stage first"
        )
    saved = load_checkpoint(cdir / "best.pt", store.param_hash(params))
    model = build_model(cfg.train)
    model.load_state_dict(saved["state"])
    return model.eval()


# --------------------------------------------------------------------------------------------
# Recorded rounds of the grand coalition (for OR, λ-MR, GTG-Shapley)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundHistory:
    """The grand coalition's training, round by round: ``global_state(r)`` is the global model after
    round ``r`` (``r = 0``: the initial model), ``local_state(r, name)`` is institution ``name``'s
    local model trained in round ``r`` from ``global_state(r - 1)``. States load lazily from disk."""

    directory: Path
    params_hash: str
    institutions: tuple[str, ...]
    n_train: dict[str, int]
    weighted: bool
    n_rounds: int
    best_round: int

    def global_state(self, round_no: int) -> State:
        return self._load(round_no, "global")

    def local_state(self, round_no: int, institution: str) -> State:
        if institution not in self.institutions:
            raise KeyError(f"no institution {institution!r}; known: {list(self.institutions)}")
        if round_no < 1:
            raise ValueError("local models exist for rounds >= 1")
        return self._load(round_no, institution)

    def local_states(self, round_no: int) -> dict[str, State]:
        return {name: self.local_state(round_no, name) for name in self.institutions}

    def aggregation_weights(self, members: Sequence[str]) -> list[float] | None:
        """The FedAvg weights training used for ``members`` (``None``: unweighted)."""
        return [float(self.n_train[m]) for m in members] if self.weighted else None

    @cached_property
    def curve(self) -> pd.DataFrame:
        return store.read_table(self.directory / "curve.csv")

    def _load(self, round_no: int, who: str) -> State:
        if not 0 <= round_no <= self.n_rounds:
            raise ValueError(f"round {round_no} not in 0..{self.n_rounds}")
        return load_checkpoint(round_path(self.directory, round_no, who), self.params_hash)["state"]


def load_rounds(cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None) -> RoundHistory:
    """The recorded rounds (global and per-institution states) of the setting's grand coalition."""
    from ddval.data.splits import load_partition

    s = cfg.setting(setting)
    members = tuple(i.name for i in s.institutions)
    partition = load_partition(cfg, seed, setting, root=root)
    params = coalition_params(cfg, seed, setting, members, partition)
    cdir = coalition_dir(cfg, seed, setting, members, root)
    status = store.stage_status(cdir, STAGE, params)
    if status != "complete":
        raise FileNotFoundError(
            f"{cdir}: the grand coalition is {status} for the current config; run the training stage first"
        )
    best = load_checkpoint(cdir / "best.pt", store.param_hash(params))
    curve = store.read_table(cdir / "curve.csv")
    train = partition[partition["split"] == "train"]
    return RoundHistory(
        directory=cdir,
        params_hash=store.param_hash(params),
        institutions=members,
        n_train={m: int((train["institution"] == m).sum()) for m in members},
        weighted=cfg.train.weighted,
        n_rounds=int(curve["round"].max()),
        best_round=int(best["best_round"]),
    )
