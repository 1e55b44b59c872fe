"""The token-economy stage (notebook 05): swarm rounds on chain, artifacts on IPFS, payouts.

:func:`run_economy_stage` reads the outputs of the training and valuation stages of one setting
(``docs/tables.md``), checks all of them before anything is sent (:mod:`ddval.economy.inputs`),
then runs the steps of :mod:`ddval.economy.steps`: deploy (institution set closed before the pool
exists and is funded), record the training rounds and the feature files, publish the allocation
document, let every institution recompute and attest it (a strict majority finalizes it), claim,
and (on a dev chain) sweep after the deadline and check the token flows.

Outputs in ``<S>/economy/``: ``gas.csv``, ``allocation.csv``, ``balances.csv``, ``pins.csv``,
``attestations.csv``, ``deployment.json``. One stage of :mod:`ddval.store`: a finished run with the
same parameters and inputs is not sent again. Before it is skipped, a run on an RPC chain is checked
against that chain: same chain id and genesis block, and code at the recorded token, registry and
pool addresses; a chain that lost them (a restarted dev node) makes the run stale and it is sent
again. (A run on the embedded chain needs no such check: that chain exists only during the run,
whose transactions are a deterministic function of the inputs.) A run that fails leaves no outputs:
the previous run's are removed before anything is sent. Every file it pins (round models, feature
files) must match the completion record of the stage that wrote it (:func:`ddval.store.verify_file`),
checked before anything is sent and again when it is pinned.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig
from ddval.economy import chain as chain_mod
from ddval.economy import ipfs, merkle, rewards, steps
from ddval.economy.allocation import allocation_from_points, allocation_leaves
from ddval.economy.gas import GasMeter
from ddval.economy.inputs import EconomyInputError, Inputs, RoundPlan, grand_utility, locate_inputs, plan_rounds
from ddval.economy.parties import Parties, claimers, make_parties
from ddval.economy.published import Policy
from ddval.layout import economy_dir

log = logging.getLogger(__name__)

OUTPUTS = {
    "gas": "gas.csv", "allocation": "allocation.csv", "balances": "balances.csv", "pins": "pins.csv",
    "attestations": "attestations.csv", "deployment": "deployment.json",
}  # fmt: skip


@dataclass
class EconomyResult:
    """What the stage wrote (paths) and its main tables."""

    outputs: dict[str, Path]
    skipped: bool

    def table(self, name: str) -> pd.DataFrame:
        return store.read_table(self.outputs[name])

    @property
    def deployment(self) -> dict[str, Any]:
        return store.read_json(self.outputs["deployment"])


def run_economy_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    *,
    root: str | os.PathLike | None = None,
    rpc_url: str | None = None,
    ipfs_api: str | None = None,
    n_individuals: int | None = None,
    force: bool = False,
) -> EconomyResult:
    """Run the token-economy stage of one setting (see the module docstring); resumable.

    Args:
        cfg: the experiment configuration (``economy`` section; ``train`` for the stopping rule).
        seed, setting: which run's training and valuation outputs to pay out.
        root: results root (default ``$DDVAL_RESULTS`` or ``results/``).
        rpc_url, ipfs_api: a JSON-RPC endpoint and a Kubo API instead of the embedded chain and store
            (default: ``economy.rpc_url`` / ``economy.ipfs_api``).
        n_individuals: how many individuals claim (default ``economy.n_individuals``).
        force: send again even if a finished run with the same parameters is recorded.

    Returns:
        The output paths, and whether the run was skipped.
    """
    eco = cfg.economy
    rpc_url = rpc_url if rpc_url is not None else eco.rpc_url
    ipfs_api = ipfs_api if ipfs_api is not None else eco.ipfs_api
    n_individuals = eco.n_individuals if n_individuals is None else int(n_individuals)
    inputs = locate_inputs(cfg, seed, setting, root)
    outdir = economy_dir(cfg, seed, setting, root)
    params = {
        "economy": eco,
        "train": {"patience": cfg.train.patience, "max_rounds": cfg.train.max_rounds},
        "valuation": {"k": cfg.valuation.k, "test_per_class": cfg.valuation.test_per_class},
        "seed": seed,
        "setting": setting,
        "rpc_url_sha256": _url_digest(rpc_url),  # not the URL itself: it may hold an API key
        "ipfs_api": None if ipfs_api is None else ipfs.as_multiaddr(ipfs_api),  # host and port: all that is used
        "n_individuals": n_individuals,
        "inputs": inputs.digests(),
    }
    if not force and store.is_complete(outdir, "economy", params) and rpc_url is not None:
        gone = recorded_deployment_is_gone(store.read_json(outdir / OUTPUTS["deployment"]), rpc_url, eco.chain_id)
        if gone:
            log.warning("economy stage in %s: %s; sending it again", outdir, gone)
            force = True

    def compute() -> list[Path]:
        for name in OUTPUTS.values():  # a failure from here on must not leave the last run's outputs
            (outdir / name).unlink(missing_ok=True)
        return _run(cfg, seed, setting, inputs, outdir, rpc_url, ipfs_api, n_individuals)

    res = store.run_stage(outdir, "economy", params, compute, force=force)
    return EconomyResult({k: outdir / v for k, v in OUTPUTS.items()}, res.skipped)


def _url_digest(url: str | None) -> str | None:
    return hashlib.sha256(url.encode()).hexdigest() if url else None


def recorded_deployment_is_gone(deployment: dict[str, Any], rpc_url: str, chain_id: int | None) -> str | None:
    """Why the chain at ``rpc_url`` no longer holds the recorded deployment (another chain id or
    genesis block, or no code at a recorded address), or None when it still does."""
    chain = chain_mod.connect(rpc_url, chain_id=chain_id, keys=[])
    if chain.chain_id != deployment.get("chain_id"):
        return f"the endpoint serves chain {chain.chain_id}, the run was recorded on chain {deployment.get('chain_id')}"
    if chain.genesis_hash() != deployment.get("genesis_hash"):
        return f"chain {chain.chain_id} at {chain.endpoint} has another genesis block than the recorded run"
    missing = [name for name in ("token", "registry", "pool") if not chain.has_code(deployment[name])]
    if missing:
        return f"no contract code at the recorded {', '.join(missing)} address(es) on {chain.endpoint}"
    return None


# ---------------------------------------------------------------------------- checked inputs


@dataclass(frozen=True)
class Prepared:
    """Validated inputs: nothing has been sent when these exist."""

    plan: RoundPlan
    allocation: rewards.Allocation
    grand_utility: float
    features: dict[str, Path]


def prepare(cfg: ExperimentConfig, setting: str, inputs: Inputs) -> Prepared:
    """Check every input and compute the allocation; raises before anything is sent."""
    eco = cfg.economy
    n = len(inputs.institutions)
    if not (2 * eco.quorum > n and eco.quorum <= n):
        raise EconomyInputError(
            f"economy.quorum is {eco.quorum}; the pool needs a strict majority of the {n} "
            "institutions (n/2 < quorum <= n)"
        )
    plan = plan_rounds(inputs, cfg.train.patience, cfg.train.max_rounds, steps.max_loss(cfg))
    source = str(inputs.point_values)
    points = pd.read_parquet(inputs.point_values)
    table = pd.read_csv(inputs.institution_values)
    csv_values = rewards.institution_values(
        table, inputs.institutions, eco.value_method, source=str(inputs.institution_values)
    )
    if eco.value_method == "ddval":
        sums = rewards.institution_values_from_points(points, inputs.institutions, source=source)
        differ = [i for i in inputs.institutions if sums[i] != csv_values[i]]
        if differ:
            raise EconomyInputError(
                f"{inputs.institution_values}: the 'ddval' values of {differ} are not the sums of {source}"
            )
    allocation = allocation_from_points(points, inputs.institutions, Policy.of(cfg), csv_values, source=source)
    utility = grand_utility(inputs, layout.grand_coalition_id(cfg, setting))
    features = {name: inputs.feature_file(name) for name in inputs.institutions}
    for path in [*plan.models.values(), *features.values()]:  # checked again when pinned
        store.verify_file(path)
    return Prepared(plan, allocation, utility, features)


# ---------------------------------------------------------------------------- the run


@dataclass
class Run:
    """A connected run whose inputs are checked: the session, the inputs and the allocation's leaves."""

    session: steps.Session
    prepared: Prepared
    table: pd.DataFrame  # the allocation with accounts
    leaves: list[tuple[str, int]]


