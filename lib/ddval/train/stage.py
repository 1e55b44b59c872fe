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

A coalition is a stage of :mod:`ddval.store` (``<coalition>/.train.done.json``): a finished one with
the same parameters is skipped; a half-trained one resumes from its checkpoint. A checkpoint that is
corrupt or was written with other parameters is an error, never reused silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from ddval import layout, numerics, store
from ddval.config import LABELS, ExperimentConfig
from ddval.layout import coalition_dir, coalition_id, parse_coalition, setting_coalitions
from ddval.progress import progress
from ddval.repro import seed_everything
from ddval.train.aggregate import State
from ddval.train.checkpoints import save_checkpoint
from ddval.train.fedavg import fedavg_round, train_rounds
from ddval.train.local import Client, clone_state, derive_seed, resolve_device
from ddval.train.metrics import coalition_utility
from ddval.train.models import build_model
from ddval.train.pretrain import pretrain_params, pretrained_backbone, start_from
from ddval.train.rounds import RoundRecord
from ddval.train.swarm import swarm_round

log = logging.getLogger(__name__)

STAGE = "train"
#: Train settings that change how the work is scheduled, not a single number of its results
#: (so changing them never invalidates a trained coalition; the number of replicates changes which
#: models exist, not any one of them).
EXECUTION_ONLY = ("processes", "replicates")


# --------------------------------------------------------------------------------------------
# Data of a setting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingData:
    """A setting's partition and, per institution, its train (augmented), val and test datasets."""

    partition: pd.DataFrame
    train: dict[str, Dataset]
    val: dict[str, Dataset]
    test: dict[str, Dataset]

    def clients(self, members: Sequence[str]) -> list[Client]:
        return [Client(name, self.train[name], self.val[name]) for name in members]


