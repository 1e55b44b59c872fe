"""ddval.federation: one setting trained and valued as a real federation on Flower (``flwr``).

Each institution runs a Flower SuperNode on its own machine with only its own data root
(:mod:`ddval.federation.sites`); a SuperLink connects them, and ``flwr run`` starts the app:

* the **ClientApp** (:mod:`ddval.federation.client_app`) trains locally with ddval's local trainer
  (:mod:`ddval.train.local`), reports validation and test scores of the models it is sent, and at the
  end returns its deep features in ddval's feature-file format (:mod:`ddval.valuation.features`);
* the **ServerApp** (:mod:`ddval.federation.server_app`) averages with ddval's FedAvg arithmetic
  (:mod:`ddval.train.aggregate`), stops on the mean validation loss as the in-process trainer does,
  records every round (``rounds.csv`` for the token economy) and values the received features with
  DDVal (:mod:`ddval.federation.valuation`), writing the normal run-folder layout.

Only model states, losses, AUROCs and feature files leave a site; scans, labels of single images
beyond the feature files, and the partition never do (``docs/threat_model.md``). The message
protocol is in :mod:`ddval.federation.protocol`; :mod:`ddval.federation.launch` starts a SuperLink and
SuperNodes on one machine (tests, benchmarks, ``ddval federate``).

Importing this package sets ``FLWR_TELEMETRY_ENABLED=0`` unless it is set: Flower otherwise reports
usage events to its makers, which a hospital network must not do unasked.
"""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
