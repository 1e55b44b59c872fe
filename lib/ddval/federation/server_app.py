"""The ServerApp: ddval's FedAvg over the sites of a Flower federation, then DDVal on their features.

The round loop, early stopping, checkpoints and the run-folder records are the in-process trainer's
(:func:`ddval.train.record.record_coalition` with :func:`ddval.train.fedavg.train_rounds`); only the
round itself differs (:class:`FlowerRounds`): the local models come from the sites, and the merge is
:func:`ddval.train.aggregate.average_states` in the setting's institution order. The grand coalition
is written to ``<S>/train/<grand>/`` (``rounds.csv``, every round's states, ``best.pt``, the AUROC
tables), the sites' feature files to ``<S>/valuation/features/`` and DDVal's tables to
``<S>/valuation/`` (:mod:`ddval.federation.valuation`), so notebook 05 runs on them unchanged.

Failure policy: a site that does not answer within ``round-timeout`` or answers with an error fails
the run with an error naming it. Nothing is recorded as complete: the coalition's stage record is
written last, and the checkpoint of the last finished round stays, so the same run started again
(with the site back) resumes from that round and gives the same model.
"""

from __future__ import annotations

import ddval.federation  # noqa: F401  (telemetry off before flwr is imported)

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from ddval.federation import protocol
from ddval.federation.job import Job

log = logging.getLogger(__name__)

app = ServerApp()


class FederationError(RuntimeError):
    """A site is missing, failed or did not answer in time; the message names it."""


@dataclass(frozen=True)
class RemoteSite:
    """A connected site, as the server knows it (what the site said about itself)."""

    name: str
    node_id: int
    n_train: int
    n_val: int
    n_test: int
    digest: str
    numerics: str = ""


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def ask(
    grid: Grid, node_ids: Sequence[int], message_type: str, content: RecordDict, timeout: float
) -> tuple[dict[int, Message], dict[int, str]]:
    """Send ``content`` to every node; returns the replies and, per node that failed or stayed
    silent for ``timeout`` seconds, what went wrong."""
    messages = [Message(content, message_type=message_type, dst_node_id=node) for node in node_ids]
    replies = {reply.metadata.src_node_id: reply for reply in grid.send_and_receive(messages, timeout=timeout)}
    problems = {
        node: f"failed: {replies[node].error.reason}"
        for node in node_ids
        if node in replies and replies[node].has_error()
    }
    problems.update({node: f"no answer within {timeout:g} s" for node in node_ids if node not in replies})
    return {node: reply for node, reply in replies.items() if node not in problems}, problems


def exchange(
    grid: Grid, sites: Sequence[RemoteSite], message_type: str, content: RecordDict, timeout: float, what: str
) -> dict[str, Message]:
    """Send ``content`` to every site and return each one's reply by institution name.

    Raises:
        FederationError: a site answered with an error, or not within ``timeout`` seconds.
    """
    replies, problems = ask(grid, [s.node_id for s in sites], message_type, content, timeout)
    if problems:
        named = {s.node_id: s.name for s in sites}
        detail = "; ".join(f"site {named[n]!r} (node {n}) {why}" for n, why in problems.items())
        raise FederationError(f"{what}: {detail}")
    return {s.name: replies[s.node_id] for s in sites}


def connect_sites(grid: Grid, job: Job) -> list[RemoteSite]:
    """Wait for the setting's sites, ask each who it is, and return them in config order. Nodes that
    do not answer are left out (a crashed SuperNode stays listed until its heartbeat expires).

    Raises:
        FederationError: a site is missing after ``wait-for-sites`` seconds, two nodes claim the same
            institution, or a node serves an institution the setting does not have.
    """
    wanted = job.institutions
    deadline = time.monotonic() + job.wait_for_sites
    while len(list(grid.get_node_ids())) < len(wanted) and time.monotonic() < deadline:
        time.sleep(0.5)
    nodes = sorted(grid.get_node_ids())
    question = RecordDict({protocol.JOB: ConfigRecord({"config-sha256": protocol.config_sha256(job.cfg)})})
    answers, problems = ask(grid, nodes, protocol.DESCRIBE, question, job.wait_for_sites)
    sites: dict[str, RemoteSite] = {}
    for node, reply in answers.items():
        info = reply.content[protocol.SITE]
        name = str(info["institution"])
        if name in sites:
            raise FederationError(
                f"describe: institution {name!r} is served by two nodes ({sites[name].node_id}, {node})"
            )
        sites[name] = RemoteSite(
            name,
            node,
            int(info["n_train"]),
            int(info["n_val"]),
            int(info["n_test"]),
            str(info["digest"]),
            str(info["numerics"]),
        )
    unknown = sorted(set(sites) - set(wanted))
    missing = [name for name in wanted if name not in sites]
    if unknown or missing:
        others = "; ".join(f"node {n} {why}" for n, why in problems.items())
        raise FederationError(
            f"setting {job.setting!r} needs sites {wanted}; missing {missing}, not in the setting {unknown} "
            f"(waited {job.wait_for_sites:g} s for nodes{'; ' + others if others else ''})"
        )
    if problems:
        log.warning("left out nodes that did not answer: %s", problems)
    return [sites[name] for name in wanted]


# --------------------------------------------------------------------------------------------
# Rounds and scores
# --------------------------------------------------------------------------------------------


