"""What paying N recipients costs: a per-recipient transfer loop vs Merkle claims, measured.

- ``transfer_loop``: the push design of the original code. The operator pays the recipients from a
  contract (``TransferLoopPayout.payAll``) in transactions of ``batch_size`` recipients (1,000 fresh
  recipients use about 26 M gas, just under a 30 M gas block). The payer pays all the gas.
- ``merkle_claim``: ddval's design. The operator funds a ``RewardPool``, ``quorum`` institutions
  (all of those registered, a one-round training recorded first) attest the root (``setup_gas``:
  the only gas on the payer's side, independent of N), and each recipient sends one ``claim`` with
  its leaf index and proof (paid by the recipient or a relayer).

Recipients are fresh accounts (a first token balance costs a zero-to-non-zero storage write, as for
real new holders), with seeded amounts. Only measured numbers are reported: when a count is larger
than the sampling threshold, only some of its loop transactions or claims are executed;
``n_measured`` says how many recipients were measured, per-recipient gas is the measured mean, and
``total_gas``/``payer_gas`` are left empty (not extrapolated) for those rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from ddval.economy import chain as chain_mod
from ddval.economy import merkle
from ddval.economy.contracts import load_artifact
from ddval.progress import progress

COLUMNS = [
    "method", "n_recipients", "n_transactions", "n_measured", "setup_gas", "payer_gas", "total_gas",
    "gas_per_recipient", "gas_per_recipient_min", "gas_per_recipient_max",
]  # fmt: skip
CLAIM_GAS_LIMIT = 500_000
CLAIM_BATCH = 200


def recipients(n: int, tag: str = "") -> list[str]:
    """``n`` deterministic, fresh addresses (nobody holds their keys; claims are relayed)."""
    return [to_checksum_address(keccak(f"ddval-scaling:{tag}:{n}:{i}".encode())[12:]) for i in range(n)]


def amounts(n: int, seed: int) -> list[int]:
    """Seeded token amounts between 0.001 and 1 token (18 decimals)."""
    rng = np.random.default_rng(seed + n)
    return [int(x) * 10**15 for x in rng.integers(1, 1001, size=n)]


def measure_payout_scaling(
    chain: chain_mod.Chain,
    counts: tuple[int, ...],
    *,
    quorum: int = 2,
    batch_size: int = 1000,
    loop_all_up_to: int = 1000,
    claims_all_up_to: int = 10,
    claim_sample: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Measure both payout methods for every count in ``counts`` (the table ``payout_scaling.csv``)."""
    if len(chain.accounts) < quorum + 1:
        raise chain_mod.ChainError(f"{quorum + 1} keys needed (operator + {quorum} attesting institutions)")
    op = chain.accounts[0]
    institutions = chain.accounts[1 : quorum + 1]
    supply = 2 * sum(sum(amounts(n, seed)) for n in counts) + 10**18
    token, _ = chain.deploy(load_artifact("DDValToken"), op.address, supply, sender=op)
    registry = _trained_registry(chain, institutions)
    loop, _ = chain.deploy(load_artifact("TransferLoopPayout"), op.address, token.address, sender=op)
    chain.send(token.functions.transfer(loop.address, supply // 2), op)
    rows = []
    for n in progress(counts, desc="payout scaling", unit="count"):
        amt = amounts(n, seed)
        # Separate fresh recipients per method: a recipient paid by the loop would make its claim
        # cheaper (non-zero to non-zero balance write), which is not what a real payout costs.
        rows.append(_measure_loop(chain, loop, recipients(n, f"loop-{seed}"), amt, batch_size, loop_all_up_to))
        rows.append(
            _measure_claims(
                chain,
                token,
                registry,
                institutions,
                recipients(n, f"claim-{seed}"),
                amt,
                claims_all_up_to,
                claim_sample,
                seed,
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _trained_registry(chain, institutions):
    """A registry whose one-round training has stopped with every feature CID recorded: what a pool
    needs before it accepts attestations (``SwarmRegistry``'s ``trainingDigest``)."""
    op = chain.accounts[0]
    registry, _ = chain.deploy(load_artifact("SwarmRegistry"), op.address, 1, 1, 1, 3600, sender=op)
    for acct in institutions:
        chain.send(registry.functions.registerInstitution(acct.address), op)
    chain.send(registry.functions.closeRegistration(), op)
    for acct in institutions:
        chain.send(registry.functions.submitRound(0, b"scaling", 1), acct)
    for acct in institutions:
        chain.send(registry.functions.submitFeatures(b"scaling"), acct)
    return registry


def _measure_loop(chain, loop, to, amt, batch_size, all_up_to) -> dict:
    op = chain.accounts[0]
    n = len(to)
    batches = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    executed = batches if n <= all_up_to else batches[: max(1, all_up_to // batch_size)]
    limit = chain.block_gas_limit() - 100_000
    receipts = chain.send_batch([loop.functions.payAll(to[a:b], amt[a:b]) for a, b in executed], op, gas=limit)
    gas = [int(r["gasUsed"]) for r in receipts]
    measured = sum(b - a for a, b in executed)
    full = len(executed) == len(batches)
    per = [g / (b - a) for g, (a, b) in zip(gas, executed)]
    return {
        "method": "transfer_loop", "n_recipients": n, "n_transactions": len(batches), "n_measured": measured,
        "setup_gas": 0, "payer_gas": sum(gas) if full else math.nan, "total_gas": sum(gas) if full else math.nan,
        "gas_per_recipient": sum(gas) / measured, "gas_per_recipient_min": min(per), "gas_per_recipient_max": max(per),
    }  # fmt: skip


def _measure_claims(chain, token, registry, institutions, to, amt, all_up_to, sample, seed) -> dict:
    op = chain.accounts[0]
    n = len(to)
    tree = merkle.build_tree(zip(to, amt))
    total = sum(amt)
    pool, _ = chain.deploy(
        load_artifact("RewardPool"),
        token.address,
        registry.address,
        len(institutions),
        op.address,
        3600,
        3600,
        sender=op,
    )
    chain.send(token.functions.approve(pool.address, total), op)
    chain.send(pool.functions.fund(total), op)
    setup = 0
    training = chain.call(registry.functions.trainingDigest())
    for acct in institutions:
        setup += int(chain.send(pool.functions.attest(tree.root, total, b"scaling", training), acct)["gasUsed"])
    rng = np.random.default_rng(seed + n)
    chosen = range(n) if n <= all_up_to else sorted(rng.choice(n, size=min(sample, n), replace=False))
    gas = []
    chosen = [int(i) for i in chosen]
    for k in range(0, len(chosen), CLAIM_BATCH):  # relayed by the operator, sent back to back
        calls = [pool.functions.claim(i, *tree.values[i], tree.proof(i)) for i in chosen[k : k + CLAIM_BATCH]]
        gas += [int(r["gasUsed"]) for r in chain.send_batch(calls, op, gas=CLAIM_GAS_LIMIT)]
    full = len(gas) == n
    return {
        "method": "merkle_claim", "n_recipients": n, "n_transactions": len(institutions) + n, "n_measured": len(gas),
        "setup_gas": setup, "payer_gas": setup, "total_gas": setup + sum(gas) if full else math.nan,
        "gas_per_recipient": sum(gas) / len(gas), "gas_per_recipient_min": min(gas), "gas_per_recipient_max": max(gas),
    }  # fmt: skip
