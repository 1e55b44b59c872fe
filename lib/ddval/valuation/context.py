"""The inputs of one trained setting that the valuation methods read, loaded once and on demand.

:class:`SettingInputs` is what :mod:`ddval.valuation.stage` builds per setting and hands to every
method and to :mod:`ddval.valuation.experiments`: the institutions' shared features (and their pooled
form), the coalition utilities of the training stage (of every training replicate), the partition, the
grand coalition's recorded rounds, and a model evaluator on the test sets. Each is read from the run
folder the first time it is asked for (a method that needs no model never loads one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ddval.config import ExperimentConfig
from ddval.layout import setting_replicates
from ddval.valuation.features import InstitutionFeatures, load_features
from ddval.valuation.pooled import PooledFeatures, pool_features

if TYPE_CHECKING:
    from ddval.train import RoundHistory
    from ddval.valuation.reconstruct import ModelGames, UtilityEvaluator


@dataclass
class SettingInputs:
    """Lazily loaded inputs of setting ``setting`` of ``seed`` under results root ``root``."""

    cfg: ExperimentConfig
    seed: int
    setting: str
    root: str | os.PathLike | None = None
    players: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.players = [i.name for i in self.cfg.setting(self.setting).institutions]

    @cached_property
    def feats(self) -> dict[str, InstitutionFeatures]:
        """Every institution's shared train and test features (the features stage runs if needed)."""
        return load_features(self.cfg, self.seed, self.setting, self.root)

    @cached_property
    def pooled(self) -> PooledFeatures:
        """The pooled DDVal problem (train rows of all institutions, balanced test sets)."""
        return pool_features(self.feats, self.cfg.valuation.test_per_class)

    @cached_property
    def utility(self) -> dict[frozenset[str], float]:
        """``frozenset(members) → utility`` of the retrained coalitions (the empty one included)."""
        from ddval.train import load_utilities, utility_map

        return utility_map(load_utilities(self.cfg, self.seed, self.setting, self.root))

    @cached_property
    def replicate_utilities(self) -> dict[int, dict[frozenset[str], float]]:
        """Training replicate → ``frozenset(members) → utility``, the input of
        :mod:`ddval.valuation.ground_truth`: replicate 0 is :attr:`utility` (the training whose grand
        model DDVal and the baselines read), replicates ``1 .. train.replicates - 1`` retrain every
        coalition with other training randomness (:mod:`ddval.train.record`)."""
        from ddval.train import load_utilities, utility_map

        out = {0: self.utility}
        for r in range(1, setting_replicates(self.cfg, self.setting)):
            out[r] = utility_map(load_utilities(self.cfg, self.seed, self.setting, self.root, replicate=r))
        return out

    def replicate_curves(self) -> pd.DataFrame:
        """Training curves of every coalition and replicate (column ``replicate`` added)."""
        from ddval.train import load_curves

        frames = [
            load_curves(self.cfg, self.seed, self.setting, root=self.root, replicate=r).assign(replicate=r)
            for r in range(setting_replicates(self.cfg, self.setting))
        ]
        return pd.concat(frames, ignore_index=True)

    @property
    def grand_utility(self) -> float:
        """The grand coalition's utility (mean macro-AUROC over the test sets)."""
        return self.utility[frozenset(self.players)]

    @cached_property
    def partition(self) -> pd.DataFrame:
        """The setting's partition (one row per scan: institution, split, labels, flips)."""
        from ddval.data.splits import load_partition

        return load_partition(self.cfg, self.seed, self.setting, root=self.root)

    @cached_property
    def history(self) -> RoundHistory:
        """The grand coalition's recorded rounds (global and per-institution states)."""
        from ddval.train import load_rounds

        return load_rounds(self.cfg, self.seed, self.setting, self.root)

    @cached_property
    def evaluator(self) -> UtilityEvaluator:
        """Scores a model state with the training stage's utility on the setting's test sets."""
        from ddval.train import load_model
        from ddval.valuation.reconstruct import UtilityEvaluator, test_tensors

        model = load_model(self.cfg, self.seed, self.setting, root=self.root)
        return UtilityEvaluator(model, test_tensors(self.partition, self.players, self.cfg.data.image_size))

    @cached_property
    def games(self) -> ModelGames:
        """Utilities of the models rebuilt from the recorded rounds (OR, λ-MR, GTG-Shapley), scored once."""
        from ddval.valuation.reconstruct import ModelGames

        return ModelGames(self.history, self.evaluator)

    def n_flipped(self) -> np.ndarray:
        """Flipped-label count of every pooled train point (joined on institution and scan id)."""
        train = self.partition[self.partition["split"] == "train"].set_index(["institution", "scan_id"])["n_flipped"]
        keys = pd.MultiIndex.from_arrays([self.pooled.institution, self.pooled.scan_id])
        return train.reindex(keys).fillna(0).to_numpy(dtype=np.int64)