def open_run(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    inputs: Inputs,
    outdir: Path,
    rpc_url: str | None,
    ipfs_api: str | None,
) -> Run:
    """Check the inputs, then connect to the chain and the content store; nothing is sent."""
    eco = cfg.economy
    prep = prepare(cfg, setting, inputs)  # nothing is sent before every input has been checked
    chain = chain_mod.connect(rpc_url, chain_id=eco.chain_id, n_accounts=len(inputs.institutions) + 2)
    store_dir = outdir / "ipfs" if ipfs_api is None else None
    content = ipfs.open_store(ipfs_api, store_dir, eco.cid_version)
    alloc = prep.allocation
    individuals = list(alloc.table.loc[alloc.table["kind"] == "individual", "recipient_id"])
    parties = make_parties(cfg, chain, inputs.institutions, individuals, seed)
    table, leaves = allocation_leaves(alloc, parties.accounts, source=eco.accounts_csv or "demo accounts")
    session = steps.Session(cfg, seed, setting, chain, content, parties, GasMeter(chain), ipfs_api, store_dir)
    return Run(session, prep, table, leaves)


def _run(cfg, seed, setting, inputs: Inputs, outdir: Path, rpc_url, ipfs_api, n_individuals) -> list[Path]:
    run = open_run(cfg, seed, setting, inputs, outdir, rpc_url, ipfs_api)
    s, prep, table, leaves = run.session, run.prepared, run.table, run.leaves
    parties, alloc = s.parties, prep.allocation
    tree = merkle.build_tree(leaves)
    contracts = steps.deploy(s)
    steps.record_training(s, contracts.registry, prep.plan, prep.features)
    doc = steps.allocation_document(s, contracts, leaves, prep.grand_utility)
    cid = steps.publish_allocation(s, doc)
    verdicts = steps.run_attesters(s, contracts.pool, cid)
    if not contracts.pool.functions.finalized().call():
        why = "; ".join(f"{v.institution}: {v.decision} ({v.reason})" for v in verdicts)
        raise RuntimeError(
            f"the reward pool did not finalize: no strict majority attested the published allocation ({why})"
        )
    positive = table[table["amount"].map(int) > 0]
    leaf_of = dict(zip(positive["recipient_id"], range(len(positive))))  # leaf i = i-th positive row
    who = claimers(table, list(inputs.institutions), n_individuals, seed)
    steps.claim(s, contracts.pool, tree, leaf_of, who)
    flows = steps.sweep_and_check(s, contracts.token, contracts.pool)

    table["claimed"] = table["recipient_id"].isin(set(who))
    table["leaf"] = [leaf_of.get(r, -1) for r in table["recipient_id"]]
    alloc_out = table[["kind", "recipient_id", "account", "amount", "institution", "value", "leaf", "claimed"]].copy()
    alloc_out["amount"] = alloc_out["amount"].map(str)  # exact: base units exceed float precision
    deployment = _deployment(s, contracts, doc, cid, alloc, flows, len(prep.plan.rounds))
    attestations = pd.DataFrame([v.as_row() for v in verdicts])
    return [
        store.write_table(outdir / OUTPUTS["gas"], s.gas.table()),
        store.write_table(outdir / OUTPUTS["allocation"], alloc_out),
        store.write_table(outdir / OUTPUTS["balances"], balances_table(contracts.token, parties, who, contracts.pool)),
        store.write_table(outdir / OUTPUTS["pins"], pd.DataFrame(s.pins)),
        store.write_table(outdir / OUTPUTS["attestations"], attestations),
        store.write_json(outdir / OUTPUTS["deployment"], deployment),
    ]


