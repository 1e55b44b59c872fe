"""ddval.train: one FedAvg / swarm-learning model per coalition of institutions, and its utility.

The stage runs from :func:`run_training_stage` (``ddval.train.stage``); its outputs are read back
with :func:`load_utilities`, :func:`load_curves`, :func:`load_model` and :func:`load_rounds`
(``ddval.train.results``; ``replicate=r`` reads training replicate ``r`` of ``train.replicates``, which
retrains every coalition with other training randomness for the ground truth's mean and noise ceiling);
what notebook 03 displays is in ``ddval.train.views``. The pieces a
training is made of live in small modules: the local trainer (``local``), the state arithmetic
shared by FedAvg, swarm learning, the OR reconstructions and the Flower app (``aggregate``), round
bookkeeping (``rounds``), checkpoints (``checkpoints``), FedAvg (``fedavg``), swarm learning
(``swarm``), models (``models``) and metrics (``metrics``).
"""

from ddval.layout import all_coalitions, coalition_id, setting_coalitions
from ddval.train.aggregate import average_states, state_sha256
from ddval.train.checkpoints import CheckpointError
from ddval.train.fedavg import train_fedavg
from ddval.train.local import Client
from ddval.train.metrics import coalition_utility, evaluate, mean_auroc, per_label_auroc
from ddval.train.models import build_model, feature_layer
from ddval.train.results import (
    EMPTY_COALITION_UTILITY,
    RoundHistory,
    load_curves,
    load_model,
    load_rounds,
    load_utilities,
    test_sets,
    utility_map,
)
from ddval.train.setting_data import load_setting_data
from ddval.train.stage import run_training_stage
from ddval.train.swarm import train_swarm

__all__ = [
    "EMPTY_COALITION_UTILITY",
    "CheckpointError",
    "Client",
    "RoundHistory",
    "all_coalitions",
    "average_states",
    "build_model",
    "coalition_id",
    "coalition_utility",
    "evaluate",
    "feature_layer",
    "load_curves",
    "load_model",
    "load_rounds",
    "load_setting_data",
    "load_utilities",
    "mean_auroc",
    "per_label_auroc",
    "run_training_stage",
    "setting_coalitions",
    "state_sha256",
    "test_sets",
    "train_fedavg",
    "train_swarm",
    "utility_map",
]
