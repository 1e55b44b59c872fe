"""Stateful property test: random sequences of register / close / deploy / fund / donate / submit /
attest / claim / sweep by random actors, attackers included, against a Python model of both contracts.

Every step first predicts from the model whether the transaction must succeed (who may call it, in
which state, before or after which deadline) and then checks that the chain agrees, so a call that
goes through when it should revert (or the reverse) fails the test. After every step:

- token conservation: pool balance + claimed + swept == funded + donations, ``funded`` as modelled;
- no claim above its leaf: what an account received from claims never exceeds its leaves, and no
  leaf is paid twice; claims never exceed the attested total;
- no finalization without a strict majority of the snapshot taken when the pool was deployed (the
  attesters of the final allocation are institutions of that snapshot, at least ``quorum`` > n/2).

Deterministic (``derandomize=True``) and sized for the embedded chain: a few hundred transactions.

Why one module (about 420 lines): the model, the rules that predict each call from it and the
invariants are one specification, read and changed together.
"""

from __future__ import annotations

import os
import time

import pytest
from econ_helpers import deploy
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ddval.economy import chain as chain_mod
from ddval.economy import merkle

MAX_LOSS = 100
TIMEOUT = 40  # round (and features) timeout, seconds
CID = b"\x01\x55\x12\x20" + bytes(32)
UNIT = 10**3


class Model:
    """What both contracts should hold: enough to predict every call's outcome."""

    def __init__(self):
        self.registered: list[str] = []
        self.closed = False
        self.round, self.opened, self.submitted, self.loss_sum = 0, 0, set(), 0
        self.best_round, self.best_mean, self.stopped, self.stopped_at = 0, None, False, 0
        self.features: set[str] = set()
        self.pool = None  # dict once deployed
        self.funded = self.donations = self.claimed_total = self.swept = 0
        self.attestation_of: dict[str, bytes] = {}
        self.counts: dict[bytes, int] = {}
        self.final = None  # (tree, total, training, claim deadline)
        self.claimed: set[int] = set()
        self.received: dict[str, int] = {}

    def close_round(self, ts):
        n = len(self.submitted)
        mean = None if n == 0 else self.loss_sum // n
        if mean is not None and (self.best_mean is None or mean < self.best_mean):
            self.best_mean, self.best_round = mean, self.round
        r = self.round
        self.round, self.opened, self.submitted, self.loss_sum = r + 1, ts, set(), 0
        if r - self.best_round >= PATIENCE or r + 1 >= MAX_ROUNDS:
            self.stopped, self.stopped_at = True, ts

    def training_final(self, ts) -> bool:
        features_final = len(self.features) == len(self.registered) or ts >= self.stopped_at + TIMEOUT
        return self.stopped and self.best_mean is not None and features_final


PATIENCE, MAX_ROUNDS = 2, 4