def _deployment(
    s: steps.Session, c: steps.Contracts, doc, cid: str, alloc: rewards.Allocation, flows: dict[str, int], rounds: int
) -> dict[str, Any]:
    eco = s.cfg.economy
    return {
        "chain": s.chain.kind,
        "endpoint": s.chain.endpoint,
        "chain_id": s.chain.chain_id,
        "genesis_hash": s.chain.genesis_hash(),
        "token": c.token.address,
        "registry": c.registry.address,
        "pool": c.pool.address,
        "treasury": s.parties.treasury,
        "quorum": eco.quorum,
        "merkle_root": "0x" + doc.tree().root.hex(),
        "training_digest": doc.training,
        "allocation_cid": cid,
        "allocation_total": str(doc.total),
        "grand_utility": doc.grand_utility,
        "pool_amount": str(eco.pool_amount),
        "remainder": str(alloc.remainder),
        "funded": str(flows["funded"]),
        "claimed": str(flows["claimed"]),
        "returned_to_treasury": str(flows["returned"]),
        "donations": str(flows["donations"]),
        "rounds_on_chain": rounds,
        "best_round": doc.best_round,
        "ipfs": "embedded" if s.ipfs_api is None else "daemon",
        "cid_version": eco.cid_version,
    }


def balances_table(token, parties: Parties, claimers: Sequence[str], pool) -> pd.DataFrame:
    """Token balances after the run: the claimers, the treasury and the pool."""
    kind = {rid: "institution" if rid in parties.institutions else "individual" for rid in claimers}
    holders = [(kind[rid], rid, parties.accounts[rid]) for rid in claimers]
    holders += [("treasury", "treasury", parties.treasury), ("pool", "pool", pool.address)]
    rows = [(kind, rid, account, str(token.functions.balanceOf(account).call())) for kind, rid, account in holders]
    return pd.DataFrame(rows, columns=["kind", "recipient_id", "account", "balance"])


