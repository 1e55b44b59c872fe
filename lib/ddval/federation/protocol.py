"""The messages between the ddval ServerApp and a site's ClientApp (Flower's Message API).

=====================  ===========================================  ===============================================
message type           server → site                                site → server
=====================  ===========================================  ===============================================
``query.describe``     ``job``: config hash, preset, seed, setting  ``site``: institution, sizes of its splits,
                                                                    digest of its partition rows
``train``              ``arrays``: global model ``G^{r-1}``;        ``arrays``: local model ``L^r``; ``metrics``:
                       ``config``: round, seed                      train loss, number of training scans
``evaluate``           ``arrays``: merged model ``G^r``             ``metrics``: validation loss (mean BCE)
``evaluate.test``      ``arrays``: the best model                   ``metrics``: AUROC per label and mean on its
                                                                    test set
``query.features``     ``arrays``: the best model;                  ``features``: its feature file (train and
                       ``config``: DP noise scale                   test features, labels, ids, demographics)
=====================  ===========================================  ===============================================

Model states travel as Flower ``ArrayRecord``\\ s of the full ``state_dict`` (BatchNorm buffers and
counters included); every array keeps its dtype and bytes, so a state arrives bit-identical. A feature
file travels as its own bytes (ddval's ``.npz`` format), so the server stores exactly what the site
wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

import numpy as np
import torch

from ddval.config import ExperimentConfig

DESCRIBE = "query.describe"
TRAIN = "train"
VALIDATE = "evaluate"
TEST = "evaluate.test"
FEATURES = "query.features"

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
JOB = "job"
SITE = "site"
FEATURE_FILE = "features"


def config_sha256(cfg: ExperimentConfig) -> str:
    """Hash of the resolved experiment config: server and sites must train under the same one."""
    blob = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def state_to_arrays(state: Mapping[str, torch.Tensor]):
    """A ``state_dict`` as a Flower ``ArrayRecord`` (keys, order, dtypes and bytes kept)."""
    from flwr.app import ArrayRecord

    return ArrayRecord(torch_state_dict=dict(state))


def arrays_to_state(record) -> dict[str, torch.Tensor]:
    """The ``state_dict`` carried by an ``ArrayRecord`` of :func:`state_to_arrays`."""
    return dict(record.to_torch_state_dict())


def bytes_to_array(blob: bytes) -> np.ndarray:
    """A byte string as a ``uint8`` array (how a feature file travels)."""
    return np.frombuffer(blob, dtype=np.uint8).copy()
