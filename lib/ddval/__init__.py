"""ddval: reproducibility package for DDVal (Pandl et al., arXiv 2305.01657).

Stages: ``ddval.data`` (index, resize, partition) -> ``ddval.train`` (coalitions) ->
``ddval.valuation`` (features, KNN-Shapley, baselines) -> ``ddval.economy`` (chain, IPFS,
payouts) -> ``ddval.plots``. See DESIGN.md for the data flow.
"""

__version__ = "0.1.0"
