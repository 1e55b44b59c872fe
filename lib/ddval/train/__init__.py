"""ddval.train: one FedAvg / swarm-learning model per coalition of institutions, and its utility.

Public entry points (see each module): :func:`run_training_stage`, :func:`load_utilities`,
:func:`load_curves`, :func:`load_model`, :func:`load_rounds`, :func:`build_model`,
:func:`feature_layer`, :func:`coalition_utility`.
"""

from ddval.train.coalitions import (
    EMPTY_COALITION_UTILITY,
    RoundHistory,
    all_coalitions,
    coalition_id,
    load_curves,
    load_model,
    load_rounds,
    load_setting_data,
    load_utilities,
    run_training_stage,
    setting_coalitions,
    test_sets,
    utility_map,
)
from ddval.train.aggregate import average_states, state_sha256
from ddval.train.checkpoints import CheckpointError
from ddval.train.fedavg import train_fedavg
from ddval.train.local import Client
from ddval.train.metrics import coalition_utility, evaluate, mean_auroc, per_label_auroc
from ddval.train.models import build_model, feature_layer
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
