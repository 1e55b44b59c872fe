"""What the economy stage reads, checked before anything is sent: the run-folder inputs and the rounds.

:func:`locate_inputs` finds the training and valuation outputs of one setting (``docs/tables.md``);
:func:`plan_rounds` validates ``rounds.csv`` and the per-round model files and mirrors the
``SwarmRegistry`` stopping rule, so that a table the chain would stop elsewhere on is refused up front.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pandas as pd

from ddval import layout
from ddval.config import ExperimentConfig
from ddval.economy import rewards

#: Validation losses go on chain as unsigned integers: round(loss * LOSS_SCALE). 1e18 keeps every
#: distinct float64 loss below 1 distinct, so the chain ranks rounds as the training stage does.
LOSS_SCALE = 10**18


class EconomyInputError(rewards.RewardError):
    """An input of the economy stage is missing or inconsistent; the message names the file."""


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """Paths of everything the stage reads."""

    institutions: tuple[str, ...]
    institution_values: Path
    point_values: Path
    rounds: Path
    round_models: Path  # <grand>/rounds/<r:03d>/<institution>.pt
    features: Path  # features/<institution>.npz

    def files(self) -> list[Path]:
        return [self.institution_values, self.point_values, self.rounds]


def locate_inputs(cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None) -> Inputs:
    """Where the training and valuation stages put this stage's inputs; a clear error if absent."""
    vdir = layout.valuation_dir(cfg, seed, setting, root)
    grand = layout.train_dir(cfg, seed, setting, root) / layout.grand_coalition_id(cfg, setting)
    inputs = Inputs(
        institutions=tuple(i.name for i in cfg.setting(setting).institutions),
        institution_values=vdir / "institution_values.csv",
        point_values=vdir / "point_values.parquet",
        rounds=grand / "rounds.csv",
        round_models=grand / "rounds",
        features=layout.features_dir(cfg, seed, setting, root),
    )
    for path, stage in ((inputs.rounds, "03_train"), (inputs.institution_values, "04_valuation"), (inputs.point_values, "04_valuation")):
        if not path.exists():
            raise EconomyInputError(f"{path}: not found; run notebook {stage} for preset {cfg.preset!r}, seed {seed}, setting {setting!r} first")
    return inputs


@dataclass(frozen=True)
class RoundPlan:
    """The swarm rounds to record: per round, per institution, the model file and integer loss."""

    rounds: tuple[int, ...]  # round numbers as in rounds.csv
    models: dict[tuple[int, str], Path]
    losses: dict[tuple[int, str], int]
    stop_index: int  # index into ``rounds`` of the round after which the on-chain rule stops


def plan_rounds(inputs: Inputs, patience: int, max_rounds: int) -> RoundPlan:
    """Validate ``rounds.csv`` and the model files; mirror the registry's stopping rule."""
    frame = pd.read_csv(inputs.rounds)
    src = str(inputs.rounds)
    rewards._require_columns(frame, ("round", "institution", "val_loss"), src)
    rounds = sorted(int(r) for r in frame["round"].unique())
    models, losses = {}, {}
    for idx, row in frame.iterrows():
        where = f"{src}: row {idx + 2}"
        name = row["institution"]
        if name not in inputs.institutions:
            raise EconomyInputError(f"{where}: institution {name!r} is not one of {list(inputs.institutions)}")
        loss = row["val_loss"]
        if not isinstance(loss, (int, float)) or not math.isfinite(loss) or loss < 0:
            raise EconomyInputError(f"{where}: field 'val_loss' is {loss!r}; expected a finite number >= 0")
        key = (int(row["round"]), name)
        if key in losses:
            raise EconomyInputError(f"{where}: round {key[0]} of {name!r} appears twice")
        losses[key] = round(Fraction(float(loss)) * LOSS_SCALE)
        path = inputs.round_models / f"{key[0]:03d}" / f"{name}.pt"
        if not path.exists():
            raise EconomyInputError(f"{path}: local model of {name!r} in round {key[0]} not found (listed in {src})")
        models[key] = path
    missing = [(r, i) for r in rounds for i in inputs.institutions if (r, i) not in losses]
    if missing:
        raise EconomyInputError(f"{src}: missing round records {missing[:5]}")
    means = [sum(losses[(r, i)] for i in inputs.institutions) // len(inputs.institutions) for r in rounds]
    stop = stopping_index(means, patience, max_rounds)
    if stop is None:
        raise EconomyInputError(
            f"{src}: {len(rounds)} rounds, but the stopping rule (patience {patience}, max {max_rounds} rounds) "
            "does not fire on them; was training stopped by another rule?"
        )
    if stop != len(rounds) - 1:
        raise EconomyInputError(f"{src}: the stopping rule fires after round {rounds[stop]}, but the table goes on to round {rounds[-1]}")
    return RoundPlan(tuple(rounds), models, losses, stop)


def stopping_index(mean_losses: Sequence[int], patience: int, max_rounds: int) -> int | None:
    """Index of the round after which ``SwarmRegistry`` stops (its rule, in Python), or None.

    The rule is the training stage's (:func:`ddval.train.rounds.should_stop`: stop after
    ``max_rounds`` rounds or once the first minimum is ``patience`` rounds old), but evaluated as
    the contract evaluates it: on the integer means ``floor(sum(round(loss * LOSS_SCALE)) / n)``.
    Those integers exceed float64's 2**53, where ``should_stop``'s float ``argmin`` could merge
    two distinct on-chain means and pick another best round; so the comparison here stays in
    Python integers (``tests/economy/test_registry.py`` checks it against the contract).
    """
    best, best_i = None, 0
    for i, mean in enumerate(mean_losses):
        if best is None or mean < best:
            best, best_i = mean, i
        if i - best_i >= patience or i + 1 >= max_rounds:
            return i
    return None
