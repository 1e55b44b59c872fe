"""ddval: reproducibility package for DDVal (Pandl et al., arXiv 2305.01657).

Stages: ``ddval.data`` (index, resize, partition) -> ``ddval.train`` (coalitions) ->
``ddval.valuation`` (features, KNN-Shapley, baselines) -> ``ddval.economy`` (chain, IPFS,
payouts) -> ``ddval.plots`` / ``ddval.plots_economy``. The architecture (data flow, where each concept
lives, the rules the code keeps): docs/architecture.md in the repository.
"""

from ddval import numerics as _numerics

__version__ = "0.1.0"

# pin PyTorch's CPU kernels before any ddval module imports torch (ddval.numerics says why)
_numerics.configure_environment()
