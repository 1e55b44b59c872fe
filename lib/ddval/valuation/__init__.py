"""ddval.valuation: KNN-Shapley on deep features, exact Shapley ground truth, comparison metrics.

Array-level engine (stage code builds on these):

- :func:`knn_shapley` / :func:`knn_shapley_sum` (+ :class:`KnnShapleySum`): exact KNN-Shapley values
  (Jia et al. 2019), fast, memory-bounded, shardable over test points.
- :func:`exact_shapley`: Shapley values from a table of coalition utilities.
- :func:`similarity`, :func:`mean_ci`: agreement with the ground truth, Student-t intervals.

Stage 04 (notebook 04): :func:`run_valuation_stage` (:mod:`ddval.valuation.stage`), loaded on first
use so that ``import ddval.valuation`` stays free of torch; what the notebook displays is in
:mod:`ddval.valuation.views`.
"""

from typing import TYPE_CHECKING, Any

from ddval.valuation.compare import mean_ci, similarity
from ddval.valuation.knn_shapley import KnnShapleySum, knn_shapley, knn_shapley_loop, knn_shapley_sum
from ddval.valuation.shapley import exact_shapley

if TYPE_CHECKING:
    from ddval.valuation.stage import ValuationResult, run_valuation_stage

#: Names served lazily from :mod:`ddval.valuation.stage` (it imports torch).
_STAGE_NAMES = ("ValuationResult", "run_valuation_stage")


def __getattr__(name: str) -> Any:
    if name in _STAGE_NAMES:
        from ddval.valuation import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ValuationResult",
    "KnnShapleySum",
    "exact_shapley",
    "knn_shapley",
    "knn_shapley_loop",
    "knn_shapley_sum",
    "mean_ci",
    "run_valuation_stage",
    "similarity",
]
