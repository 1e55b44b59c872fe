"""The token-economy stage (notebook 05): swarm rounds on chain, artifacts on IPFS, payouts.

:func:`run_economy` reads the outputs of the training and valuation stages of one setting
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

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from ddval import layout, store
from ddval.layout import economy_dir
from ddval.config import ExperimentConfig
from ddval.economy import chain as chain_mod
from ddval.economy import ipfs, merkle, rewards
from ddval.economy.contracts import load_artifact

#: Validation losses go on chain as unsigned integers: round(loss * LOSS_SCALE). 1e18 keeps every
#: distinct float64 loss below 1 distinct, so the chain ranks rounds as the training stage does.
LOSS_SCALE = 10**18
#: ETH sent to each sampled individual so that it can pay for its own claim (dev chains).
CLAIM_GAS_ETH = 10**17


class EconomyInputError(rewards.RewardError):
    """An input of the economy stage is missing or inconsistent; the message names the file."""


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """Paths of everything the stage reads."""

    institutions: tuple[str, ...]
    institution_values: Path
    point_values: Path
    rounds: Path
    round_models: Path  # <grand>/rounds/<r:03d>/<institution>.pt
    features: Path  # features/<institution>.npz

    def files(self) -> list[Path]:
        return [self.institution_values, self.point_values, self.rounds]


def locate_inputs(cfg: ExperimentConfig, seed: int, setting: str, root: str | os.PathLike | None = None) -> Inputs:
    """Where the training and valuation stages put this stage's inputs; a clear error if absent."""
    vdir = layout.valuation_dir(cfg, seed, setting, root)
    grand = layout.train_dir(cfg, seed, setting, root) / layout.grand_coalition_id(cfg, setting)
    inputs = Inputs(
        institutions=tuple(i.name for i in cfg.setting(setting).institutions),
        institution_values=vdir / "institution_values.csv",
        point_values=vdir / "point_values.parquet",
        rounds=grand / "rounds.csv",
        round_models=grand / "rounds",
        features=layout.features_dir(cfg, seed, setting, root),
    )
    for path, stage in ((inputs.rounds, "03_train"), (inputs.institution_values, "04_valuation"), (inputs.point_values, "04_valuation")):
        if not path.exists():
            raise EconomyInputError(f"{path}: not found; run notebook {stage} for preset {cfg.preset!r}, seed {seed}, setting {setting!r} first")
    return inputs


@dataclass(frozen=True)
class RoundPlan:
    """The swarm rounds to record: per round, per institution, the model file and integer loss."""

    rounds: tuple[int, ...]  # round numbers as in rounds.csv
    models: dict[tuple[int, str], Path]
    losses: dict[tuple[int, str], int]
    stop_index: int  # index into ``rounds`` of the round after which the on-chain rule stops