class FlowerRounds:
    """The round function of :func:`ddval.train.fedavg.train_rounds` with the sites as clients."""

    def __init__(self, grid: Grid, job: Job):
        self.grid = grid
        self.job = job

    def __call__(
        self,
        model,
        clients: Sequence[RemoteSite],
        global_state,
        round_no: int,
        train_cfg,
        *,
        seed: int,
        weights: Sequence[float] | None,
    ):
        """One FedAvg round: local training at every site, the merge here, validation at every site."""
        from ddval.train.aggregate import average_states
        from ddval.train.rounds import RoundRecord

        content = RecordDict(
            {
                protocol.ARRAYS: protocol.state_to_arrays(global_state),
                protocol.CONFIG: ConfigRecord({"round": round_no, "seed": seed}),
            }
        )
        trained = exchange(
            self.grid, clients, protocol.TRAIN, content, self.job.round_timeout, f"round {round_no}, training"
        )
        local = {c.name: protocol.arrays_to_state(trained[c.name].content[protocol.ARRAYS]) for c in clients}
        train_losses = {c.name: float(trained[c.name].content[protocol.METRICS]["train_loss"]) for c in clients}
        merged = average_states([local[c.name] for c in clients], weights)
        content = RecordDict({protocol.ARRAYS: protocol.state_to_arrays(merged)})
        checked = exchange(
            self.grid, clients, protocol.VALIDATE, content, self.job.round_timeout, f"round {round_no}, validation"
        )
        val = {c.name: float(checked[c.name].content[protocol.METRICS]["val_loss"]) for c in clients}
        return RoundRecord.merged_by_server(round_no, local, train_losses, merged, val)


def test_utility(grid: Grid, job: Job, sites: Sequence[RemoteSite], model):
    """The coalition utility of ``model``: each site scores it on its own test set."""
    import pandas as pd

    from ddval.config import LABELS
    from ddval.train.local import clone_state
    from ddval.train.metrics import utility_of_sets

    content = RecordDict({protocol.ARRAYS: protocol.state_to_arrays(clone_state(model))})
    replies = exchange(grid, sites, protocol.TEST, content, job.round_timeout, "test scores")
    keys = [*LABELS, "mean"]
    rows = {
        s.name: pd.Series([float(replies[s.name].content[protocol.METRICS][k]) for k in keys], index=keys, name="auroc")
        for s in sites
    }
    return utility_of_sets(rows)


def federation_params(job: Job, sites: Sequence[RemoteSite]) -> dict:
    """What the federated grand model depends on: the in-process model parameters, with each site's
    digest of its own rows in place of the partition (the server never sees the partition), and each
    site's CPU numerics (:mod:`ddval.numerics`: sites of other numerics train other bits)."""
    from ddval.train.stage import model_params

    if job.cfg.train.pretrain != "none":  # the public scans are the cohort's, which no federation server holds
        raise ValueError(f"train.pretrain: {job.cfg.train.pretrain} runs in process only; a federation needs none")
    members = [s.name for s in sites]
    return {
        **model_params(job.cfg, job.seed, job.setting, members),
        "sites": {s.name: s.digest for s in sites},
        "site_numerics": {s.name: s.numerics for s in sites},
        "runtime": "flower",
    }


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_federation(grid: Grid, job: Job) -> Path:
    """Train the setting's grand coalition over the sites, collect their features and value them.

    Returns:
        The run's ``institution_values.csv``.
    """
    from ddval import store
    from ddval.layout import coalition_dir
    from ddval.train.record import record_coalition
    from ddval.train.stage import assemble_tables

    sites = connect_sites(grid, job)
    members = tuple(s.name for s in sites)
    params = federation_params(job, sites)
    log.info("sites: %s", ", ".join(f"{s.name} (node {s.node_id}, {s.n_train} train scans)" for s in sites))
    record_coalition(
        job.cfg,
        job.seed,
        job.setting,
        members,
        params,
        sites,
        FlowerRounds(grid, job),
        lambda model, device: test_utility(grid, job, sites, model),
        job.results_root,
    )
    h = store.param_hash(params)
    assemble_tables(job.cfg, job.seed, job.setting, {members: h}, job.results_root)
    cdir = coalition_dir(job.cfg, job.seed, job.setting, members, job.results_root)
    return collect_and_value(grid, job, sites, cdir, h)


def collect_and_value(grid: Grid, job: Job, sites: Sequence[RemoteSite], cdir: Path, model_hash: str) -> Path:
    """Send the best model to every site, store the feature files they return, run DDVal on them."""
    from ddval import store
    from ddval.federation.valuation import value_received_features
    from ddval.layout import features_dir
    from ddval.train.checkpoints import load_checkpoint
    from ddval.valuation.features import FEATURE_LAYER

    fdir = features_dir(job.cfg, job.seed, job.setting, job.results_root)
    v = job.cfg.valuation
    params = {
        "model": model_hash,
        "layer": FEATURE_LAYER,
        "pooling": v.pooling,
        "dtype": v.feature_dtype,
        "image_size": job.cfg.data.image_size,
        "dp_noise_scale": job.dp_noise_scale,
        "runtime": "flower",
        "site_numerics": {s.name: s.numerics for s in sites},
    }

    def compute() -> list[Path]:
        best = load_checkpoint(cdir / "best.pt", model_hash)["state"]
        content = RecordDict({protocol.ARRAYS: protocol.state_to_arrays(best)})
        replies = exchange(grid, sites, protocol.FEATURES, content, job.round_timeout, "features")
        paths = []
        for site in sites:
            blob = replies[site.name].content[protocol.FEATURE_FILE].to_numpy_ndarrays()[0]
            paths.append(store.write_bytes(fdir / f"{site.name}.npz", blob.tobytes()))
        return paths

    store.run_stage(fdir, "features", params, compute)
    return value_received_features(job, store.param_hash(params))


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower's entry point: the job from the run config, then :func:`run_federation`."""
    logging.getLogger("ddval").setLevel(logging.INFO)
    job = Job.from_run_config(context.run_config)
    path = run_federation(grid, job)
    log.info("federated run of setting %r done: %s", job.setting, path)
