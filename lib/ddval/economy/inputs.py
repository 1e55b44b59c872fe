"""What the economy stage reads, checked before anything is sent: the run-folder inputs and the rounds.

:func:`locate_inputs` finds the training and valuation outputs of one setting (``docs/tables.md``);
:func:`plan_rounds` validates ``rounds.csv`` and the per-round model files and mirrors the
``SwarmRegistry`` stopping rule, so that a table the chain would stop elsewhere on is refused up front.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.economy import rewards

#: Validation losses go on chain as unsigned integers: round(loss * LOSS_SCALE). 1e18 keeps every
#: distinct float64 loss below 1 distinct, so the chain ranks rounds as the training stage does.
LOSS_SCALE = 10**18


class EconomyInputError(rewards.RewardError):
    """An input of the economy stage is missing or inconsistent; the message names the file."""


# ---------------------------------------------------------------------------- inputs


#: The columns of each input table that the stage consumes: only they go into its input digest, so a
#: recomputation that changes nothing else (``wall_time_s``, a new method's rows) does not redeploy.
CONSUMED = {
    "institution_values": ("method", "institution", "value"),
    "point_values": ("institution", "patient_id", "value"),
    "rounds": ("round", "institution", "val_loss"),
    "utilities": ("coalition", "label", "auroc"),
}


@dataclass(frozen=True)
class Inputs:
    """Paths of everything the stage reads."""

    institutions: tuple[str, ...]
    institution_values: Path
    point_values: Path
    rounds: Path
    round_models: Path  # <grand>/rounds/<r:03d>/<institution>.pt
    features: Path  # features/<institution>.npz
    utilities: Path  # <S>/train/utilities.csv (the grand coalition's utility scales the values)

    def feature_file(self, institution: str) -> Path:
        return self.features / f"{institution}.npz"

    def digests(self) -> dict[str, str]:
        """SHA-256 of the consumed columns of every input table, and of every feature file (pinned as is)."""
        out = {}
        for name, columns in CONSUMED.items():
            path = getattr(self, name)
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            rewards._require_columns(frame, columns, str(path))
            out[path.name] = columns_sha256(frame, columns)
        out.update({f"features/{i}.npz": store.file_sha256(self.feature_file(i)) for i in self.institutions})
        return out


def columns_sha256(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """SHA-256 of ``columns`` of ``frame`` (names, then values: float64 bytes or UTF-8 text)."""
    digest = hashlib.sha256()
    for col in columns:
        values = frame[col].to_numpy()
        digest.update(col.encode() + b"\0")
        if np.issubdtype(values.dtype, np.number):
            digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
        else:
            digest.update("\0".join(map(str, values)).encode())
    return digest.hexdigest()


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
        utilities=layout.train_dir(cfg, seed, setting, root) / "utilities.csv",
    )
    required = [
        (inputs.rounds, "03_train"),
        (inputs.utilities, "03_train"),
        (inputs.institution_values, "04_valuation"),
        (inputs.point_values, "04_valuation"),
    ]
    required += [(inputs.feature_file(i), "04_valuation") for i in inputs.institutions]
    for path, stage in required:
        if not path.exists():
            raise EconomyInputError(
                f"{path}: not found; run notebook {stage} for preset {cfg.preset!r}, seed {seed}, "
                f"setting {setting!r} first"
            )
    return inputs


@dataclass(frozen=True)
class RoundPlan:
    """The swarm rounds to record: per round, per institution, the model file and integer loss."""

    rounds: tuple[int, ...]  # round numbers as in rounds.csv
    models: dict[tuple[int, str], Path]
    losses: dict[tuple[int, str], int]
    stop_index: int  # index into ``rounds`` of the round after which the on-chain rule stops


def grand_utility(inputs: Inputs, grand: str) -> float:
    """The grand coalition's mean AUROC from ``utilities.csv`` (what scaled the DDVal values)."""
    frame = pd.read_csv(inputs.utilities)
    rows = frame[(frame["label"] == "mean") & (frame["coalition"] == grand)]
    if len(rows) != 1 or not math.isfinite(float(rows["auroc"].iloc[0])):
        raise EconomyInputError(
            f"{inputs.utilities}: expected one finite 'mean' utility of coalition {grand!r}, found {len(rows)} row(s)"
        )
    return float(rows["auroc"].iloc[0])


def plan_rounds(inputs: Inputs, patience: int, max_rounds: int, max_loss: int | None = None) -> RoundPlan:
    """Validate ``rounds.csv`` and the model files; mirror the registry's stopping rule. ``max_loss``:
    the registry's bound on the integer losses (a larger one is an error here, before sending)."""
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
        if max_loss is not None and losses[key] > max_loss:
            bound = max_loss / LOSS_SCALE
            raise EconomyInputError(f"{where}: field 'val_loss' is {loss!r}, above economy.max_val_loss ({bound:g})")
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
        raise EconomyInputError(
            f"{src}: the stopping rule fires after round {rounds[stop]}, but the table goes on to round {rounds[-1]}"
        )
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
