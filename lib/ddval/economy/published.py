"""The allocation table pinned to IPFS, and the Merkle root an attester rebuilds from it."""

from __future__ import annotations

import io

from ddval.economy import merkle, rewards


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
