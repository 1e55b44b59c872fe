"""What a preset's ``valuation:`` section says for each method: the KNN engine's options, GTG-Shapley's
knobs, the parameters a method's stored result depends on, and DDVal's label values with those options.

Shared by :mod:`ddval.valuation.stage` and :mod:`ddval.valuation.experiments` (neither imports the other).
"""

from __future__ import annotations

import numpy as np

from ddval.config import ExperimentConfig
from ddval.valuation.baselines import GTGOptions
from ddval.valuation.pooled import PooledFeatures, knn_sum, label_values

#: ``valuation.gtg_*`` fields, in :class:`~ddval.valuation.baselines.GTGOptions` order.
GTG_FIELDS = (
    "gtg_eps",
    "gtg_round_trunc",
    "gtg_max_permutations",
    "gtg_min_permutations",
    "gtg_converge_tol",
    "gtg_converge_window",
)


def knn_options(cfg: ExperimentConfig) -> dict:
    """The engine's options from ``valuation.device / chunk / threads / memory_budget_mb``."""
    v = cfg.valuation
    return {"device": v.device, "chunk": v.chunk, "threads": v.threads or None, "memory_budget_mb": v.memory_budget_mb}


def gtg_options(cfg: ExperimentConfig) -> GTGOptions:
    """GTG-Shapley's options from ``valuation.gtg_*``."""
    return GTGOptions(*(getattr(cfg.valuation, name) for name in GTG_FIELDS))


def method_options(cfg: ExperimentConfig, method: str) -> dict:
    """The config values a baseline's result depends on (part of its stage parameters)."""
    v = cfg.valuation
    return {
        "exact": {},
        "or": {"batchnorm": v.or_batchnorm},
        "mr": {},
        "lambda_mr": {"lambda": v.lambda_mr},
        "gtg": {name: getattr(v, name) for name in GTG_FIELDS},
        "safe": {"alphas": list(v.safe_alphas)},
    }[method]


def ddval_label_values(cfg: ExperimentConfig, pooled: PooledFeatures) -> np.ndarray:
    """DDVal's ``(N, 8)`` KNN-Shapley values per train point and label of ``pooled``, with the
    preset's ``valuation.k`` and engine options (used by the DP and scalability experiments)."""
    return label_values(knn_sum(pooled, cfg.valuation.k, **knn_options(cfg)))
