"""Train one model per coalition of institutions and score it: the ground truth of the paper.

Every non-empty coalition of a setting's institutions (only the grand one for ``coalitions: grand``)
is trained from the same seeded initialisation by FedAvg or swarm learning and scored on the test sets
of *all* the setting's institutions (macro-AUROC over the 8 labels, averaged over the test sets). The
empty coalition is worth 0.5 and is not listed.

Run directory of a setting (``<S>/train/``, tables in ``docs/tables.md``)::

    utilities.csv  curves.csv                   assembled when every coalition is done
    <coalition>/best.pt                         best round's global model (+ params hash)
    <coalition>/auroc.csv  auroc_per_test_set.csv  curve.csv  rounds.csv  timing.json
    <coalition>/checkpoint.pt                   resume state while training (removed when done)
    <grand>/rounds/000/global.pt                initial model; for r >= 1: rounds/<r>/global.pt and
    <grand>/rounds/<r>/<institution>.pt          every institution's local model (OR, λ-MR, GTG)
    replicate-<r>/utilities.csv  curves.csv       training replicate r >= 1 (``train.replicates``):
    replicate-<r>/<coalition>/auroc.csv ...      the same coalitions retrained (``ddval.train.record``)
    pretrained/model.pt  curve.csv  timing.json  ``train.pretrain: attributes``: the backbone every coalition
                                                 of every replicate starts from (``ddval.train.pretrain``)

A coalition is a stage of :mod:`ddval.store` (``<coalition>/.train.done.json``): a finished one with
the same parameters is skipped; a half-trained one resumes from its checkpoint. A checkpoint that is
corrupt or was written with other parameters is an error, never reused silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ddval import layout, numerics, store
from ddval.config import ExperimentConfig, setting_identity
from ddval.layout import coalition_dir, coalition_id, parse_coalition, setting_coalitions
from ddval.progress import progress
from ddval.procs import die_with_parent
from ddval.train.fedavg import fedavg_round
from ddval.train.metrics import Utility, coalition_utility
from ddval.train.models import pretrained_weights_digest
from ddval.train.pretrain import pretrain_hash, pretrained_backbone
from ddval.train.record import STAGE, record_coalition
from ddval.train.setting_data import SettingData, frame_digest, load_setting_data
from ddval.train.swarm import swarm_round

log = logging.getLogger(__name__)

#: Train settings that change how the work is scheduled, not a single number of its results
#: (so changing them never invalidates a trained coalition; the number of replicates changes which
#: models exist, not any one of them: each replicate's own number is in its parameters).
EXECUTION_ONLY = ("processes", "replicates")


# --------------------------------------------------------------------------------------------
# Parameters (what a trained coalition depends on)
# --------------------------------------------------------------------------------------------


def coalition_params(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    members: Sequence[str],
    partition: pd.DataFrame,
    replicate: int = 0,
) -> dict[str, Any]:
    """Everything a coalition's model depends on; its hash marks checkpoints and the stage record.
    A training replicate ``r >= 1`` adds ``replicate: r``; replicate 0 keeps the hashes (and files) of a
    run without replicates. With ``train.pretrain`` other than ``none`` the pretrained backbone's hash is
    ``pretrain`` (:mod:`ddval.train.pretrain`; the same one for every coalition and replicate)."""
    digest = frame_digest(partition)
    params = {**model_params(cfg, seed, setting, members), "partition": digest}
    if cfg.train.pretrain != "none":
        params["pretrain"] = pretrain_hash(cfg, seed, setting, digest)
    return {**params, "replicate": replicate} if replicate else params


def model_params(cfg: ExperimentConfig, seed: int, setting: str, members: Sequence[str]) -> dict[str, Any]:
    """What a coalition's model depends on besides its data: seed, setting, members, the training
    settings (not the execution-only ones; options that hold an omitted default leave the hash as it
    was before they existed), the image size and the CPU numerics (:mod:`ddval.numerics`)."""
    return {
        "seed": seed,
        "setting": setting_identity(cfg.setting(setting)),
        "members": list(members),
        "train": {k: v for k, v in store.plain_data(cfg.train).items() if k not in EXECUTION_ONLY},
        "image_size": cfg.data.image_size,
        "numerics": numerics.fingerprint(),
        **pretrained_weights_digest(cfg.train),  # which ImageNet weights (none for random or small models)
    }


# --------------------------------------------------------------------------------------------
# Training one coalition
# --------------------------------------------------------------------------------------------


def train_coalition(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    members: Sequence[str],
    data: SettingData,
    root: str | os.PathLike | None = None,
    replicate: int = 0,
) -> store.StageResult:
    """Train, score and record one coalition in training replicate ``replicate`` (skipped when done,
    resumed when half done)."""
    members = tuple(members)
    params = coalition_params(cfg, seed, setting, members, data.partition, replicate)
    round_fn = swarm_round if cfg.train.algorithm == "swarm" else fedavg_round

    def score(model: nn.Module, device: torch.device) -> Utility:
        return coalition_utility(model, data.test, batch_size=cfg.train.eval_batch_size, device=device)

    clients = data.clients(members)
    backbone = pretrained_backbone(cfg, seed, setting, data.partition, params["partition"], root)
    return record_coalition(cfg, seed, setting, members, params, clients, round_fn, score, root, replicate, backbone)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def stage_scope(
    cfg: ExperimentConfig, setting: str | None = None, coalition: str | Sequence[str] | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """The ``(setting, members)`` pairs a call of the stage (or of a reader) covers.

    Args:
        cfg: the experiment.
        setting: one setting, or ``None`` for every setting of the preset.
        coalition: one coalition of ``setting`` (an id such as ``"nih+mimic"`` or member names), or
            ``None`` for every coalition the setting trains.

    Returns:
        The pairs, settings in config order, coalitions as :func:`ddval.layout.setting_coalitions`.
    """
    if coalition is not None and setting is None:
        raise ValueError("coalition= needs setting= (coalition ids are per setting)")
    names = [setting] if setting is not None else [s.name for s in cfg.settings]
    return [
        (name, members)
        for name in names
        for members in (
            [parse_coalition(cfg.setting(name), coalition)]
            if coalition is not None
            else setting_coalitions(cfg.setting(name))
        )
    ]


def preset_replicates(cfg: ExperimentConfig) -> int:
    """The most replicates any setting of the preset trains (:func:`ddval.layout.setting_replicates`)."""
    return max(layout.setting_replicates(cfg, s.name) for s in cfg.settings)


def replicate_scope(cfg: ExperimentConfig, setting: str, replicate: int | None = None) -> list[int]:
    """The training replicates of ``setting`` a call covers: all of them (``replicate=None``) or only
    ``replicate`` (none when the setting trains fewer, :func:`ddval.layout.setting_replicates`).

    Args:
        cfg: the experiment (``train.replicates``, a setting's ``replicates``).
        setting: the setting.
        replicate: one replicate, or ``None``.

    Returns:
        The replicate numbers, in order.
    """
    n = preset_replicates(cfg)
    if replicate is not None and not 0 <= replicate < n:
        raise ValueError(
            f"the preset trains replicates 0..{n - 1} (train.replicates, settings' replicates), not {replicate}"
        )
    mine = range(layout.setting_replicates(cfg, setting))
    return list(mine) if replicate is None else [r for r in mine if r == replicate]


#: One coalition training: ``(setting, members, replicate)``.
Job = tuple[str, tuple[str, ...], int]


def run_training_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str | None = None,
    coalition: str | Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    replicate: int | None = None,
) -> pd.DataFrame:
    """Train and score the coalitions of every setting (or of ``setting``; only ``coalition`` when
    given, e.g. ``"nih+mimic"``, so one papermill job can train one coalition) in every training
    replicate (``train.replicates``; only ``replicate`` when given, so replicates can be separate jobs).

    Finished coalitions are skipped, half-trained ones resume. With ``train.processes > 1`` that
    many coalition trainings (of any replicate) run at once, each in its own process (results are
    identical either way). Once all coalitions of a setting's replicate are done, its ``utilities.csv``
    and ``curves.csv`` are assembled. Returns the utility rows (``label`` per AUROC plus ``mean``) of the
    coalitions handled, with a ``replicate`` column when the preset trains more than one replicate.
    """
    from ddval.data.splits import load_partition

    pairs = stage_scope(cfg, setting, coalition)
    jobs: list[Job] = [(name, members, r) for name, members in pairs for r in replicate_scope(cfg, name, replicate)]
    if not jobs:
        raise ValueError(f"replicate {replicate}: no setting in scope trains it (coalitions: grand trains one)")
    names = list(dict.fromkeys(name for name, _ in pairs))
    partitions = {name: load_partition(cfg, seed, name, root=root) for name in names}
    todo = [
        (name, members, r)
        for name, members, r in jobs
        if store.stage_status(
            coalition_dir(cfg, seed, name, members, root, r),
            STAGE,
            coalition_params(cfg, seed, name, members, partitions[name], r),
        )
        != "complete"
    ]
    for name in dict.fromkeys(name for name, _, _ in todo):  # before any worker: parallel coalitions never race
        pretrained_backbone(cfg, seed, name, partitions[name], frame_digest(partitions[name]), root)
    if cfg.train.processes > 1 and len(todo) > 1:
        _train_in_processes(cfg, seed, todo, root)
    else:
        data: dict[str, SettingData] = {}
        for name, members, r in progress(todo, desc="coalitions", unit="coalition"):
            if name not in data:
                data[name] = load_setting_data(cfg, seed, name, root)
            train_coalition(cfg, seed, name, members, data[name], root, r)
    for name, r in dict.fromkeys((name, r) for name, _, r in jobs):
        assemble_if_complete(cfg, seed, name, partitions[name], root, r)
    frames = []
    for name, members, r in jobs:
        frame = store.read_table(coalition_dir(cfg, seed, name, members, root, r) / "auroc.csv")
        frames.append(frame.assign(replicate=r) if preset_replicates(cfg) > 1 else frame)
    return pd.concat(frames, ignore_index=True)


# Worker processes keep each setting's datasets (images decoded once) across their tasks.
_WORKER_DATA: dict[str, SettingData] = {}


def _train_task(cfg: ExperimentConfig, seed: int, job: Job, root: str) -> str:
    setting, members, replicate = job
    if setting not in _WORKER_DATA:
        _WORKER_DATA[setting] = load_setting_data(cfg, seed, setting, root)
    train_coalition(cfg, seed, setting, members, _WORKER_DATA[setting], root, replicate)
    return coalition_id(members)


def _train_in_processes(cfg: ExperimentConfig, seed: int, todo: list[Job], root) -> None:
    """Train ``todo`` in ``train.processes`` spawned processes, largest coalitions first."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    root = str(layout.results_root(root))
    order = sorted(todo, key=lambda job: -len(job[1]))  # the longest jobs first balance the load
    # spawn, not fork: a forked child inherits torch's thread pools in an undefined state
    context = multiprocessing.get_context("spawn")
    workers = min(cfg.train.processes, len(order))
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:  # no worker outlives a killed runner
        futures = [pool.submit(_train_task, cfg, seed, job, root) for job in order]
        bar = progress(total=len(futures), desc="coalitions", unit="coalition")
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # re-raises a worker's error here
                bar.update(len(done))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            bar.close()


def coalition_status(
    cfg: ExperimentConfig, seed: int, setting: str, partition: pd.DataFrame, root, replicate: int = 0
) -> dict[tuple[str, ...], tuple[str, str]]:
    """Per coalition of ``setting`` in training replicate ``replicate``: its stage status and the
    parameter hash it is (or would be) trained with."""
    out = {}
    for members in setting_coalitions(cfg.setting(setting)):
        params = coalition_params(cfg, seed, setting, members, partition, replicate)
        out[members] = (
            store.stage_status(coalition_dir(cfg, seed, setting, members, root, replicate), STAGE, params),
            store.param_hash(params),
        )
    return out


def assemble_if_complete(
    cfg: ExperimentConfig, seed: int, setting: str, partition: pd.DataFrame, root, replicate: int = 0
) -> bool:
    """Assemble ``utilities.csv`` and ``curves.csv`` of a replicate once every coalition of ``setting`` is done."""
    status = coalition_status(cfg, seed, setting, partition, root, replicate)
    if any(s != "complete" for s, _ in status.values()):
        return False
    assemble_tables(cfg, seed, setting, {members: h for members, (_, h) in status.items()}, root, replicate)
    return True


def assemble_tables(
    cfg: ExperimentConfig, seed: int, setting: str, hashes: dict[tuple[str, ...], str], root, replicate: int = 0
) -> list[Path]:
    """``utilities.csv`` and ``curves.csv`` of a replicate's training folder (``<S>/train`` for replicate 0)
    from the trained coalitions ``hashes`` (members → the parameter hash of the model they were trained
    as), a stage of its own (``utilities``)."""
    tdir = layout.replicate_train_dir(cfg, seed, setting, replicate, root)
    params = {coalition_id(m): h for m, h in hashes.items()}

    def compute() -> list[Path]:
        dirs = [coalition_dir(cfg, seed, setting, m, root, replicate) for m in hashes]
        utilities = pd.concat([store.read_table(d / "auroc.csv") for d in dirs], ignore_index=True)
        curves = pd.concat([store.read_table(d / "curve.csv") for d in dirs], ignore_index=True)
        return [store.write_table(tdir / "utilities.csv", utilities), store.write_table(tdir / "curves.csv", curves)]

    store.run_stage(tdir, "utilities", params, compute)
    return [tdir / "utilities.csv", tdir / "curves.csv"]
