"""The token-economy stage (notebook 05): swarm rounds on chain, artifacts on IPFS, payouts.

:func:`run_economy_stage` reads the outputs of the training and valuation stages of one setting
(``docs/tables.md``), then

1. connects to the chain and the content store (embedded by default, or an RPC URL / IPFS API);
2. deploys the reward token (unless ``economy.token_address`` names one), the swarm registry and
   the reward pool, and registers the institutions;
3. pins every institution's local model of every round of the grand coalition and records its CID
   and validation loss per round (the registry evaluates the stopping rule); pins and records the
   deep-feature files;
4. computes the allocation (:mod:`ddval.economy.rewards`), pins its table, and has ``quorum``
   institutions fetch the table back, rebuild the Merkle root and attest it;
5. funds the pool; every institution and a seeded sample of individuals claims with its proof;
   on a dev chain it then jumps past the claim deadline and returns the rest to the treasury, and
   checks ``claimed + returned == funded``.

Outputs in ``<S>/economy/``: ``gas.csv``, ``allocation.csv``, ``balances.csv``, ``pins.csv``,
``deployment.json`` (one stage of :mod:`ddval.store`; a finished run with the same parameters and
inputs is not sent again). Nothing is sent before every input has been validated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ddval import store
from ddval.config import ExperimentConfig
from ddval.economy import chain as chain_mod
from ddval.economy import ipfs, merkle, rewards
from ddval.economy.contracts import load_artifact
from ddval.economy.gas import GasMeter
from ddval.economy.inputs import EconomyInputError, Inputs, RoundPlan, locate_inputs, plan_rounds
from ddval.economy.parties import Parties, make_parties, sample_individuals
from ddval.economy.published import allocation_csv, root_from_table
from ddval.layout import economy_dir

#: ETH sent to each sampled individual so that it can pay for its own claim (dev chains).
CLAIM_GAS_ETH = 10**17


# ---------------------------------------------------------------------------- the stage


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
    """Run the token-economy stage of one setting (see the module docstring); resumable."""
    eco = cfg.economy
    rpc_url = rpc_url if rpc_url is not None else eco.rpc_url
    ipfs_api = ipfs_api if ipfs_api is not None else eco.ipfs_api
    n_individuals = eco.n_individuals if n_individuals is None else int(n_individuals)
    inputs = locate_inputs(cfg, seed, setting, root)
    outdir = economy_dir(cfg, seed, setting, root)
    params = {
        "economy": eco,
        "train": {"patience": cfg.train.patience, "max_rounds": cfg.train.max_rounds},
        "seed": seed,
        "setting": setting,
        "rpc_url": rpc_url,
        "ipfs_api": ipfs_api,
        "n_individuals": n_individuals,
        "inputs": {p.name: store.file_sha256(p) for p in inputs.files()},
    }
    names = {"gas": "gas.csv", "allocation": "allocation.csv", "balances": "balances.csv", "pins": "pins.csv", "deployment": "deployment.json"}

    def compute() -> list[Path]:
        return _run(cfg, seed, inputs, outdir, rpc_url, ipfs_api, n_individuals, names)

    res = store.run_stage(outdir, "economy", params, compute, force=force)
    return EconomyResult({k: outdir / v for k, v in names.items()}, res.skipped)


@dataclass
class _Session:
    """What the steps of one run share: the connections, the signers, and the logs."""

    cfg: ExperimentConfig
    chain: chain_mod.Chain
    content: ipfs.ContentStore
    parties: Parties
    gas: GasMeter
    pins: list[dict[str, Any]] = field(default_factory=list)

    def pin(self, kind: str, owner: str, data: bytes, label: str) -> bytes:
        """Add ``data`` to IPFS; log it; return the binary CID that goes on chain."""
        cid = self.content.add(data, label)
        self.pins.append({"artifact": kind, "owner": owner, "name": label, "bytes": len(data), "cid": cid})
        return ipfs.CID.parse(cid).to_bytes()


@dataclass(frozen=True)
class _Prepared:
    """Validated inputs: nothing has been sent when these exist."""

    plan: RoundPlan
    allocation: rewards.Allocation
    features: dict[str, Path]


def _validate(cfg: ExperimentConfig, inputs: Inputs) -> _Prepared:
    eco = cfg.economy
    plan = plan_rounds(inputs, cfg.train.patience, cfg.train.max_rounds)
    inst_values = rewards.institution_values(pd.read_csv(inputs.institution_values), inputs.institutions, eco.value_method, source=str(inputs.institution_values))
    pat_values = rewards.patient_values(pd.read_parquet(inputs.point_values), inputs.institutions, source=str(inputs.point_values))
    allocation = rewards.allocate(inst_values, pat_values, eco.pool_amount, individual_share=eco.individual_share, negative=eco.negative_values)
    features = {name: inputs.features / f"{name}.npz" for name in inputs.institutions}
    for name, path in features.items():
        if not path.exists():
            raise EconomyInputError(f"{path}: deep features of {name!r} not found; run notebook 04_valuation first")
    if eco.quorum > len(inputs.institutions):
        raise EconomyInputError(f"economy.quorum {eco.quorum} exceeds the {len(inputs.institutions)} institutions")
    return _Prepared(plan, allocation, features)


def _deploy(s: _Session):
    eco, op, gas = s.cfg.economy, s.parties.operator, s.gas
    if eco.token_address is None:
        token = gas.deploy("deploy_token", "operator", load_artifact("DDValToken"), op.address, eco.pool_amount, sender=op)
    else:
        token = s.chain.at(load_artifact("DDValToken"), eco.token_address)  # any ERC-20: only the IERC20 part is used
    train = s.cfg.train
    registry = gas.deploy("deploy_registry", "operator", load_artifact("SwarmRegistry"), op.address, train.patience, train.max_rounds, sender=op)
    for acct in s.parties.institutions.values():
        gas.send("register_institution", "operator", registry.functions.registerInstitution(acct.address), op)
    pool = gas.deploy(
        "deploy_pool", "operator", load_artifact("RewardPool"),
        token.address, registry.address, eco.quorum, s.parties.treasury, eco.attestation_window_s, eco.claim_window_s,
        sender=op,
    )  # fmt: skip
    return token, registry, pool


def _record_training(s: _Session, registry, plan: RoundPlan, features: dict[str, Path]) -> None:
    """Each institution pins its local model of every round and records CID + loss; then its features."""
    for chain_round, r in enumerate(plan.rounds):
        for name, acct in s.parties.institutions.items():
            cid = s.pin("model", name, plan.models[(r, name)].read_bytes(), f"round {r} {name}.pt")
            s.gas.send("submit_round", name, registry.functions.submitRound(chain_round, cid, plan.losses[(r, name)]), acct)
    if not registry.functions.stopped().call():
        raise RuntimeError("the registry did not stop after the last recorded round (Python and Solidity rules disagree)")
    for name, acct in s.parties.institutions.items():
        cid = s.pin("features", name, features[name].read_bytes(), f"{name}.npz")
        s.gas.send("submit_features", name, registry.functions.submitFeatures(cid), acct)


def _post_allocation(s: _Session, token, pool, tree: merkle.MerkleTree) -> str:
    """Pin the table, fund the pool, and let ``quorum`` institutions attest the root they rebuilt
    from the pinned table (an attester never signs a root it has not re-derived)."""
    eco, op = s.cfg.economy, s.parties.operator
    cid = s.pin("allocation", "operator", allocation_csv(tree), "allocation.csv")
    s.gas.send("approve", "operator", token.functions.approve(pool.address, eco.pool_amount), op)
    s.gas.send("fund", "operator", pool.functions.fund(eco.pool_amount), op)
    cid_text = s.pins[-1]["cid"]
    total = sum(a for _, a in tree.values)
    for name in list(s.parties.institutions)[: eco.quorum]:
        root = root_from_table(s.content.cat(cid_text))
        if root != tree.root:
            raise RuntimeError(f"{name}: the pinned allocation table does not rebuild the posted root")
        s.gas.send("attest", name, pool.functions.attest(root, total, cid), s.parties.institutions[name])
    return cid_text


def _claim(s: _Session, pool, tree: merkle.MerkleTree, claimers: Sequence[str]) -> None:
    """Institutions claim with their own keys; demo individuals get gas money and claim themselves."""
    op = s.parties.operator
    index = {account: i for i, (account, _) in enumerate(tree.values)}
    for rid in claimers:
        i = index[s.parties.accounts[rid]]
        account, amount = tree.values[i]
        if rid in s.parties.institutions:
            s.gas.send("claim_institution", "institution", pool.functions.claim(account, amount, tree.proof(i)), s.parties.institutions[rid])
            continue
        signer = s.parties.individual_keys.get(rid, op)  # without a demo key the operator relays the claim
        if signer is not op:
            s.gas.send_eth("eth_for_gas", "operator", signer.address, CLAIM_GAS_ETH, op)
        s.gas.send("claim_individual", "individual", pool.functions.claim(account, amount, tree.proof(i)), signer)


def _sweep_and_check(s: _Session, token, pool) -> tuple[int, int, int]:
    """On dev chains jump past the claim deadline and return the rest to the treasury; then check
    ``claimed + returned + left == funded``. Returns (funded, claimed, returned)."""
    swept = 0
    if s.cfg.economy.sweep and (s.chain.kind == "embedded" or s.chain.chain_id in chain_mod.DEV_CHAIN_IDS):
        s.chain.advance_time(pool.functions.sweepNotBefore().call() - s.chain.timestamp() + 1)
        before = token.functions.balanceOf(s.parties.treasury).call()
        s.gas.send("sweep", "anyone", pool.functions.sweep(), s.parties.operator)
        swept = token.functions.balanceOf(s.parties.treasury).call() - before
    claimed = pool.functions.claimedTotal().call()
    funded = pool.functions.funded().call()
    left = token.functions.balanceOf(pool.address).call()
    if claimed + swept + left != funded:
        raise RuntimeError(f"conservation violated: claimed {claimed} + returned {swept} + left {left} != funded {funded}")
    return funded, claimed, swept


def _run(cfg, seed, inputs: Inputs, outdir: Path, rpc_url, ipfs_api, n_individuals, names) -> list[Path]:
    eco = cfg.economy
    prep = _validate(cfg, inputs)  # nothing is sent before every input has been checked
    chain = chain_mod.connect(rpc_url, chain_id=eco.chain_id, n_accounts=len(inputs.institutions) + 2)
    content = ipfs.open_store(ipfs_api, outdir / "ipfs" if ipfs_api is None else None, eco.cid_version)
    alloc = prep.allocation
    parties = make_parties(cfg, chain, inputs.institutions, list(alloc.table.loc[alloc.table["kind"] == "individual", "recipient_id"]), seed)
    table = rewards.attach_accounts(alloc, parties.accounts, source=eco.accounts_csv or "demo accounts")
    leaves = rewards.leaves(table)
    if not leaves:
        raise EconomyInputError("the allocation pays nobody (every value is zero or negative); nothing to post")
    tree = merkle.build_tree(leaves)

    s = _Session(cfg, chain, content, parties, GasMeter(chain))
    token, registry, pool = _deploy(s)
    _record_training(s, registry, prep.plan, prep.features)
    alloc_cid = _post_allocation(s, token, pool, tree)
    claimers = list(inputs.institutions) + sample_individuals(table, n_individuals, seed)
    _claim(s, pool, tree, claimers)
    funded, claimed, returned = _sweep_and_check(s, token, pool)

    table["claimed"] = table["recipient_id"].isin(set(claimers))
    alloc_out = table[["kind", "recipient_id", "account", "amount", "institution", "value", "claimed"]].copy()
    alloc_out["amount"] = alloc_out["amount"].map(str)  # exact: base units exceed float precision
    deployment = {
        "chain": chain.kind,
        "chain_id": chain.chain_id,
        "token": token.address,
        "registry": registry.address,
        "pool": pool.address,
        "treasury": parties.treasury,
        "merkle_root": "0x" + tree.root.hex(),
        "allocation_cid": alloc_cid,
        "allocation_total": str(sum(a for _, a in leaves)),
        "pool_amount": str(eco.pool_amount),
        "remainder": str(alloc.remainder),
        "funded": str(funded),
        "claimed": str(claimed),
        "returned_to_treasury": str(returned),
        "rounds_on_chain": len(prep.plan.rounds),
        "best_round": int(registry.functions.bestRound().call()),
        "ipfs": "embedded" if ipfs_api is None else "daemon",
        "cid_version": eco.cid_version,
    }
    return [
        store.write_table(outdir / names["gas"], s.gas.table()),
        store.write_table(outdir / names["allocation"], alloc_out),
        store.write_table(outdir / names["balances"], balances_table(token, parties, claimers, pool)),
        store.write_table(outdir / names["pins"], pd.DataFrame(s.pins)),
        store.write_json(outdir / names["deployment"], deployment),
    ]


def balances_table(token, parties: Parties, claimers: Sequence[str], pool) -> pd.DataFrame:
    """Token balances after the run: the claimers, the treasury and the pool."""
    rows = []
    for rid in claimers:
        kind = "institution" if rid in parties.institutions else "individual"
        account = parties.accounts[rid]
        rows.append({"kind": kind, "recipient_id": rid, "account": account, "balance": str(token.functions.balanceOf(account).call())})
    rows.append({"kind": "treasury", "recipient_id": "treasury", "account": parties.treasury, "balance": str(token.functions.balanceOf(parties.treasury).call())})
    rows.append({"kind": "pool", "recipient_id": "pool", "account": pool.address, "balance": str(token.functions.balanceOf(pool.address).call())})
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
        "rpc_url": rpc_url,
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