def load_setting_data(
    cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None
) -> SettingData:
    """Partition of ``setting`` (``ddval.data.splits.load_partition``) as datasets per institution."""
    from ddval.data.dataset import XrayDataset
    from ddval.data.splits import load_partition

    partition = load_partition(cfg, seed, setting, root=root)
    size = cfg.data.image_size
    out: dict[str, dict[str, Dataset]] = {"train": {}, "val": {}, "test": {}}
    for inst in cfg.setting(setting).institutions:
        for split in out:
            frame = partition[(partition["institution"] == inst.name) & (partition["split"] == split)].reset_index(
                drop=True
            )
            if frame.empty:
                raise ValueError(
                    f"partition of setting {setting!r} (seed {seed}): institution {inst.name!r} has no {split} scans"
                )
            train = split == "train" and cfg.train.augment
            out[split][inst.name] = XrayDataset(frame, size, train=train, train_cfg=cfg.train if train else None)
    return SettingData(partition, out["train"], out["val"], out["test"])


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
    root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Everything a coalition's model depends on; its hash marks checkpoints and the stage record
    (``root``: the results root, read for the index a pretrained backbone depends on)."""
    params = {
        "seed": seed,
        "setting": cfg.setting(setting),
        "members": list(members),
        "train": {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in EXECUTION_ONLY},
        "image_size": cfg.data.image_size,
        "partition": _frame_digest(partition),
        "numerics": numerics.fingerprint(),
    }
    if replicate:  # replicate 0 keeps the hashes (and checkpoints) of a run without replicates
        params["replicate"] = replicate
    if cfg.train.pretrain != "none":
        record = store.require_record(layout.data_dir(cfg, root), "resize", "run stages 01 and 02 first")
        params["pretrain"] = store.param_hash(
            pretrain_params(cfg, seed, setting, params["partition"], record["params_hash"]))
    return params


def training_seed(seed: int, replicate: int) -> int:
    """The seed of a replicate's training randomness (batch order, augmentation): ``seed`` itself for
    replicate 0, an independent stream derived from it for the others. The initial model and the
    partition stay those of ``seed``: replicates retrain the same experiment."""
    return seed if replicate == 0 else derive_seed(seed, "replicate", replicate)


#: Partition columns that say where a scan lies, not what it is: left out of the digest, so the same
#: preset gives the same hashes (and byte-identical checkpoints) in any results folder.
LOCATION_COLUMNS = ("path",)


def _frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of the partition (so a re-made partition never reuses old models); the scans'
    locations are not part of it (the image size is, in :func:`coalition_params`)."""
    ordered = frame.reindex(sorted(c for c in frame.columns if c not in LOCATION_COLUMNS), axis=1)
    digest = hashlib.sha256("|".join(map(str, ordered.columns)).encode())
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


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
    """Train, score and record one coalition (skipped when done, resumed when half done); replicate
    ``r >= 1`` retrains it with the training randomness of :func:`training_seed` in its own folder."""
    members = tuple(members)
    cdir = coalition_dir(cfg, seed, setting, members, root, replicate)
    params = coalition_params(cfg, seed, setting, members, data.partition, replicate, root)
    h = store.param_hash(params)
    if store.stage_status(cdir, STAGE, params) == "stale":
        log.warning("%s was trained with other parameters; retraining it", cdir)
        _clear_models(cdir)
    # the baselines read the recorded rounds of the grand coalition of replicate 0 only
    grand = members == tuple(i.name for i in cfg.setting(setting).institutions) and replicate == 0
    run_seed = training_seed(seed, replicate)

    def compute() -> list[Path]:
        started, cpu_started = time.perf_counter(), time.process_time()
        seed_everything(run_seed, threads=cfg.train.threads)
        device = resolve_device(cfg.train)
        torch.manual_seed(derive_seed(seed, "init"))  # the same initial model for every coalition
        model = build_model(cfg.train)
        start_from(model, pretrained_backbone(cfg, seed, setting, data.partition, params["partition"], root)[0])
        model = model.to(device)
        checkpoint = cdir / "checkpoint.pt"
        on_round = None
        if grand:
            if not checkpoint.exists():
                shutil.rmtree(cdir / "rounds", ignore_errors=True)  # leftovers of an older run
                _save_round_state(cdir, 0, "global", clone_state(model), h)
            on_round = lambda record: _save_round(cdir, record, h)  # noqa: E731
        result = train_rounds(
            model,
            data.clients(members),
            cfg.train,
            seed=run_seed,
            round_fn=swarm_round if cfg.train.algorithm == "swarm" else fedavg_round,
            checkpoint=checkpoint,
            params_hash=h,
            on_round=on_round,
            desc=f"{setting} {coalition_id(members)}" + (f" replicate {replicate}" if replicate else ""),
        )
        utility = coalition_utility(model, data.test, batch_size=cfg.train.eval_batch_size, device=device)
        written = _write_coalition_tables(cdir, cfg, seed, setting, members, result, utility)
        save_checkpoint(
            cdir / "best.pt", {"state": result.best_state, "best_round": result.best_round, "members": list(members)}, h
        )
        checkpoint.unlink(missing_ok=True)  # the loop state is no longer needed
        # timings live apart from the tables, which must be identical run to run
        timing = {
            "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started,
            "rounds": len(result.history),
            "device": str(device),
        }
        outputs = [cdir / "best.pt", store.write_json(cdir / "timing.json", timing), *written]
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


def _save_round_state(cdir: Path, round_no: int, who: str, state: State, params_hash: str) -> None:
    save_checkpoint(round_path(cdir, round_no, who), {"state": state, "round": round_no, "who": who}, params_hash)


def _save_round(cdir: Path, record: RoundRecord, params_hash: str) -> None:
    """Keep a round of the grand coalition: the merged model and every institution's local model."""
    _save_round_state(cdir, record.round, "global", record.merged_state, params_hash)
    for name, state in record.local_states.items():
        _save_round_state(cdir, record.round, name, state, params_hash)


def _write_coalition_tables(
    cdir: Path, cfg: ExperimentConfig, seed: int, setting: str, members: Sequence[str], result, utility
) -> list[Path]:
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