def plan_rounds(inputs: Inputs, patience: int, max_rounds: int) -> RoundPlan:
    """Validate ``rounds.csv`` and the model files; mirror the registry's stopping rule."""
    frame = pd.read_csv(inputs.rounds)
    src = str(inputs.rounds)
    rewards._require_columns(frame, ("round", "institution", "val_loss"), src)
    rounds = sorted(int(r) for r in frame["round"].unique())
    models, losses = {}, {}
    for idx, row in frame.iterrows():
        where = f"{src}: row {idx + 2}"
        name = row["institution"]
        if name not in inputs.institutions:
            raise EconomyInputError(f"{where}: institution {name!r} is not one of {list(inputs.institutions)}")
        loss = row["val_loss"]
        if not isinstance(loss, (int, float)) or not math.isfinite(loss) or loss < 0:
            raise EconomyInputError(f"{where}: field 'val_loss' is {loss!r}; expected a finite number >= 0")
        key = (int(row["round"]), name)
        if key in losses:
            raise EconomyInputError(f"{where}: round {key[0]} of {name!r} appears twice")
        losses[key] = round(Fraction(float(loss)) * LOSS_SCALE)
        path = inputs.round_models / f"{key[0]:03d}" / f"{name}.pt"
        if not path.exists():
            raise EconomyInputError(f"{path}: local model of {name!r} in round {key[0]} not found (listed in {src})")
        models[key] = path
    missing = [(r, i) for r in rounds for i in inputs.institutions if (r, i) not in losses]
    if missing:
        raise EconomyInputError(f"{src}: missing round records {missing[:5]}")
    means = [sum(losses[(r, i)] for i in inputs.institutions) // len(inputs.institutions) for r in rounds]
    stop = stopping_index(means, patience, max_rounds)
    if stop is None:
        raise EconomyInputError(
            f"{src}: {len(rounds)} rounds, but the stopping rule (patience {patience}, max {max_rounds} rounds) "
            "does not fire on them; was training stopped by another rule?"
        )
    if stop != len(rounds) - 1:
        raise EconomyInputError(f"{src}: the stopping rule fires after round {rounds[stop]}, but the table goes on to round {rounds[-1]}")
    return RoundPlan(tuple(rounds), models, losses, stop)


def stopping_index(mean_losses: Sequence[int], patience: int, max_rounds: int) -> int | None:
    """Index of the round after which ``SwarmRegistry`` stops (its rule, in Python), or None."""
    best, best_i = None, 0
    for i, mean in enumerate(mean_losses):
        if best is None or mean < best:
            best, best_i = mean, i
        if i - best_i >= patience or i + 1 >= max_rounds:
            return i
    return None


# ---------------------------------------------------------------------------- accounts


def demo_individual_key(seed: int, recipient_id: str) -> LocalAccount:
    """The demo key of an individual: keccak256 of a public label (demo only: anyone can derive it)."""
    from eth_hash.auto import keccak

    return Account.from_key(keccak(f"ddval-demo-individual:{seed}:{recipient_id}".encode()))


@dataclass
class Parties:
    """Who signs what: the operator (deploys, funds), institutions, the treasury and individuals."""

    operator: LocalAccount
    institutions: dict[str, LocalAccount]
    treasury: str
    accounts: dict[str, str]  # recipient_id -> address, for the allocation
    individual_keys: dict[str, LocalAccount] = field(default_factory=dict)  # demo individuals only


def make_parties(cfg: ExperimentConfig, chain: chain_mod.Chain, institutions: Sequence[str], recipients: Sequence[str], seed: int) -> Parties:
    """Demo accounts on dev chains; on other chains the keys (operator + institutions, in config
    order) come from the environment and the recipients' accounts from ``economy.accounts_csv``."""
    eco = cfg.economy
    dev = chain.kind == "embedded" or chain.chain_id in chain_mod.DEV_CHAIN_IDS
    n = len(institutions)
    if len(chain.accounts) < n + 1:
        raise chain_mod.ChainError(f"{n + 1} keys needed (operator + {n} institutions), {len(chain.accounts)} configured")
    operator = chain.accounts[0]
    inst = {name: chain.accounts[1 + i] for i, name in enumerate(institutions)}
    if eco.treasury is not None:
        if not is_address(eco.treasury):
            raise EconomyInputError(f"economy.treasury {eco.treasury!r} is not an address")
        treasury = to_checksum_address(eco.treasury)
    elif dev and len(chain.accounts) > n + 1:
        treasury = chain.accounts[n + 1].address
    else:
        raise EconomyInputError("economy.treasury must be set on a non-development chain")
    accounts = {name: acct.address for name, acct in inst.items()}
    keys: dict[str, LocalAccount] = {}
    if eco.accounts_csv is not None:
        path = Path(eco.accounts_csv)
        if not path.exists():
            raise EconomyInputError(f"{path}: account table (economy.accounts_csv) not found")
        accounts.update(rewards.load_accounts(pd.read_csv(path, dtype=str), source=str(path)))
    elif dev:
        for rid in recipients:
            keys[rid] = demo_individual_key(seed, rid)
            accounts[rid] = keys[rid].address
    else:
        raise EconomyInputError("economy.accounts_csv (kind, recipient_id, account) is required on a non-development chain")
    return Parties(operator, inst, treasury, accounts, keys)


# ---------------------------------------------------------------------------- sending, with a gas log


class Ledger:
    """Sends transactions through a :class:`~ddval.economy.chain.Chain` and logs their gas."""

    def __init__(self, chain: chain_mod.Chain):
        self.chain = chain
        self.rows: list[dict[str, Any]] = []

    def send(self, operation: str, actor: str, call: Any, sender: LocalAccount, **kw: Any) -> dict[str, Any]:
        receipt = self.chain.send(call, sender, **kw)
        self._log(operation, actor, receipt)
        return receipt

    def deploy(self, operation: str, actor: str, artifact: Any, *args: Any, sender: LocalAccount):
        contract, receipt = self.chain.deploy(artifact, *args, sender=sender)
        self._log(operation, actor, receipt)
        return contract

    def send_eth(self, operation: str, actor: str, to: str, value: int, sender: LocalAccount) -> None:
        w3 = self.chain.w3
        tx = {
            "to": to,
            "value": value,
            "gas": 21_000,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain.chain_id,
            "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        self._log(operation, actor, dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.chain.receipt_timeout)))

    def _log(self, operation: str, actor: str, receipt: dict[str, Any]) -> None:
        tx_hash = receipt["transactionHash"]
        self.rows.append({"operation": operation, "actor": actor, "gas_used": int(receipt["gasUsed"]), "tx_hash": "0x" + bytes(tx_hash).hex()})

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["operation", "actor", "gas_used", "tx_hash"])


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


def run_economy(
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
    ledger: Ledger
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
    eco, op, ledger = s.cfg.economy, s.parties.operator, s.ledger
    if eco.token_address is None:
        token = ledger.deploy("deploy_token", "operator", load_artifact("DDValToken"), op.address, eco.pool_amount, sender=op)
    else:
        token = s.chain.at(load_artifact("DDValToken"), eco.token_address)  # any ERC-20: only the IERC20 part is used
    train = s.cfg.train
    registry = ledger.deploy("deploy_registry", "operator", load_artifact("SwarmRegistry"), op.address, train.patience, train.max_rounds, sender=op)
    for acct in s.parties.institutions.values():
        ledger.send("register_institution", "operator", registry.functions.registerInstitution(acct.address), op)
    pool = ledger.deploy(
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
            s.ledger.send("submit_round", name, registry.functions.submitRound(chain_round, cid, plan.losses[(r, name)]), acct)
    if not registry.functions.stopped().call():
        raise RuntimeError("the registry did not stop after the last recorded round (Python and Solidity rules disagree)")
    for name, acct in s.parties.institutions.items():
        cid = s.pin("features", name, features[name].read_bytes(), f"{name}.npz")
        s.ledger.send("submit_features", name, registry.functions.submitFeatures(cid), acct)


def _post_allocation(s: _Session, token, pool, tree: merkle.MerkleTree) -> str:
    """Pin the table, fund the pool, and let ``quorum`` institutions attest the root they rebuilt
    from the pinned table (an attester never signs a root it has not re-derived)."""
    eco, op = s.cfg.economy, s.parties.operator
    cid = s.pin("allocation", "operator", allocation_csv(tree), "allocation.csv")
    s.ledger.send("approve", "operator", token.functions.approve(pool.address, eco.pool_amount), op)
    s.ledger.send("fund", "operator", pool.functions.fund(eco.pool_amount), op)
    cid_text = s.pins[-1]["cid"]
    total = sum(a for _, a in tree.values)
    for name in list(s.parties.institutions)[: eco.quorum]:
        root = root_from_table(s.content.cat(cid_text))
        if root != tree.root:
            raise RuntimeError(f"{name}: the pinned allocation table does not rebuild the posted root")
        s.ledger.send("attest", name, pool.functions.attest(root, total, cid), s.parties.institutions[name])
    return cid_text


def _claim(s: _Session, pool, tree: merkle.MerkleTree, claimers: Sequence[str]) -> None:
    """Institutions claim with their own keys; demo individuals get gas money and claim themselves."""
    op = s.parties.operator
    index = {account: i for i, (account, _) in enumerate(tree.values)}
    for rid in claimers:
        i = index[s.parties.accounts[rid]]
        account, amount = tree.values[i]
        if rid in s.parties.institutions:
            s.ledger.send("claim_institution", "institution", pool.functions.claim(account, amount, tree.proof(i)), s.parties.institutions[rid])
            continue
        signer = s.parties.individual_keys.get(rid, op)  # without a demo key the operator relays the claim
        if signer is not op:
            s.ledger.send_eth("eth_for_gas", "operator", signer.address, CLAIM_GAS_ETH, op)
        s.ledger.send("claim_individual", "individual", pool.functions.claim(account, amount, tree.proof(i)), signer)


def _sweep_and_check(s: _Session, token, pool) -> tuple[int, int, int]:
    """On dev chains jump past the claim deadline and return the rest to the treasury; then check
    ``claimed + returned + left == funded``. Returns (funded, claimed, returned)."""
    swept = 0
    if s.cfg.economy.sweep and (s.chain.kind == "embedded" or s.chain.chain_id in chain_mod.DEV_CHAIN_IDS):
        s.chain.advance_time(pool.functions.sweepNotBefore().call() - s.chain.timestamp() + 1)
        before = token.functions.balanceOf(s.parties.treasury).call()
        s.ledger.send("sweep", "anyone", pool.functions.sweep(), s.parties.operator)
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

    s = _Session(cfg, chain, content, parties, Ledger(chain))
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
        store.write_table(outdir / names["gas"], s.ledger.table()),
        store.write_table(outdir / names["allocation"], alloc_out),
        store.write_table(outdir / names["balances"], balances_table(token, parties, claimers, pool)),
        store.write_table(outdir / names["pins"], pd.DataFrame(s.pins)),
        store.write_json(outdir / names["deployment"], deployment),
    ]


def allocation_csv(tree: merkle.MerkleTree) -> bytes:
    """The allocation table that is pinned to IPFS: ``account,amount`` per leaf (no patient ids)."""
    buf = io.StringIO()
    buf.write("account,amount\n")
    for account, amount in tree.values:
        buf.write(f"{account},{amount}\n")
    return buf.getvalue().encode()


def root_from_table(data: bytes) -> bytes:
    """Rebuild the Merkle root from a pinned allocation table (what an attester checks)."""
    lines = data.decode().strip().splitlines()
    if not lines or lines[0] != "account,amount":
        raise rewards.RewardError("allocation table: expected the header 'account,amount'")
    entries = []
    for n, line in enumerate(lines[1:], start=2):
        account, _, amount = line.partition(",")
        if not amount.isdigit():
            raise rewards.RewardError(f"allocation table: line {n}: amount {amount!r} is not a non-negative integer")
        entries.append((account, int(amount)))
    return merkle.build_tree(entries).root


def sample_individuals(table: pd.DataFrame, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` individuals with a positive amount (sorted by recipient id)."""
    ids = sorted(table.loc[(table["kind"] == "individual") & (table["amount"].map(int) > 0), "recipient_id"])
    if n >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.choice(len(ids), size=n, replace=False))


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


def summary(result: EconomyResult) -> pd.DataFrame:
    """One-row-per-quantity overview in whole tokens (18 decimals), for the notebook."""
    d = result.deployment
    alloc = result.table("allocation")
    amounts = alloc["amount"].map(int)
    rows = [
        ("pool", int(d["pool_amount"])),
        ("allocated to institutions", int(amounts[alloc["kind"] == "institution"].sum())),
        ("allocated to individuals", int(amounts[alloc["kind"] == "individual"].sum())),
        ("not allocated (rounding, clipped values)", int(d["remainder"])),
        ("claimed in this run", int(d["claimed"])),
        ("returned to the treasury after the deadline", int(d["returned_to_treasury"])),
    ]
    return pd.DataFrame([(k, v / 10**18, v) for k, v in rows], columns=["quantity", "tokens", "base_units"]).astype({"base_units": str})


def balances_view(result: EconomyResult) -> pd.DataFrame:
    """Balances in whole tokens (18 decimals) by kind and recipient, for the notebook."""
    b = result.table("balances")
    return pd.DataFrame({"kind": b["kind"], "recipient_id": b["recipient_id"], "tokens": [int(x) / 10**18 for x in b["balance"]]})


def gas_by_operation(gas: pd.DataFrame) -> pd.DataFrame:
    """Gas per operation: count, min, mean, max (the table of notebook 05)."""
    order = list(dict.fromkeys(gas["operation"]))
    g = gas.groupby("operation", sort=False)["gas_used"].agg(["count", "min", "mean", "max"]).reindex(order)
    g["mean"] = g["mean"].round().astype(int)
    return g.reset_index()


# ---------------------------------------------------------------------------- payout scaling


def run_payout_scaling(
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


def scaling_view(table: pd.DataFrame) -> pd.DataFrame:
    """The scaling table as shown in notebook 05: gas in thousands, sampled rows marked."""
    view = table[["method", "n_recipients", "n_transactions", "n_measured", "payer_gas", "total_gas", "gas_per_recipient"]].copy()
    for col in ("payer_gas", "total_gas"):
        view[col] = (view[col] / 1e3).round(1)
    view["gas_per_recipient"] = view["gas_per_recipient"].round(0)
    view = view.rename(columns={"payer_gas": "payer_kgas", "total_gas": "total_kgas"})
    view["measured"] = ["all" if m == n else f"sample of {m}" for m, n in zip(table["n_measured"], table["n_recipients"])]
    return view.drop(columns="n_measured")


def plot_scaling(table: pd.DataFrame, ax=None):
    """Gas per recipient (measured) and gas paid by the payer, against the number of recipients."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = {"transfer_loop": "transfer loop (push)", "merkle_claim": "Merkle claims (pull)"}
    for method, rows in table.groupby("method", sort=False):
        ax[0].plot(rows["n_recipients"], rows["gas_per_recipient"], marker="o", label=labels.get(method, method))
        ax[1].plot(rows["n_recipients"], rows["payer_gas"], marker="o", label=labels.get(method, method))
    ax[0].set(xscale="log", xlabel="recipients", ylabel="gas per recipient", title="measured gas per recipient")
    ax[1].set(xscale="log", yscale="log", xlabel="recipients", ylabel="gas", title="gas paid by the payer (measured rows)")
    ax[0].legend(frameon=False)
    ax[0].figure.tight_layout()
    return ax