class PoolMachine(RuleBasedStateMachine):
    """One run: a registry and (once registration closed) a pool, driven by random actors."""

    chain: chain_mod.Chain
    base: object  # eth-tester snapshot with the token and approvals

    def __init__(self):
        super().__init__()
        c = self.chain
        c.w3.provider.ethereum_tester.revert_to_snapshot(self.base)
        # Keep the chain ahead of the wall clock: then every block is mined at the latest timestamp + 1.
        c.advance_time(max(0, int(time.time()) - c.timestamp()) + 10_000)
        self.m = Model()
        a = c.accounts
        self.op, self.attacker, self.treasury, self.relayer = a[0], a[8], a[5], a[9]
        self.candidates = a[1:5]
        self.registry = deploy(c, "SwarmRegistry", self.op.address, PATIENCE, MAX_ROUNDS, MAX_LOSS, TIMEOUT)
        self.pool = None
        people = [a[6].address, a[7].address, a[1].address]
        self.honest = merkle.build_tree(
            [(people[0], 30 * UNIT), (people[1], 20 * UNIT), (people[2], 10 * UNIT), (people[0], 5 * UNIT)]
        )
        self.bogus = merkle.build_tree([(self.attacker.address, 60 * UNIT), (people[1], 5 * UNIT)])

    # ------------------------------------------------------------------ helpers

    def ts(self) -> int:
        return self.chain.timestamp() + 1  # the block the next transaction is mined in

    def expect(self, ok: bool, call, sender):
        """Send ``call``; assert it succeeds exactly when the model says it must."""
        try:
            receipt = self.chain.send(call, sender)
        except chain_mod.TxFailed as exc:
            assert not ok, f"expected success, got {exc}"
            return None
        assert ok, "expected a revert, the transaction went through"
        return receipt

    def account(self, address):
        return next(a for a in self.chain.accounts if a.address == address)

    # ------------------------------------------------------------------ a random starting point

    @initialize(n=st.integers(1, 4), stage=st.integers(0, 5), quorum=st.integers(0, 3))
    def start(self, n, stage, quorum):
        """Register ``n`` institutions and go as far as ``stage`` says (0-2: registration closed, training
        stopped, features, pool deployed and funded; 3: features missing; 4: no training; 5: registration
        left open), with a majority quorum (``quorum`` 0) or quorum ``quorum``. Every step is checked
        like a rule; Hypothesis favours small draws, so most runs start with a funded pool."""
        for k in range(n):
            self.register("op", k)
        if stage == 5:
            return
        self.close_registration("op")
        if stage != 4:
            for loss in (5, 3, 4, 4):
                self.submit_all(loss)
            for k in range(n if stage < 3 else 0):
                self.submit_features(k)
        self.deploy_pool(n // 2 + 1 if quorum == 0 else quorum, (300, 120))
        if self.pool is not None:
            self.fund("op", 40 * UNIT)
            self.fund("op", 40 * UNIT)

    # ------------------------------------------------------------------ registry

    @rule(who=st.sampled_from(["op", "attacker"]), k=st.integers(0, 3))
    def register(self, who, k):
        m, cand = self.m, self.candidates[k].address
        ok = who == "op" and not m.closed and cand not in m.registered
        sender = self.op if who == "op" else self.attacker
        if self.expect(ok, self.registry.functions.registerInstitution(cand), sender):
            m.registered.append(cand)

    @rule(who=st.sampled_from(["op", "attacker"]))
    def close_registration(self, who):
        m = self.m
        ok = who == "op" and not m.closed and len(m.registered) > 0
        ts = self.ts()
        if self.expect(ok, self.registry.functions.closeRegistration(), self.op if who == "op" else self.attacker):
            m.closed, m.opened = True, ts

    @rule(
        who=st.sampled_from(["inst0", "inst1", "inst2", "inst3", "attacker"]),
        loss=st.sampled_from([1, 3, 5, MAX_LOSS, MAX_LOSS + 1]),
    )
    def submit_round(self, who, loss):
        m = self.m
        sender = self.attacker if who == "attacker" else self.candidates[int(who[-1])]
        ts = self.ts()
        ok = (sender.address in m.registered and m.closed and not m.stopped and ts < m.opened + TIMEOUT
              and loss <= MAX_LOSS and sender.address not in m.submitted)  # fmt: skip
        if self.expect(ok, self.registry.functions.submitRound(m.round, CID, loss), sender):
            m.submitted.add(sender.address)
            m.loss_sum += loss
            if len(m.submitted) == len(m.registered):
                m.close_round(ts)

    @rule(loss=st.sampled_from([1, 3, 5]))
    def submit_all(self, loss):
        """Every registered institution submits the current round (each submission checked)."""
        for k, cand in enumerate(self.candidates):
            if cand.address in self.m.registered:
                self.submit_round(f"inst{k}", loss)

    @rule()
    def close_expired_round(self):
        m = self.m
        ts = self.ts()
        ok = m.closed and not m.stopped and ts >= m.opened + TIMEOUT
        if self.expect(ok, self.registry.functions.closeExpiredRound(), self.relayer):
            m.close_round(ts)

    @rule(k=st.integers(0, 3))
    def submit_features(self, k):
        m, sender = self.m, self.candidates[k]
        ts = self.ts()
        ok = (
            sender.address in m.registered
            and m.stopped
            and ts < m.stopped_at + TIMEOUT
            and sender.address not in m.features
        )
        if self.expect(ok, self.registry.functions.submitFeatures(CID), sender):
            m.features.add(sender.address)

    @rule(seconds=st.sampled_from([1, 1, 5, 20, 100]))
    def advance(self, seconds):
        self.chain.advance_time(seconds)

    # ------------------------------------------------------------------ pool

    @precondition(lambda self: self.pool is None)
    @rule(quorum=st.integers(0, 5), windows=st.sampled_from([(60, 60), (60, 300), (300, 60)]))
    def deploy_pool(self, quorum, windows):
        """Deploy the pool (once a deployment succeeded, the run keeps that pool)."""
        m, c = self.m, self.chain
        n = len(m.registered)
        ok = m.closed and 2 * quorum > n and quorum <= n
        args = (self.token.address, self.registry.address, quorum, self.treasury.address, *windows)
        ts = self.ts()
        try:
            self.pool = deploy(c, "RewardPool", *args)
        except chain_mod.TxFailed:
            assert not ok, "a valid pool was refused"
            return
        assert ok, f"a pool with quorum {quorum} of {n} (registration closed: {m.closed}) was deployed"
        m.pool = {
            "quorum": quorum,
            "snapshot": list(m.registered),
            "deadline": ts + windows[0],
            "claim_window": windows[1],
        }
        for funder in (self.op, self.attacker):
            c.send(self.token.functions.approve(self.pool.address, 10**9 * UNIT), funder)

    @precondition(lambda self: self.pool is not None)
    @rule(who=st.sampled_from(["op", "attacker"]), amount=st.sampled_from([0, 10 * UNIT, 40 * UNIT]))
    def fund(self, who, amount):
        m = self.m
        ok = m.final is None and self.ts() < m.pool["deadline"]
        if self.expect(ok, self.pool.functions.fund(amount), self.op if who == "op" else self.attacker):
            m.funded += amount

    @precondition(lambda self: self.pool is not None)
    @rule(amount=st.sampled_from([1, 7 * UNIT]))
    def donate(self, amount):
        self.chain.send(self.token.functions.transfer(self.pool.address, amount), self.attacker)
        self.m.donations += amount

    @precondition(lambda self: self.pool is not None)
    @rule(
        who=st.sampled_from(["inst0", "inst1", "inst2", "inst3", "attacker"]),
        bogus=st.sampled_from([False, False, True]),
        wrong_training=st.sampled_from([False, False, False, True]),
    )
    def attest(self, who, bogus, wrong_training):
        m = self.m
        sender = self.attacker if who == "attacker" else self.candidates[int(who[-1])]
        tree = self.bogus if bogus else self.honest
        total = sum(a for _, a in tree.values)
        ts = self.ts()
        final = m.training_final(ts)
        recorded = self.registry.functions.trainingDigest().call(block_identifier="pending") if final else None
        training = bytes(32) if wrong_training or recorded is None else recorded
        balance = self.token.functions.balanceOf(self.pool.address).call()
        ok = (sender.address in m.pool["snapshot"] and m.final is None and ts < m.pool["deadline"]
              and sender.address not in m.attestation_of and final and training == recorded
              and total <= balance)  # fmt: skip
        if self.expect(ok, self.pool.functions.attest(tree.root, total, CID, training), sender):
            key = tree.root + total.to_bytes(32, "big") + training
            m.attestation_of[sender.address] = key
            m.counts[key] = m.counts.get(key, 0) + 1
            if m.counts[key] >= m.pool["quorum"]:
                m.final = (tree, total, training, ts + m.pool["claim_window"])

    @precondition(lambda self: self.pool is not None)
    @rule()
    def attest_majority(self):
        """The institutions of the snapshot attest the honest allocation one after another (each checked)."""
        for k, cand in enumerate(self.candidates):
            if cand.address in self.m.pool["snapshot"] and self.m.final is None:
                self.attest(f"inst{k}", False, False)

    @precondition(lambda self: self.pool is not None)
    @rule(
        i=st.integers(0, 3),
        bogus=st.sampled_from([False, False, True]),
        forged=st.sampled_from([False, False, True]),
        who=st.sampled_from(["relayer", "attacker"]),
    )
    def claim(self, i, bogus, forged, who):
        m = self.m
        tree = self.bogus if bogus else self.honest
        i = min(i, len(tree) - 1)
        account, amount = tree.values[i]
        claimed = amount + 1 if forged else amount
        ts = self.ts()
        ok = (m.final is not None and ts < m.final[3] and i not in m.claimed and m.final[0] is tree and not forged
              and m.claimed_total + amount <= m.final[1])  # fmt: skip
        call = self.pool.functions.claim(i, account, claimed, tree.proof(i))
        if self.expect(ok, call, self.relayer if who == "relayer" else self.attacker):
            m.claimed.add(i)
            m.claimed_total += amount
            m.received[account] = m.received.get(account, 0) + amount

    @precondition(lambda self: self.pool is not None)
    @rule(who=st.sampled_from(["anyone", "treasury_to_spare", "attacker_to_self"]))
    def sweep(self, who):
        m = self.m
        not_before = m.final[3] if m.final is not None else m.pool["deadline"]
        balance = self.token.functions.balanceOf(self.pool.address).call()
        ok = self.ts() >= not_before and balance > 0 and who != "attacker_to_self"
        if who == "anyone":
            call, sender = self.pool.functions.sweep(), self.relayer
        elif who == "treasury_to_spare":
            call, sender = self.pool.functions.sweepTo(self.chain.accounts[4].address), self.treasury
        else:
            call, sender = self.pool.functions.sweepTo(self.attacker.address), self.attacker
        if self.expect(ok, call, sender):
            m.swept += balance

    # ------------------------------------------------------------------ invariants

    @invariant()
    def registry_matches_the_model(self):
        m, r = self.m, self.registry.functions
        assert r.institutionCount().call() == len(m.registered) and r.registrationClosed().call() == m.closed
        assert r.currentRound().call() == m.round and r.stopped().call() == m.stopped
        if m.best_mean is not None:
            assert r.bestRound().call() == m.best_round and r.bestMeanLoss().call() == m.best_mean

    @invariant()
    def tokens_are_conserved(self):
        if self.pool is None:
            return
        m, p = self.m, self.pool.functions
        assert p.funded().call() == m.funded
        assert p.claimedTotal().call() == m.claimed_total and p.sweptTotal().call() == m.swept
        balance = self.token.functions.balanceOf(self.pool.address).call()
        assert balance + m.claimed_total + m.swept == m.funded + m.donations

    @invariant()
    def no_claim_above_its_leaves(self):
        m = self.m
        if m.final is None:
            assert m.claimed_total == 0
            return
        tree = m.final[0]
        for account, got in m.received.items():
            assert got <= sum(a for acc, a in tree.values if acc == account)
            assert self.token.functions.balanceOf(account).call() >= got
        assert m.claimed_total <= m.final[1]

    @invariant()
    def finalization_needs_a_strict_majority_of_the_snapshot(self):
        if self.pool is None:
            return
        m, p = self.m, self.pool.functions
        assert p.finalized().call() == (m.final is not None)
        if m.final is not None:
            tree, total, training, _ = m.final
            assert p.merkleRoot().call() == tree.root and p.allocationTotal().call() == total
            key = tree.root + total.to_bytes(32, "big") + training
            voters = [a for a, k in m.attestation_of.items() if k == key]
            assert set(voters) <= set(m.pool["snapshot"]) and 2 * len(voters) > len(m.pool["snapshot"])


@pytest.fixture(scope="module")
def machine_base(chain):
    """The token (the attacker holds some too) and a snapshot every run of the machine starts from."""
    op = chain.accounts[0]
    PoolMachine.chain = chain
    PoolMachine.token = deploy(chain, "DDValToken", op.address, 10**12 * UNIT)
    chain.send(PoolMachine.token.functions.transfer(chain.accounts[8].address, 10**9 * UNIT), op)
    PoolMachine.base = chain.w3.provider.ethereum_tester.take_snapshot()
    return PoolMachine


def checked(machine: PoolMachine, step: str, *args) -> None:
    """Run one rule of ``machine`` and then every invariant, as Hypothesis does."""
    getattr(machine, step)(*args)
    for invariant_check in (
        "registry_matches_the_model",
        "tokens_are_conserved",
        "no_claim_above_its_leaves",
        "finalization_needs_a_strict_majority_of_the_snapshot",
    ):
        getattr(machine, invariant_check)()


def test_the_whole_life_of_a_pool_through_the_model(machine_base):
    """One fixed walk through every phase (the random runs below explore around it): attackers register,
    attest and claim at every step; honest institutions finalize; claims up to the deadline; the sweep."""
    m = machine_base()
    checked(m, "start", 3, 0, 0)
    assert m.pool is not None and m.m.training_final(m.ts())
    for step in (("register", "op", 3), ("register", "attacker", 3), ("close_registration", "op"), ("donate", 1),
                 ("attest", "attacker", True, False), ("attest", "inst3", True, False),
                 ("claim", 0, False, False, "relayer"), ("sweep", "anyone"), ("attest", "inst0", True, False),
                 ("attest", "inst1", False, True), ("attest", "inst1", False, False), ("attest", "inst2", False, False),
                 ("claim", 0, False, True, "attacker"), ("claim", 0, True, False, "attacker"),
                 ("claim", 0, False, False, "attacker"), ("claim", 0, False, False, "relayer"),
                 ("claim", 3, False, False, "relayer"), ("fund", "op", 10 * UNIT), ("sweep", "treasury_to_spare"),
                 ("advance", 100), ("claim", 1, False, False, "relayer"), ("advance", 20),
                 ("claim", 2, False, False, "relayer"), ("sweep", "attacker_to_self"), ("sweep", "anyone"),
                 ("sweep", "anyone"), ("donate", 7 * UNIT), ("sweep", "treasury_to_spare")):  # fmt: skip
        checked(m, *step)
    assert m.m.final is not None and m.m.final[0] is m.honest and len(m.m.claimed) == 3 and m.m.swept > 0


def test_random_actions_keep_the_pool_invariants(machine_base):
    # Under contracts/mutate.py a failure only has to be found, not shrunk to its smallest form.
    phases = [Phase.explicit, Phase.reuse, Phase.generate] if os.environ.get("DDVAL_MUTATION") else list(Phase)
    run_state_machine_as_test(
        machine_base,
        settings=settings(
            max_examples=10,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            phases=phases,
            suppress_health_check=list(HealthCheck),
        ),
    )
