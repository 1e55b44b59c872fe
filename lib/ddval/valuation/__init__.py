"""ddval.valuation: KNN-Shapley on deep features, exact Shapley ground truth, comparison metrics.

Array-level engine (stage code builds on these):

- :func:`knn_shapley` / :func:`knn_shapley_sum` (+ :class:`KnnShapleySum`): exact KNN-Shapley values
  (Jia et al. 2019), fast, memory-bounded, shardable over test points.
- :func:`exact_shapley`: Shapley values from a table of coalition utilities.
- :func:`similarity`, :func:`mean_ci`: agreement with the ground truth, Student-t intervals.
"""

from ddval.valuation.compare import mean_ci, similarity
from ddval.valuation.knn_shapley import KnnShapleySum, knn_shapley, knn_shapley_loop, knn_shapley_sum
from ddval.valuation.shapley import exact_shapley

__all__ = [
    "KnnShapleySum",
    "exact_shapley",
    "knn_shapley",
    "knn_shapley_loop",
    "knn_shapley_sum",
    "mean_ci",
    "similarity",
]
