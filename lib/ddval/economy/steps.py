"""What the economy stage sends, step by step (:mod:`ddval.economy.stage` runs them in order).

1. :func:`deploy`: the reward token (unless ``economy.token_address`` names one) and the swarm
   registry; the institutions are registered and registration is closed; then the reward pool
   (which copies that institution set) is deployed and funded: money arrives only after the set is
   fixed.
2. :func:`record_training`: each institution pins its local model of every round and records CID
   and validation loss (the registry evaluates the stopping rule), then pins and records its
   feature file.
3. :func:`publish_allocation`: the allocation document is pinned (:mod:`ddval.economy.published`).
4. :func:`run_attesters`: every institution recomputes the allocation from what is pinned and
   attests only if it matches (:mod:`ddval.economy.attester`): in-process on the embedded chain,
   one OS process per institution, holding only its own key, on an RPC chain.
5. :func:`claim` and :func:`sweep_and_check`: claims with Merkle proofs; after the deadline the rest
   returns to the treasury, and the token flows are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddval import store
from ddval.config import ExperimentConfig
from ddval.economy import ipfs, merkle
from ddval.economy import chain as chain_mod
from ddval.economy.contracts import load_artifact
from ddval.economy.gas import GasMeter
from ddval.economy.inputs import LOSS_SCALE, RoundPlan
from ddval.economy.parties import Parties, is_dev_chain
from ddval.economy.published import AllocationDocument

if TYPE_CHECKING:
    from ddval.economy.attester import Verdict

#: ETH sent to each sampled individual so that it can pay for its own claim (dev chains).
CLAIM_GAS_ETH = 10**17


@dataclass
class Session:
    """What the steps of one run share: the run, the connections, the signers, and the logs."""

    cfg: ExperimentConfig
    seed: int
    setting: str
    chain: chain_mod.Chain
    content: ipfs.ContentStore
    parties: Parties
    gas: GasMeter
    ipfs_api: str | None = None
    ipfs_store: Path | None = None
    pins: list[dict[str, Any]] = field(default_factory=list)

    def pin(self, kind: str, owner: str, data: bytes, label: str) -> str:
        """Add ``data`` to IPFS; log it; return its CID (text)."""
        cid = self.content.add(data, label)
        self.pins.append({"artifact": kind, "owner": owner, "name": label, "bytes": len(data), "cid": cid})
        return cid

    def pin_file(self, kind: str, owner: str, path: Path, label: str) -> str:
        """Pin the bytes of an upstream output (see :func:`vouched_bytes`); log it; return its CID (text)."""
        return self.pin(kind, owner, vouched_bytes(path), label)


def vouched_bytes(path: Path) -> bytes:
    """The bytes of ``path``, checked first against the completion record that vouches for it.

    Args:
        path: An output of an upstream stage (a round's model, a feature file).

    Returns:
        Its bytes, which are about to be published.

    Raises:
        ddval.store.StaleOutputError: No record vouches for ``path``, or it no longer holds what its
            record says (a file corrupted or edited after its stage finished is never published).
    """
    store.verify_file(path)
    return Path(path).read_bytes()


@dataclass(frozen=True)
class Contracts:
    token: Any
    registry: Any
    pool: Any


def deploy(s: Session) -> Contracts:
    """Token, registry with the institutions (registration closed), and a funded pool."""
    eco, train, op, gas = s.cfg.economy, s.cfg.train, s.parties.operator, s.gas
    if eco.token_address is None:
        token = gas.deploy(
            "deploy_token", "operator", load_artifact("DDValToken"), op.address, eco.pool_amount, sender=op
        )
    else:
        token = s.chain.at(load_artifact("DDValToken"), eco.token_address)  # any ERC-20: only the IERC20 part is used
    registry = gas.deploy(
        "deploy_registry", "operator", load_artifact("SwarmRegistry"),
        op.address, train.patience, train.max_rounds, max_loss(s.cfg), eco.round_timeout_s,
        sender=op,
    )  # fmt: skip
    for acct in s.parties.institutions.values():
        gas.send("register_institution", "operator", registry.functions.registerInstitution(acct.address), op)
    gas.send("close_registration", "operator", registry.functions.closeRegistration(), op)
    pool = gas.deploy(
        "deploy_pool", "operator", load_artifact("RewardPool"),
        token.address, registry.address, eco.quorum, s.parties.treasury, eco.attestation_window_s, eco.claim_window_s,
        sender=op,
    )  # fmt: skip
    gas.send("approve", "operator", token.functions.approve(pool.address, eco.pool_amount), op)
    gas.send("fund", "operator", pool.functions.fund(eco.pool_amount), op)
    return Contracts(token, registry, pool)


def max_loss(cfg: ExperimentConfig) -> int:
    """The registry's bound on submitted losses: ``economy.max_val_loss`` in fixed point."""
    return round(cfg.economy.max_val_loss * LOSS_SCALE)


def record_training(s: Session, registry: Any, plan: RoundPlan, features: dict[str, Path]) -> None:
    """Each institution pins its local model of every round and records CID + loss; then its features."""
    for chain_round, r in enumerate(plan.rounds):
        for name, acct in s.parties.institutions.items():
            cid = s.pin_file("model", name, plan.models[(r, name)], f"round {r} {name}.pt")
            call = registry.functions.submitRound(chain_round, ipfs.CID.parse(cid).to_bytes(), plan.losses[(r, name)])
            s.gas.send("submit_round", name, call, acct)
    if not registry.functions.stopped().call():
        raise RuntimeError("the registry did not stop after the last recorded round (Python and Solidity disagree)")
    for name, acct in s.parties.institutions.items():
        cid = s.pin_file("features", name, features[name], f"{name}.npz")
        s.gas.send("submit_features", name, registry.functions.submitFeatures(ipfs.CID.parse(cid).to_bytes()), acct)


def allocation_document(
    s: Session, c: Contracts, leaves: Sequence[tuple[str, int]], grand_utility: float
) -> AllocationDocument:
    """The document for this run's pool and recorded training."""
    from ddval.economy.published import Policy

    return AllocationDocument(
        chain_id=s.chain.chain_id, registry=c.registry.address, pool=c.pool.address,
        training="0x" + s.chain.call(c.registry.functions.trainingDigest()).hex(),
        best_round=int(c.registry.functions.bestRound().call()), grand_utility=grand_utility,
        policy=Policy.of(s.cfg), leaves=tuple(leaves),
    )  # fmt: skip


def publish_allocation(s: Session, doc: AllocationDocument) -> str:
    """Pin the allocation document; return its CID."""
    return s.pin("allocation", "operator", doc.to_bytes(), "allocation.json")


def run_attesters(s: Session, pool: Any, cid: str) -> list[Verdict]:
    """Every institution reviews the published allocation and attests it if it recomputes it.

    On the embedded chain they run in this process (:func:`ddval.economy.attester.run_attester`);
    on an RPC chain each is a separate ``python -m ddval.economy.attester`` process that is given
    only its own key. Gas of their attestations goes into the gas log."""
    from ddval.economy import attester  # not at import time: `python -m ddval.economy.attester` imports this package

    verdicts = []
    if s.chain.kind == "embedded":
        for name, acct in s.parties.institutions.items():
            verdict = attester.run_attester(s.cfg, s.seed, s.setting, name, s.chain, s.content, pool.address, cid, acct)
            verdicts.append(verdict)
    else:
        with tempfile.TemporaryDirectory(prefix="ddval-attesters-") as tmp:
            config = attester.config_file(s.cfg, Path(tmp) / "consortium.yaml")
            for name, acct in s.parties.institutions.items():
                verdicts.append(_attester_process(s, config, name, acct, pool.address, cid))
    for v in verdicts:
        if v.tx_hash is not None:
            s.gas.record("attest", v.institution, v.gas_used or 0, v.tx_hash)
    return verdicts


def _attester_process(s: Session, config: Path, name: str, acct: Any, pool: str, cid: str) -> Verdict:
    from ddval.economy import attester

    cmd = attester.command(
        config, s.seed, s.setting, name, s.chain, pool, cid, s.ipfs_api, s.ipfs_store, s.cfg.economy.cid_version
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DDVAL_PRIVATE_KEYS", "DDVAL_MNEMONIC")}
    env[attester.KEY_VARIABLE] = "0x" + bytes(acct.key).hex()
    env[attester.RPC_VARIABLE] = str(s.chain.url)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode not in (0, attester.REFUSED):
        raise RuntimeError(f"attester process of {name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return attester.Verdict(**json.loads(proc.stdout.strip().splitlines()[-1]))


def claim(s: Session, pool: Any, tree: merkle.MerkleTree, leaf_of: dict[str, int], claimers: Sequence[str]) -> None:
    """Institutions claim with their own keys; demo individuals get gas money and claim themselves."""
    op = s.parties.operator
    for rid in claimers:
        i = leaf_of[rid]
        account, amount = tree.values[i]
        call = pool.functions.claim(i, account, amount, tree.proof(i))
        if rid in s.parties.institutions:
            s.gas.send("claim_institution", "institution", call, s.parties.institutions[rid])
            continue
        signer = s.parties.individual_keys.get(rid, op)  # without a demo key the operator relays the claim
        if signer is not op:
            s.gas.send_eth("eth_for_gas", "operator", signer.address, CLAIM_GAS_ETH, op)
        s.gas.send("claim_individual", "individual", call, signer)


def sweep_and_check(s: Session, token: Any, pool: Any) -> dict[str, int]:
    """On dev chains jump past the claim deadline and return the rest to the treasury; then check the
    token flows: ``claimed + returned + left == funded + donations`` with ``donations >= 0`` (anyone
    may send tokens to the pool without ``fund``) and ``claimed <= allocation total <= funded``."""
    swept = 0
    if s.cfg.economy.sweep and is_dev_chain(s.chain):
        s.chain.advance_time(pool.functions.sweepNotBefore().call() - s.chain.timestamp() + 1)
        before = token.functions.balanceOf(s.parties.treasury).call()
        s.gas.send("sweep", "anyone", pool.functions.sweep(), s.parties.operator)
        swept = token.functions.balanceOf(s.parties.treasury).call() - before
    claimed, funded = pool.functions.claimedTotal().call(), pool.functions.funded().call()
    left = token.functions.balanceOf(pool.address).call()
    donations = claimed + swept + left - funded
    allocated = pool.functions.allocationTotal().call()
    if donations < 0 or claimed > allocated or allocated > funded + donations:
        raise RuntimeError(
            f"token flows do not add up: claimed {claimed} + returned {swept} + left {left}, "
            f"funded {funded}, allocated {allocated}"
        )
    return {"funded": funded, "claimed": claimed, "returned": swept, "donations": donations}