def run_training_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str | None = None,
    coalition: str | Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    replicate: int | None = None,
) -> pd.DataFrame:
    """Train and score the coalitions of every setting (or of ``setting``; only ``coalition`` when
    given, e.g. ``"nih+mimic"``, so one papermill job can train one coalition), in every training
    replicate of the setting (``train.replicates``; only ``replicate`` when given, so replicates can be
    separate jobs).

    Finished coalitions are skipped, half-trained ones resume. With ``train.processes > 1`` that
    many coalitions train at once, each in its own process (results are identical either way).
    Once all coalitions of a setting's replicate are done, its ``utilities.csv`` and ``curves.csv``
    are assembled. Returns the utility rows (``label`` per AUROC plus ``mean``) of the coalitions
    handled, with a ``replicate`` column when more than replicate 0 was handled.
    """
    from ddval.data.splits import load_partition

    pairs = stage_scope(cfg, setting, coalition)
    names = list(dict.fromkeys(name for name, _ in pairs))
    tasks = [(name, members, r) for name, members in pairs for r in _replicates(cfg, name, replicate)]
    partitions = {name: load_partition(cfg, seed, name, root=root) for name in names}
    for name in names:  # before any worker starts, so that parallel coalitions never race to pretrain
        pretrained_backbone(cfg, seed, name, partitions[name], _frame_digest(partitions[name]), root)
    todo = [
        (name, members, r)
        for name, members, r in tasks
        if store.stage_status(
            coalition_dir(cfg, seed, name, members, root, r),
            STAGE,
            coalition_params(cfg, seed, name, members, partitions[name], r, root),
        )
        != "complete"
    ]
    if cfg.train.processes > 1 and len(todo) > 1:
        _train_in_processes(cfg, seed, todo, root)
    else:
        data: dict[str, SettingData] = {}
        for name, members, r in progress(todo, desc="coalitions", unit="coalition"):
            if name not in data:
                data[name] = load_setting_data(cfg, seed, name, root)
            train_coalition(cfg, seed, name, members, data[name], root, r)
    for name, r in dict.fromkeys((name, r) for name, _, r in tasks):
        assemble_if_complete(cfg, seed, name, partitions[name], root, r)
    frames = [store.read_table(coalition_dir(cfg, seed, n, m, root, r) / "auroc.csv").assign(replicate=r) for n, m, r in tasks]
    out = pd.concat(frames, ignore_index=True)
    return out if out["replicate"].any() else out.drop(columns="replicate")


def _replicates(cfg: ExperimentConfig, setting: str, replicate: int | None) -> list[int]:
    n = layout.setting_replicates(cfg, setting)
    if replicate is None:
        return list(range(n))
    if not 0 <= replicate < n:
        raise ValueError(f"setting {setting!r} trains replicates 0..{n - 1} (train.replicates), not {replicate}")
    return [replicate]


# Worker processes keep each setting's datasets (images decoded once) across their tasks.
_WORKER_DATA: dict[str, SettingData] = {}


def _train_task(cfg: ExperimentConfig, seed: int, setting: str, members: tuple[str, ...], replicate: int, root: str) -> str:
    if setting not in _WORKER_DATA:
        _WORKER_DATA[setting] = load_setting_data(cfg, seed, setting, root)
    train_coalition(cfg, seed, setting, members, _WORKER_DATA[setting], root, replicate)
    return coalition_id(members)


def _train_in_processes(cfg: ExperimentConfig, seed: int, todo: list[tuple[str, tuple[str, ...], int]], root) -> None:
    """Train ``todo`` in ``train.processes`` spawned processes, largest coalitions first."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    root = str(layout.results_root(root))
    order = sorted(todo, key=lambda task: -len(task[1]))  # the longest jobs first balance the load
    # spawn, not fork: a forked child inherits torch's thread pools in an undefined state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(cfg.train.processes, len(order)), mp_context=context) as pool:
        futures = [pool.submit(_train_task, cfg, seed, name, members, r, root) for name, members, r in order]
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
    out = {}
    for members in setting_coalitions(cfg.setting(setting)):
        params = coalition_params(cfg, seed, setting, members, partition, replicate, root)
        out[members] = (
            store.stage_status(coalition_dir(cfg, seed, setting, members, root, replicate), STAGE, params),
            store.param_hash(params),
        )
    return out


def assemble_if_complete(
    cfg: ExperimentConfig, seed: int, setting: str, partition: pd.DataFrame, root, replicate: int = 0
) -> bool:
    status = coalition_status(cfg, seed, setting, partition, root, replicate)
    if any(s != "complete" for s, _ in status.values()):
        return False
    tdir = layout.replicate_train_dir(cfg, seed, setting, replicate, root)
    params = {coalition_id(m): h for m, (_, h) in status.items()}

    def compute() -> list[Path]:
        dirs = [coalition_dir(cfg, seed, setting, m, root, replicate) for m in status]
        utilities = pd.concat([store.read_table(d / "auroc.csv") for d in dirs], ignore_index=True)
        curves = pd.concat([store.read_table(d / "curve.csv") for d in dirs], ignore_index=True)
        return [store.write_table(tdir / "utilities.csv", utilities), store.write_table(tdir / "curves.csv", curves)]

    store.run_stage(tdir, "utilities", params, compute)
    return True