# ---------------------------------------------------------------------------- payout scaling


def run_payout_scaling_stage(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    *,
    root: str | os.PathLike | None = None,
    rpc_url: str | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Measure the payout cost table (``<S>/economy/payout_scaling.csv``, see
    :mod:`ddval.economy.scaling`) on a fresh embedded chain or the RPC endpoint; resumable."""
    from ddval.economy.scaling import measure_payout_scaling

    eco = cfg.economy
    rpc_url = rpc_url if rpc_url is not None else eco.rpc_url
    outdir = economy_dir(cfg, seed, setting, root)
    params = {
        "counts": eco.recipient_counts,
        "quorum": eco.quorum,
        "batch": eco.loop_batch_size,
        "all_up_to": eco.measure_all_up_to,
        "claims_all_up_to": eco.claims_all_up_to,
        "sample": eco.claim_sample,
        "seed": seed,
        "rpc_url_sha256": _url_digest(rpc_url),
    }

    def compute() -> list[Path]:
        chain = chain_mod.connect(rpc_url, chain_id=eco.chain_id, n_accounts=eco.quorum + 1)
        table = measure_payout_scaling(
            chain,
            tuple(eco.recipient_counts),
            quorum=eco.quorum,
            batch_size=eco.loop_batch_size,
            loop_all_up_to=eco.measure_all_up_to,
            claims_all_up_to=eco.claims_all_up_to,
            claim_sample=eco.claim_sample,
            seed=seed,
        )
        return [store.write_table(outdir / "payout_scaling.csv", table)]

    store.run_stage(outdir, "payout_scaling", params, compute, force=force)
    return store.read_table(outdir / "payout_scaling.csv")
