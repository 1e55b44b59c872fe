"""An institution that attests a reward allocation only after recomputing it: ``python -m ddval.economy.attester``.

Each institution runs this with its own key (``DDVAL_ATTESTER_KEY``) and trusts nobody's tables:

1. reads the pool, its institution snapshot and the registry from the chain; the registry must have
   stopped training, with the feature files final (``trainingDigest()`` answers);
2. fetches the published allocation document (:mod:`ddval.economy.published`) from IPFS by its CID
   and checks that it is for this chain, pool, registry, training digest and best round, and that
   its policy is the institution's own configuration;
3. fetches every institution's feature file by the CID recorded on chain (the content store checks
   each CID), recomputes every data point's DDVal value with ``ddval.valuation`` (bit-identical by
   design), the allocation, the accounts and the Merkle tree (:mod:`ddval.economy.allocation`);
4. attests ``(root, total, cid, training digest)`` only when its own leaves equal the published
   ones; otherwise it refuses and says why. An allocation that is already final is reported, not
   attested again.

The stage runs one such process per institution on an RPC chain; on the embedded chain (one process
by nature) it calls :func:`run_attester`, the same code path, in-process. Exit status: 0 attested or
already final, 3 refused, 1 any other error (one line on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from ddval.config import ExperimentConfig, load_config
from ddval.economy import chain as chain_mod
from ddval.economy import ipfs, merkle
from ddval.economy.allocation import allocation_from_points, allocation_leaves, points_from_features
from ddval.economy.contracts import load_artifact
from ddval.economy.parties import is_dev_chain, recipient_accounts
from ddval.economy.published import AllocationDocument, Policy

#: Environment variable that holds the attesting institution's private key (hex).
KEY_VARIABLE = "DDVAL_ATTESTER_KEY"
#: Environment variable with the RPC URL (kept out of the command line, where other users can read it).
RPC_VARIABLE = "DDVAL_ATTESTER_RPC_URL"
REFUSED = 3


class Refusal(Exception):
    """The institution does not attest; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """What one institution did with the published allocation (a row of ``attestations.csv``)."""

    institution: str
    account: str
    decision: str  # "attested", "already final", "already attested" or "refused"
    reason: str
    points_recomputed: int
    leaves_match: bool
    root: str
    gas_used: int | None = None
    tx_hash: str | None = None

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Check:
    """What the institution recomputed before deciding."""

    document: AllocationDocument
    training: bytes
    points: int
    leaves_match: bool
    root: bytes


def review(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    chain: chain_mod.Chain,
    content: ipfs.ContentStore,
    pool_address: str,
    cid: str,
) -> Check:
    """Everything an institution checks before attesting (no transaction); :class:`Refusal` says
    what does not hold."""
    pool = chain.at(load_artifact("RewardPool"), pool_address)
    registry = chain.at(load_artifact("SwarmRegistry"), pool.functions.registry().call())
    names = [i.name for i in cfg.setting(setting).institutions]
    addresses = _institution_addresses(chain, registry, pool, names)
    try:
        training = chain.call(registry.functions.trainingDigest())
    except chain_mod.TxFailed as exc:
        raise Refusal(f"the training record is not final ({exc.error})") from None
    doc = AllocationDocument.from_bytes(content.cat(cid))
    _check_document(doc, chain, pool, registry, training, Policy.of(cfg))
    if not 0.5 < doc.grand_utility <= 1.0:
        raise Refusal(f"the published grand-coalition utility {doc.grand_utility} is not an AUROC above chance")
    with tempfile.TemporaryDirectory(prefix="ddval-attester-") as tmp:
        files = {}
        for name, address in addresses.items():
            feature_cid = registry.functions.featuresCid(address).call()
            if not feature_cid:
                raise Refusal(f"{name} recorded no feature file; its data cannot be valued")
            files[name] = Path(tmp) / f"{name}.npz"
            files[name].write_bytes(content.cat(str(ipfs.CID.parse(feature_cid))))
        points = points_from_features(files, doc.policy, doc.grand_utility)
    allocation = allocation_from_points(points, names, doc.policy, source="recomputed point values")
    individuals = allocation.table.loc[allocation.table["kind"] == "individual", "recipient_id"]
    accounts, _ = recipient_accounts(cfg, is_dev_chain(chain), addresses, list(individuals), seed)
    _, leaves = allocation_leaves(allocation, accounts, source="accounts")
    mine = tuple(leaves)
    return Check(doc, training, len(points), mine == doc.leaves, merkle.build_tree(mine).root)


def _institution_addresses(chain, registry, pool, names: list[str]) -> dict[str, str]:
    """The registry's institutions, in registration (= config) order, checked against the pool's snapshot."""
    count = registry.functions.institutionCount().call()
    if count != len(names) or pool.functions.institutionCount().call() != count:
        raise Refusal(f"the registry holds {count} institutions, the setting has {len(names)}")
    addresses = {name: registry.functions.institutionAt(i).call() for i, name in enumerate(names)}
    outside = [name for name, a in addresses.items() if not pool.functions.isInstitution(a).call()]
    if outside:
        raise Refusal(f"institution(s) {outside} of the registry are not in the pool's snapshot")
    return addresses


def _check_document(doc: AllocationDocument, chain, pool, registry, training: bytes, policy: Policy) -> None:
    expected = {
        "chain_id": chain.chain_id, "pool": pool.address, "registry": registry.address,
        "training": "0x" + training.hex(), "best_round": registry.functions.bestRound().call(),
    }  # fmt: skip
    for field_name, value in expected.items():
        if getattr(doc, field_name) != value:
            raise Refusal(f"the document's {field_name} is {getattr(doc, field_name)!r}, the chain says {value!r}")
    differ = [f.name for f in dataclasses.fields(Policy) if getattr(doc.policy, f.name) != getattr(policy, f.name)]
    if differ:
        raise Refusal(f"the document's policy differs from this institution's configuration in {differ}")
    if policy.value_method != "ddval":
        raise Refusal(f"value method {policy.value_method!r} cannot be recomputed from feature files (only 'ddval')")


