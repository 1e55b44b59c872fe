"""What training one coalition leaves in the run folder, however it was trained (in process, or as
a Flower federation): the best model, its tables and, for the grand coalition, every round's states.

``<S>/train/<coalition>/``::

    best.pt                                     best round's global model (+ params hash)
    auroc.csv  auroc_per_test_set.csv  curve.csv  rounds.csv  timing.json
    checkpoint.pt                               resume state while training (removed when done)
    rounds/000/global.pt                        grand coalition: the initial model; for r >= 1
    rounds/<r>/global.pt, rounds/<r>/<inst>.pt  the merged model and every institution's local model

A training replicate ``r >= 1`` (``train.replicates``) retrains the coalition on the same partition with
the training randomness of :func:`training_seed` (initial model, batch order, augmentation) in
``<S>/train/replicate-<r>/<coalition>/`` and keeps only what the ground truth reads: the tables and
``timing.json`` (no ``best.pt``, no recorded rounds: DDVal and the baselines use replicate 0's models).

A coalition is a stage of :mod:`ddval.store` (``.train.done.json``): the record is written last, so a
coalition killed half-way is never taken as done; its checkpoint lets the next run resume.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ddval import store
from ddval.config import LABELS, ExperimentConfig
from ddval.layout import coalition_dir, coalition_id
from ddval.repro import seed_everything
from ddval.train.aggregate import State
from ddval.train.checkpoints import save_checkpoint
from ddval.train.fedavg import train_rounds
from ddval.train.local import clone_state, derive_seed, resolve_device
from ddval.train.metrics import Utility
from ddval.train.models import build_model
from ddval.train.pretrain import start_from
from ddval.train.rounds import RoundFn, RoundRecord

log = logging.getLogger(__name__)

#: The stage name of a trained coalition (its record is ``<coalition>/.train.done.json``).
STAGE = "train"


def training_seed(seed: int, replicate: int) -> int:
    """The seed of a training replicate's randomness: ``seed`` itself for replicate 0 (so a run without
    replicates is unchanged), an independent stream from the seed material ``(seed, replicate)`` for the
    others. The partition is that of ``seed`` in every replicate."""
    return seed if replicate == 0 else derive_seed(seed, "replicate", replicate)


def record_coalition(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    members: Sequence[str],
    params: dict[str, Any],
    clients: Sequence[Any],
    round_fn: RoundFn,
    score: Callable[[nn.Module, torch.device], Utility],
    root: str | os.PathLike | None = None,
    replicate: int = 0,
    backbone: State | None = None,
) -> store.StageResult:
    """Train one coalition with ``round_fn`` and record it in the run folder (skipped when done,
    resumed from its checkpoint when half done): the best model, its tables and, for the grand
    coalition, every round's states (replicate ``r >= 1``: only the tables, see the module docstring).

    Args:
        cfg: the experiment.
        seed: the run's seed.
        setting: the setting.
        members: the coalition, in config order.
        params: what the coalition's model depends on (its hash stamps every file).
        clients: one per member, in order (``name`` and ``n_train``; in process a
            :class:`~ddval.train.local.Client`, in a federation a remote site).
        round_fn: one communication round (FedAvg, swarm learning, or a federated round).
        score: the utility of the trained model (on every member's test set).
        root: results root.
        replicate: the training replicate (``0 <= replicate < train.replicates``).
        backbone: the pretrained backbone every coalition starts from (:mod:`ddval.train.pretrain`; its
            hash must be in ``params``), or ``None``: the seeded initial model as it is.

    Returns:
        The store's record of the stage.
    """
    members = tuple(members)
    cdir = coalition_dir(cfg, seed, setting, members, root, replicate)
    h = store.param_hash(params)
    if store.stage_status(cdir, STAGE, params) == "stale":
        log.warning("%s was trained with other parameters; retraining it", cdir)
        _clear_models(cdir)
    # the baselines read the recorded rounds of replicate 0's grand coalition only
    grand = members == tuple(i.name for i in cfg.setting(setting).institutions) and replicate == 0
    run_seed = training_seed(seed, replicate)

    def compute() -> list[Path]:
        started, cpu_started = time.perf_counter(), time.process_time()
        seed_everything(run_seed, threads=cfg.train.threads)
        device = resolve_device(cfg.train)
        torch.manual_seed(derive_seed(run_seed, "init"))  # the same initial model for every coalition of a replicate
        model = build_model(cfg.train)
        start_from(model, backbone)  # the head keeps the replicate's seeded initialisation
        model = model.to(device)
        checkpoint = cdir / "checkpoint.pt"
        on_round = None
        if grand:
            if not checkpoint.exists():
                shutil.rmtree(cdir / "rounds", ignore_errors=True)  # leftovers of an older run
                save_round_state(cdir, 0, "global", clone_state(model), h)
            on_round = lambda record: save_round(cdir, record, h)  # noqa: E731
        result = train_rounds(
            model,
            clients,
            cfg.train,
            seed=run_seed,
            round_fn=round_fn,
            checkpoint=checkpoint,
            params_hash=h,
            on_round=on_round,
            desc=f"{setting} {coalition_id(members)}" + (f" replicate {replicate}" if replicate else ""),
        )
        utility = score(model, device)
        written = write_coalition_tables(cdir, cfg, seed, setting, members, result, utility)
        if replicate == 0:  # replicates keep their utilities, not their models (disk)
            best = {"state": result.best_state, "best_round": result.best_round, "members": list(members)}
            save_checkpoint(cdir / "best.pt", best, h)
        checkpoint.unlink(missing_ok=True)  # the loop state is no longer needed
        # timings live apart from the tables, which must be identical run to run
        timing = {
            "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started,
            "rounds": len(result.history),
            "device": str(device),
        }
        outputs = [store.write_json(cdir / "timing.json", timing), *written]
        if replicate == 0:
            outputs.insert(0, cdir / "best.pt")
        if grand:  # every recorded state is an output: a lost one makes the stage incomplete
            outputs += [round_path(cdir, 0, "global")]
            outputs += [
                round_path(cdir, r, who) for r in range(1, len(result.history) + 1) for who in ("global", *members)
            ]
        return outputs

    return store.run_stage(cdir, STAGE, params, compute)


def _clear_models(cdir: Path) -> None:
    for name in ("checkpoint.pt", "best.pt"):
        (cdir / name).unlink(missing_ok=True)
    shutil.rmtree(cdir / "rounds", ignore_errors=True)


def round_path(cdir: Path, round_no: int, who: str) -> Path:
    return cdir / "rounds" / f"{round_no:03d}" / f"{who}.pt"


def save_round_state(cdir: Path, round_no: int, who: str, state: State, params_hash: str) -> None:
    """Keep one recorded state (``who`` = ``global`` or an institution) of round ``round_no``."""
    save_checkpoint(round_path(cdir, round_no, who), {"state": state, "round": round_no, "who": who}, params_hash)


def save_round(cdir: Path, record: RoundRecord, params_hash: str) -> None:
    """Keep a round of the grand coalition: the merged model and every institution's local model."""
    save_round_state(cdir, record.round, "global", record.merged_state, params_hash)
    for name, state in record.local_states.items():
        save_round_state(cdir, record.round, name, state, params_hash)


def write_coalition_tables(
    cdir: Path, cfg: ExperimentConfig, seed: int, setting: str, members: Sequence[str], result, utility
) -> list[Path]:
    """Write a trained coalition's tables: ``auroc.csv``, ``auroc_per_test_set.csv``, ``curve.csv`` and
    ``rounds.csv`` (``docs/tables.md``) from its :class:`~ddval.train.rounds.TrainingResult` and
    :class:`~ddval.train.metrics.Utility`; returns their paths."""
    cid = coalition_id(members)
    key = {"setting": setting, "seed": seed, "coalition": cid}
    auroc = pd.DataFrame(
        {
            **key,
            "members": cid,
            "n_members": len(members),
            "label": [*LABELS, "mean"],
            "auroc": [*(float(utility.per_label[label]) for label in LABELS), utility.value],
        }
    )
    per_set = utility.per_set.reset_index().melt(id_vars="test_set", var_name="label", value_name="auroc")
    per_set.insert(0, "coalition", cid)
    curve = pd.DataFrame(
        [
            {
                **key,
                "round": h["round"],
                "train_loss": h["train_loss"],
                "val_loss": h["val_loss"],
                "is_best": h["round"] == result.best_round,
            }
            for h in result.history
        ]
    )
    rounds = pd.DataFrame(
        [
            {
                "round": h["round"],
                "institution": name,
                "model_sha256": c["model_sha256"],
                "merged_sha256": h["merged_sha256"],
                "leader": h["leader"],
                "val_loss": c["val_loss"],
            }
            for h in result.history
            for name, c in h["clients"].items()
        ]
    )
    return [
        store.write_table(cdir / "auroc.csv", auroc),
        store.write_table(cdir / "auroc_per_test_set.csv", per_set),
        store.write_table(cdir / "curve.csv", curve),
        store.write_table(cdir / "rounds.csv", rounds),
    ]
