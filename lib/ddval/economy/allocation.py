"""The allocation, computed one way by the operator and by every institution that checks it.

- :func:`points_from_features`: the DDVal value of every training point, from the institutions'
  feature files, with the valuation stage's own functions (pooling, the exact KNN-Shapley engine,
  the hierarchy's scaling). The engine is bit-identical across devices, chunks and shards, so an
  institution that recomputes gets the very floats of ``point_values.parquet``.
- :func:`allocation_from_points`: integer amounts per institution and individual
  (:mod:`ddval.economy.rewards`), from those point values.
- :func:`allocation_leaves`: the allocation table with accounts, and its Merkle leaves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fractions import Fraction

import pandas as pd

from ddval.economy import rewards
from ddval.economy.published import Policy


def points_from_features(files: Mapping[str, str | os.PathLike], policy: Policy, grand_utility: float) -> pd.DataFrame:
    """Point values (``point_values.parquet``'s columns) from one feature file per institution, in
    the setting's institution order (the order decides the pooled rows, hence the values)."""
    from ddval.valuation.features import read_features
    from ddval.valuation.hierarchy import pooled_point_table
    from ddval.valuation.pooled import knn_sum, label_values, pool_features

    feats = {name: read_features(path, name) for name, path in files.items()}
    pooled = pool_features(feats, policy.test_per_class)
    values = label_values(knn_sum(pooled, policy.k))
    return pooled_point_table(values, pooled, grand_utility)


def allocation_from_points(
    points: pd.DataFrame,
    institutions: Sequence[str],
    policy: Policy,
    institution_values: Mapping[str, Fraction] | None = None,
    *,
    source: str = "point_values.parquet",
) -> rewards.Allocation:
    """Amounts for every institution and patient: institutions weighed by ``institution_values``
    (default: DDVal's, the sums of ``points``), patients by the sums of their points."""
    inst = institution_values
    if inst is None:
        inst = rewards.institution_values_from_points(points, institutions, source=source)
    patients = rewards.patient_values(points, institutions, source=source)
    return rewards.allocate(
        inst,
        patients,
        policy.pool_amount,
        individual_share=Fraction(policy.individual_share),
        negative=policy.negative_values,
    )  # type: ignore[arg-type]


def allocation_leaves(
    allocation: rewards.Allocation, accounts: Mapping[str, str], *, source: str
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """``(table with an account column, Merkle leaves)``; an allocation that pays nobody is an error."""
    table = rewards.attach_accounts(allocation, accounts, source=source)
    leaves = rewards.leaves(table)
    if not leaves:
        raise rewards.RewardError("the allocation pays nobody (every value is zero or negative); nothing to post")
    return table, leaves
