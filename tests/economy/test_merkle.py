"""Merkle trees: golden against @openzeppelin/merkle-tree, properties, and OpenZeppelin's MerkleProof on chain."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from econ_helpers import deploy
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddval.config import repo_root
from ddval.economy import merkle

JS = Path(__file__).parent / "js" / "merkle_tree.mjs"

addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
amounts = st.integers(0, merkle.UINT256_MAX)
#: Accounts may repeat: leaves are told apart by their index.
entries = st.lists(
    st.tuples(st.sampled_from([to_checksum_address(bytes([i]) * 20) for i in range(1, 9)]) | addresses, amounts),
    min_size=1,
    max_size=40,
)


def reference(trees):
    """Roots and proofs from OpenZeppelin's JS library (node, from the project's node_modules)."""
    doc = json.dumps([[[str(i), a, str(v)] for i, (a, v) in enumerate(values)] for values in trees])
    out = subprocess.run(["node", str(JS)], input=doc, capture_output=True, text=True, check=True, cwd=repo_root())
    return [
        (bytes.fromhex(t["root"][2:]), [[bytes.fromhex(p[2:]) for p in proof] for proof in t["proofs"]])
        for t in json.loads(out.stdout)
    ]


def test_leaf_is_the_double_hash_of_the_abi_encoded_index_account_amount():
    account = "0x1111111111111111111111111111111111111111"
    encoded = (7).to_bytes(32, "big") + bytes(12) + bytes.fromhex(account[2:]) + (5 * 10**18).to_bytes(32, "big")
    assert merkle.leaf_hash(7, account, 5 * 10**18) == keccak(keccak(encoded))


def test_roots_and_proofs_equal_openzeppelin_merkle_tree():
    """Every size up to 17 (all shapes of small trees), larger ones, and seeded random tables."""
    rng = random.Random(0)
    trees = [
        [(to_checksum_address(bytes([i % 256, i // 256]) + bytes(18)), i * 7 + 1) for i in range(n)]
        for n in [*range(1, 18), 100, 1000]
    ]
    for _ in range(20):
        n = rng.randint(1, 60)
        trees.append(
            [(to_checksum_address(rng.randbytes(20)), rng.choice([0, 1, rng.getrandbits(256)])) for _ in range(n)]
        )
    for values, (root, proofs) in zip(trees, reference(trees)):
        tree = merkle.build_tree(values)
        assert tree.root == root, f"{len(values)} leaves"
        assert [tree.proof(i) for i in range(len(values))] == proofs


@settings(max_examples=60, deadline=None)
@given(entries, st.data())
def test_every_valid_proof_verifies_and_every_mutation_fails(values, data):
    tree = merkle.build_tree(values)
    for i, (account, amount) in enumerate(values):
        assert merkle.verify(tree.root, i, account, amount, tree.proof(i))
    i = data.draw(st.integers(0, len(values) - 1))
    account, amount = values[i]
    proof = tree.proof(i)
    assert not merkle.verify(tree.root, i, account, (amount + data.draw(st.integers(1, 2**64))) % 2**256, proof)
    other = data.draw(addresses.filter(lambda a: a != account))
    assert not merkle.verify(tree.root, i, other, amount, proof)
    assert not merkle.verify(tree.root, i + 1, account, amount, proof)  # another leaf index
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(proof[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not merkle.verify(tree.root, i, account, amount, proof[:k] + [bytes(flipped)] + proof[k + 1 :])
        assert not merkle.verify(tree.root, i, account, amount, proof[:-1])


def test_invalid_entries_are_rejected():
    a = "0x1111111111111111111111111111111111111111"
    with pytest.raises(merkle.MerkleError, match="not an address"):
        merkle.build_tree([("0x123", 1)])
    with pytest.raises(merkle.MerkleError, match="checksum"):
        merkle.build_tree([("0xF39fd6e51aad88f6f4ce6ab8827279cfffb92266", 1)])
    with pytest.raises(merkle.MerkleError, match="outside uint256"):
        merkle.build_tree([(a, -1)])
    with pytest.raises(merkle.MerkleError, match="not an integer"):
        merkle.build_tree([(a, 1.5)])
    with pytest.raises(merkle.MerkleError, match="at least one"):
        merkle.build_tree([])


@pytest.fixture(scope="module")
def harness(chain):
    return deploy(chain, "MerkleProofHarness")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries, st.data())
def test_openzeppelin_merkleproof_accepts_valid_and_rejects_mutated_proofs(harness, values, data):
    tree = merkle.build_tree(values)
    i = data.draw(st.integers(0, len(values) - 1))
    account, amount = values[i]
    assert harness.functions.leaf(i, account, amount).call() == merkle.leaf_hash(i, account, amount)
    assert harness.functions.verify(tree.proof(i), tree.root, i, account, amount).call()
    assert not harness.functions.verify(tree.proof(i), tree.root, i, account, (amount + 1) % 2**256).call()
    assert not harness.functions.verify(tree.proof(i), tree.root, i + 1, account, amount).call()
    if tree.proof(i):
        assert not harness.functions.verify(tree.proof(i)[:-1], tree.root, i, account, amount).call()
