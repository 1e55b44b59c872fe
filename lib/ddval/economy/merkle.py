"""Merkle trees of ``(index, account, amount)`` payouts, compatible with OpenZeppelin.

The tree is the one ``@openzeppelin/merkle-tree``'s ``StandardMerkleTree.of(values,
["uint256", "address", "uint256"])`` builds, so roots and proofs verify with OpenZeppelin's
``MerkleProof`` (and ``RewardPool.claim``). Entry ``i`` of the input is leaf ``(i, account,
amount)``: the pool records claims by leaf index (a bitmap, as Uniswap's merkle-distributor), so
one account may hold several leaves and each is paid once.

- leaf = ``keccak256(keccak256(abi.encode(index, account, amount)))`` (double hashing, so that a
  leaf can never be confused with an inner node of 64 bytes);
- leaves are sorted by hash, placed at the end of an array-encoded complete binary tree
  (``tree[len - 1 - i] = leaf_i``), inner node ``i`` = hash of its children ``2i+1``, ``2i+2``;
- pairs are hashed in sorted order (``keccak256(min(a, b) ‖ max(a, b))``), which is what
  ``MerkleProof.verify`` expects; a proof is the list of siblings from the leaf to the root.

Only single-leaf proofs are offered (OpenZeppelin advisory GHSA-wprv-93r4-jj2p concerns multiproofs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak
from eth_utils import to_checksum_address

UINT256_MAX = 2**256 - 1
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class MerkleError(ValueError):
    """Invalid tree input (bad address, amount out of range, empty tree)."""


def leaf_hash(index: int, account: str, amount: int) -> bytes:
    """``keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))``."""
    encoded = int(index).to_bytes(32, "big") + bytes(12) + bytes.fromhex(account[2:]) + int(amount).to_bytes(32, "big")
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative pair hash."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(root: bytes, index: int, account: str, amount: int, proof: Sequence[bytes]) -> bool:
    """True when ``proof`` shows that ``(index, account, amount)`` is a leaf of the tree with ``root``."""
    return process_proof(leaf_hash(index, to_checksum_address(account), amount), proof) == root


@dataclass(frozen=True)
class MerkleTree:
    """A built tree. ``values[i]`` is the i-th input entry (leaf ``i``); ``root`` is a 32-byte digest."""

    values: tuple[tuple[str, int], ...]
    tree: tuple[bytes, ...]
    tree_index: tuple[int, ...]  # position of values[i]'s leaf in ``tree``

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, i: int) -> list[bytes]:
        """Sibling hashes from leaf ``values[i]`` up to the root."""
        k = self.tree_index[i]
        out = []
        while k > 0:
            out.append(self.tree[k + 1 if k % 2 == 1 else k - 1])
            k = (k - 1) // 2
        return out

    def __len__(self) -> int:
        return len(self.values)


def _validated(entries: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    out = []
    for row, (account, amount) in enumerate(entries):
        if not isinstance(account, str) or not _HEX_ADDRESS.fullmatch(account):
            raise MerkleError(f"entry {row}: account {account!r} is not an address")
        checksummed = to_checksum_address(account)
        if account != checksummed and account[2:] not in (account[2:].lower(), account[2:].upper()):
            raise MerkleError(f"entry {row}: account {account} has an invalid EIP-55 checksum")
        account = checksummed
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise MerkleError(f"entry {row}: amount {amount!r} of {account} is not an integer")
        if not 0 <= amount <= UINT256_MAX:
            raise MerkleError(f"entry {row}: amount {amount} of {account} is outside uint256")
        out.append((account, int(amount)))
    if not out:
        raise MerkleError("a Merkle tree needs at least one entry")
    return tuple(out)


def build_tree(entries: Iterable[tuple[str, int]]) -> MerkleTree:
    """Build the OpenZeppelin standard tree whose leaf ``i`` is ``(i, account, amount)`` of entry ``i``."""
    values = _validated(entries)
    leaves = [leaf_hash(i, a, v) for i, (a, v) in enumerate(values)]
    order = sorted(range(len(leaves)), key=lambda i: leaves[i])
    n = len(leaves)
    tree: list[bytes] = [b""] * (2 * n - 1)
    tree_index = [0] * n
    for pos, i in enumerate(order):
        tree[len(tree) - 1 - pos] = leaves[i]
        tree_index[i] = len(tree) - 1 - pos
    for k in range(len(tree) - 1 - n, -1, -1):
        tree[k] = hash_pair(tree[2 * k + 1], tree[2 * k + 2])
    return MerkleTree(values=values, tree=tuple(tree), tree_index=tuple(tree_index))
