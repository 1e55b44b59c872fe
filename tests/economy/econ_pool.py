"""A reward pool in a known state for the contract tests: token, registry, finished training, funded pool.

Used by ``test_pool.py`` and the stateful tests; the helpers send transactions only through
:class:`ddval.economy.chain.Chain`, so reverts arrive as decoded custom errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from econ_helpers import deploy

from ddval.economy import merkle

TOKENS = 10**18
FUNDED = 1000 * TOKENS
WINDOW = 1000  # seconds: attestation window and claim window (tests that need them apart say so)
TIMEOUT = 500  # seconds: round timeout of the registry
MAX_LOSS = 10**24
CID = b"\x01\x55\x12\x20" + bytes(32)
#: Mean losses of the stand-in training: best at round 1, then a plateau of ``patience`` = 3 rounds.
MEANS = (9, 7, 8, 8, 7)


@dataclass
class Pool:
    """Handles of one deployment (``inst``: the institutions' signing accounts)."""

    chain: Any
    op: Any
    inst: list
    treasury: str
    token: Any
    registry: Any
    pool: Any
    tree: merkle.MerkleTree

    @property
    def training(self) -> bytes:
        return self.registry.functions.trainingDigest().call()

    def balance(self, who: str) -> int:
        return self.token.functions.balanceOf(who).call()

    def attest(self, who, tree=None, total=None, cid=CID, training=None, pool=None):
        tree = tree or self.tree
        total = sum(a for _, a in tree.values) if total is None else total
        call = (pool or self.pool).functions.attest(
            tree.root, total, cid, self.training if training is None else training
        )
        return self.chain.send(call, who)

    def finalize(self, tree=None, pool=None):
        """Two of the three institutions (a strict majority) attest ``tree``."""
        for who in self.inst[:2]:
            self.attest(who, tree, pool=pool)
        assert (pool or self.pool).functions.finalized().call()
        return tree or self.tree

    def claim(self, i, tree=None, sender=None, amount=None, proof=None, index=None, pool=None):
        tree = tree or self.tree
        account, value = tree.values[i]
        call = (pool or self.pool).functions.claim(
            i if index is None else index,
            account,
            value if amount is None else amount,
            tree.proof(i) if proof is None else proof,
        )
        return self.chain.send(call, sender or self.op)

    def new_pool(self, token=None, quorum=2, attestation_window=WINDOW, claim_window=WINDOW, fund=FUNDED):
        """Another pool over the same (finished) registry, funded with ``fund`` of ``token``."""
        token = token or self.token
        pool = deploy(
            self.chain,
            "RewardPool",
            token.address,
            self.registry.address,
            quorum,
            self.treasury,
            attestation_window,
            claim_window,
        )
        if fund:
            self.chain.send(token.functions.approve(pool.address, fund), self.op)
            self.chain.send(pool.functions.fund(fund), self.op)
        return pool


def new_registry(chain, institutions, *, patience=3, max_rounds=20, close=True):
    op = chain.accounts[0]
    registry = deploy(chain, "SwarmRegistry", op.address, patience, max_rounds, MAX_LOSS, TIMEOUT)
    for a in institutions:
        chain.send(registry.functions.registerInstitution(a.address), op)
    if close:
        chain.send(registry.functions.closeRegistration(), op)
    return registry


def train(chain, registry, institutions, features=True):
    """Submit the stand-in rounds (training stops after the last) and, with ``features``, every feature CID."""
    for r, mean in enumerate(MEANS):
        for who in institutions:
            chain.send(registry.functions.submitRound(r, CID, mean), who)
    assert registry.functions.stopped().call()
    if features:
        for who in institutions:
            chain.send(registry.functions.submitFeatures(CID), who)


def deploy_pool(chain, *, trained=True, fund=FUNDED) -> Pool:
    """Token, registry (institutions = accounts 1-3, registration closed), a quorum-2 pool funded with
    ``fund`` and, with ``trained``, a finished training record; the honest tree pays the three
    institutions and individuals 6-8 (accounts 6 and 7 hold two leaves each)."""
    op, inst, treasury = chain.accounts[0], chain.accounts[1:4], chain.accounts[5].address
    token = deploy(chain, "DDValToken", op.address, 10**6 * TOKENS)
    registry = new_registry(chain, inst)
    pool = deploy(chain, "RewardPool", token.address, registry.address, 2, treasury, WINDOW, WINDOW)
    if fund:
        chain.send(token.functions.approve(pool.address, fund), op)
        chain.send(pool.functions.fund(fund), op)
    if trained:
        train(chain, registry, inst)
    people = chain.accounts[6:9]
    tree = merkle.build_tree(
        [(inst[0].address, 200 * TOKENS), (inst[1].address, 300 * TOKENS), (inst[2].address, 100 * TOKENS)]
        + [(a.address, (10 + i) * TOKENS) for i, a in enumerate(people)]
        + [(people[0].address, 5 * TOKENS), (people[1].address, 1)]
    )  # fmt: skip
    return Pool(chain, op, list(inst), treasury, token, registry, pool, tree)