def run_attester(
    cfg: ExperimentConfig,
    seed: int,
    setting: str,
    institution: str,
    chain: chain_mod.Chain,
    content: ipfs.ContentStore,
    pool_address: str,
    cid: str,
    account: LocalAccount,
) -> Verdict:
    """Review the published allocation as ``institution`` and attest it with ``account`` if it holds."""
    pool = chain.at(load_artifact("RewardPool"), pool_address)
    try:
        check = review(cfg, seed, setting, chain, content, pool_address, cid)
    except Refusal as exc:
        return Verdict(institution, account.address, "refused", str(exc), 0, False, "")
    root = "0x" + check.root.hex()
    if not check.leaves_match:
        reason = "the published leaves differ from the recomputed allocation"
        return Verdict(institution, account.address, "refused", reason, check.points, False, root)
    doc, cid_bytes = check.document, ipfs.CID.parse(cid).to_bytes()
    if pool.functions.finalized().call():
        same = pool.functions.merkleRoot().call() == check.root
        reason = "a quorum already attested " + ("this allocation" if same else "another allocation")
        decision = "already final" if same else "refused"
        return Verdict(institution, account.address, decision, reason, check.points, True, root)
    mine = pool.functions.attestationOf(account.address).call()
    if mine != bytes(32):
        same = mine == pool.functions.allocationId(check.root, doc.total, cid_bytes, check.training).call()
        reason = "this institution's key already attested " + ("this allocation" if same else "another allocation")
        decision = "already attested" if same else "refused"
        return Verdict(institution, account.address, decision, reason, check.points, True, root)
    receipt = chain.send(pool.functions.attest(check.root, doc.total, cid_bytes, check.training), account)
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    gas = int(receipt["gasUsed"])
    return Verdict(
        institution, account.address, "attested", "recomputed and matched", check.points, True, root, gas, tx
    )


# ---------------------------------------------------------------------------- the separate process


def config_file(cfg: ExperimentConfig, path: Path) -> Path:
    """Write ``cfg`` as a preset file that :func:`ddval.config.load_config` reads back equal (what a
    separate attester process is given: the consortium's agreed configuration)."""
    import yaml

    from ddval.store import write_text

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    return write_text(path, yaml.safe_dump(plain(dataclasses.asdict(cfg)), sort_keys=True))


def command(
    config: Path,
    seed: int,
    setting: str,
    institution: str,
    chain: chain_mod.Chain,
    pool: str,
    cid: str,
    ipfs_api: str | None,
    ipfs_store: Path | None,
    cid_version: int,
) -> list[str]:
    """The command line of one attester process; its key and the RPC URL (which may hold an API key) go
    in its environment (:data:`KEY_VARIABLE`, :data:`RPC_VARIABLE`), never here."""
    cmd = [
        sys.executable,
        "-m",
        "ddval.economy.attester",
        "--config",
        str(config),
        "--seed",
        str(seed),
        "--setting",
        setting,
        "--institution",
        institution,
        "--pool",
        pool,
        "--allocation-cid",
        cid,
        "--cid-version",
        str(cid_version),
        "--chain-id",
        str(chain.chain_id),
    ]
    # the multiaddr: only host and port are used, and a URL's user info would show in the process list
    cmd += ["--ipfs-api", ipfs.as_multiaddr(ipfs_api)] if ipfs_api is not None else ["--ipfs-store", str(ipfs_store)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddval.economy.attester", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="preset name or YAML file (the consortium's configuration)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--setting", required=True)
    parser.add_argument("--institution", required=True, help="the institution this process attests for")
    parser.add_argument("--pool", required=True, help="address of the RewardPool")
    parser.add_argument("--allocation-cid", required=True, help="CID of the published allocation document")
    parser.add_argument("--rpc-url", help=f"the chain's JSON-RPC endpoint (default: ${RPC_VARIABLE})")
    parser.add_argument("--chain-id", type=int, help="the chain id expected (required unless a dev chain)")
    parser.add_argument("--ipfs-api", help="Kubo RPC API of an IPFS node")
    parser.add_argument("--ipfs-store", help="folder of an embedded content store (instead of --ipfs-api)")
    parser.add_argument("--cid-version", type=int, default=1)
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_VARIABLE, "").strip()
    try:
        if not key:
            raise chain_mod.ChainError(f"set {KEY_VARIABLE} to this institution's private key")
        rpc_url = args.rpc_url or os.environ.get(RPC_VARIABLE, "").strip()
        if not rpc_url:
            raise chain_mod.ChainError(f"give --rpc-url or set {RPC_VARIABLE}: the attester needs the chain's endpoint")
        cfg = load_config(args.config)
        chain = chain_mod.connect(rpc_url, chain_id=args.chain_id, keys=[key])
        content = ipfs.open_store(args.ipfs_api, args.ipfs_store, args.cid_version)
        verdict = run_attester(
            cfg,
            args.seed,
            args.setting,
            args.institution,
            chain,
            content,
            args.pool,
            args.allocation_cid,
            chain.accounts[0],
        )
    except Exception as exc:  # noqa: BLE001 - one line for the operator, whatever went wrong
        print(f"attester {args.institution}: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(verdict.as_row()))
    return REFUSED if verdict.decision == "refused" else 0


if __name__ == "__main__":
    sys.exit(main())
