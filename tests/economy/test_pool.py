"""RewardPool: the attacks on the original token economy and those of issue 12, one regression test each.

Original findings (``original_token_code.md`` §2.4): C1 anyone drains the pool before values are
posted; C2 self-reported, overwritable valuations; C3 over-allocation / DoS by one institution;
C4 ignored ERC-20 return values; C5 one reverting recipient blocks everyone; C6 reentrancy through
the token; C8 ETH locked in the contract. Issue 12: institutions added after funding took the pool;
a minority quorum; attestations bound to no training; unbounded windows; claims keyed by account;
a treasury the token blocks locked the funds. Plus double claims, forged proofs, claims before the
quorum, and sweeps before the deadline. Token conservation over random sequences of actions is in
``test_pool_states.py``.

Why one module (480 lines): every test runs on one pool deployed once per module (the ``setup``
fixture, rolled back after each test), and ``contracts/mutate.py`` runs this file against each of
the 138 mutants, so a second file would deploy again per mutant; the sections below split it by finding.
"""

from __future__ import annotations

import pytest
from econ_helpers import deploy, next_block_at, reverts
from econ_pool import CID, FUNDED, TOKENS, WINDOW, deploy_pool, new_registry, train
from eth_tester.exceptions import TransactionFailed
from web3.logs import DISCARD

from ddval.economy import merkle

MAX_WINDOW = 365 * 86400


@pytest.fixture(scope="module")
def setup(chain):
    return deploy_pool(chain)


@pytest.fixture
def s(setup, snapshot):
    """The module's deployment; every change is rolled back after the test."""
    return setup


def total(tree):
    return sum(a for _, a in tree.values)


# ------------------------------------------------------------------------------------------- C1, C8


def test_no_function_moves_funds_except_claim_and_sweeps(s):
    """The pool has no owner and only five state-changing functions."""
    writes = {
        f["name"] for f in s.pool.abi if f.get("type") == "function" and f["stateMutability"] not in ("view", "pure")
    }
    assert writes == {"fund", "attest", "claim", "sweep", "sweepTo"}
    assert not any(f.get("name") in ("owner", "transferOwnership", "withdraw") for f in s.pool.abi)


def test_c1_nobody_can_drain_before_values_are_posted(s):
    c = s.chain
    for who in (c.accounts[9], s.op, s.inst[0]):
        with reverts("NotFinalized"):
            s.claim(0, sender=who)
        with reverts("SweepTooEarly", s.pool.functions.attestationDeadline().call()):
            c.send(s.pool.functions.sweep(), who)
    assert s.balance(s.pool.address) == FUNDED


def test_c8_ether_is_rejected(s):
    """No receive or fallback function: plain ETH and unknown calls revert with empty revert data."""
    c = s.chain
    assert not any(
        f.get("type") in ("receive", "fallback") or f.get("stateMutability") == "payable" for f in s.pool.abi
    )
    for tx in ({"value": 1}, {"value": 0, "data": "0x12345678"}):
        with pytest.raises(TransactionFailed, match=r"^execution reverted: b''$"):
            c.w3.eth.call({"to": s.pool.address, "from": c.accounts[0].address, **tx})
    assert c.w3.eth.get_balance(s.pool.address) == 0


# ------------------------------------------------------------------------------------------- the institution set


def test_pool_needs_a_closed_registration(s):
    """Issue 12 (high): the pool read a registry whose registration was still open."""
    c = s.chain
    open_registry = new_registry(c, s.inst, close=False)
    with reverts("RegistrationOpen"):
        deploy(c, "RewardPool", s.token.address, open_registry.address, 2, s.treasury, WINDOW, WINDOW)


def test_registry_owner_cannot_add_attesters_after_funding(s):
    """Issue 12 (high): the owner registered two addresses after funding; they reached the quorum and
    took 1000/1000 tokens. Now nobody can be added, and the pool counts only its own snapshot."""
    c = s.chain
    thieves = c.accounts[8:10]
    for t in thieves:
        with reverts("RegistrationClosed"):
            c.send(s.registry.functions.registerInstitution(t.address), s.op)
        assert not s.pool.functions.isInstitution(t.address).call()
    loot = merkle.build_tree([(thieves[0].address, FUNDED)])
    for t in thieves:
        with reverts("NotInstitution", t.address):
            s.attest(t, loot)
    assert [s.pool.functions.isInstitution(a.address).call() for a in s.inst] == [True] * 3
    assert s.pool.functions.institutionCount().call() == 3


def test_quorum_must_be_a_strict_majority_of_the_snapshot(s):
    """Issue 12 (medium): any quorum 1..n was accepted; 1-of-4 and 2-of-4 colluders took the pool."""
    c = s.chain
    four = new_registry(c, c.accounts[1:5])
    for quorum in (0, 1, 2, 5):
        with reverts("InvalidQuorum", quorum, 4):
            deploy(c, "RewardPool", s.token.address, four.address, quorum, s.treasury, WINDOW, WINDOW)
    for quorum in (3, 4):  # a majority, or all of them
        pool = deploy(c, "RewardPool", s.token.address, four.address, quorum, s.treasury, WINDOW, WINDOW)
        assert pool.functions.quorum().call() == quorum
    with reverts("InvalidQuorum", 1, 3):
        deploy(c, "RewardPool", s.token.address, s.registry.address, 1, s.treasury, WINDOW, WINDOW)
    assert s.new_pool(quorum=3, fund=0).functions.quorum().call() == 3


def test_one_compromised_institution_cannot_finalize_alone(s):
    c = s.chain
    greedy = s.inst[0]
    self_dealing = merkle.build_tree([(greedy.address, FUNDED)])
    s.attest(greedy, self_dealing)
    with reverts("AlreadyAttested", greedy.address):  # no overwriting, not even to the honest root
        s.attest(greedy)
    assert not s.pool.functions.finalized().call()
    with reverts("NotFinalized"):
        s.claim(0, self_dealing)
    s.attest(s.inst[1])
    assert not s.pool.functions.finalized().call()  # the honest root has one vote of three
    s.attest(s.inst[2])
    assert s.pool.functions.merkleRoot().call() == s.tree.root
    with reverts("InvalidProof", 0, greedy.address, FUNDED):
        s.claim(0, self_dealing)
    s.claim(0)
    assert s.balance(greedy.address) == 200 * TOKENS
    assert c.w3.eth.get_balance(s.pool.address) == 0


# ------------------------------------------------------------------------------------------- attestations


def test_attestation_waits_for_the_training_record(s):
    """Issue 12 (medium): a pool finalized with zero rounds recorded. Attesting now needs the stopped
    training (the registry's digest reverts until then) and, after it, every feature file."""
    c = s.chain
    fresh = deploy_pool(c, trained=False)
    with reverts("TrainingNotStopped"):
        fresh.attest(fresh.inst[0], training=bytes(32))
    train(c, fresh.registry, fresh.inst, features=False)
    deadline = fresh.registry.functions.featuresDeadline().call()
    with reverts("FeaturesOpen", deadline):
        fresh.attest(fresh.inst[0], training=bytes(32))
    for who in fresh.inst:
        c.send(fresh.registry.functions.submitFeatures(CID), who)
    fresh.finalize()


def test_attestation_is_bound_to_the_recorded_training(s):
    digest = s.training
    other = bytes(31) + b"\x01"
    with reverts("TrainingMismatch", other, digest):
        s.attest(s.inst[0], training=other)
    receipt = s.attest(s.inst[0])
    s.attest(s.inst[1])
    assert s.pool.functions.attestedTraining().call() == digest
    assert s.pool.functions.allocationCid().call() == CID and s.pool.functions.merkleRoot().call() == s.tree.root
    assert s.pool.functions.allocationTotal().call() == total(s.tree)
    event = s.pool.events.Attested().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert event["allocationId"] == s.pool.functions.allocationId(s.tree.root, total(s.tree), CID, digest).call()
    assert s.pool.functions.attestationOf(s.inst[0].address).call() == event["allocationId"]
    assert s.pool.functions.attestations(event["allocationId"]).call() == 2


def test_the_same_root_with_another_cid_or_total_is_another_allocation(s):
    s.attest(s.inst[0], cid=CID + b"x")
    s.attest(s.inst[1], total=total(s.tree) + 1)
    assert not s.pool.functions.finalized().call()
    s.attest(s.inst[2])
    assert not s.pool.functions.finalized().call()


def test_empty_allocations_are_rejected(s):
    training = s.training
    with reverts("EmptyAllocation"):
        s.chain.send(s.pool.functions.attest(bytes(32), 1, CID, training), s.inst[0])
    with reverts("EmptyAllocation"):
        s.chain.send(s.pool.functions.attest(s.tree.root, 1, b"", training), s.inst[0])


def test_only_institutions_of_the_snapshot_attest(s):
    for who in (s.chain.accounts[9], s.op):
        with reverts("NotInstitution", who.address):
            s.attest(who)


def test_c3_over_allocation_is_rejected_at_attestation(s):
    with reverts("AllocationExceedsPool", FUNDED + 1, FUNDED):
        s.attest(s.inst[0], total=FUNDED + 1)
    s.attest(s.inst[0], total=FUNDED)  # exactly the balance is allowed


def test_c3_a_tree_paying_more_than_its_total_stops_at_the_total(s):
    tree = merkle.build_tree([(s.inst[0].address, 600 * TOKENS), (s.inst[1].address, 600 * TOKENS)])
    for who in s.inst[:2]:
        s.attest(who, tree, total=700 * TOKENS)
    s.claim(0, tree)
    with reverts("ClaimExceedsAllocation", 1200 * TOKENS, 700 * TOKENS):
        s.claim(1, tree)
    exact = merkle.build_tree([(s.inst[0].address, 600 * TOKENS), (s.inst[1].address, 100 * TOKENS)])
    pool = s.new_pool()
    for who in s.inst[:2]:
        s.attest(who, exact, pool=pool)
    s.claim(0, exact, pool=pool)
    s.claim(1, exact, pool=pool)  # claims up to exactly the total are paid
    assert pool.functions.claimedTotal().call() == 700 * TOKENS


def test_c3_one_institution_cannot_block_the_others(s):
    bogus = merkle.build_tree([(s.chain.accounts[9].address, 1)])
    s.attest(s.inst[2], bogus)  # a competing, bogus allocation
    s.finalize()  # the two others still reach the quorum
    for i in range(len(s.tree)):
        s.claim(i)
    assert s.pool.functions.claimedTotal().call() == total(s.tree)


def test_attestations_and_funding_close_after_finalization(s):
    s.finalize()
    with reverts("AlreadyFinalized"):
        s.attest(s.inst[2])
    with reverts("AlreadyFinalized"):
        s.chain.send(s.pool.functions.fund(1), s.op)


# ------------------------------------------------------------------------------------------- claims


def test_every_leaf_claims_once_and_events_name_it(s):
    tree = s.finalize()
    paid = {}
    for i, (account, amount) in enumerate(tree.values):
        receipt = s.claim(i)
        logs = s.pool.events.Claimed().process_receipt(receipt, errors=DISCARD)
        assert [dict(e["args"]) for e in logs] == [{"index": i, "account": account, "amount": amount}]
        assert s.pool.functions.isClaimed(i).call()
        paid[account] = paid.get(account, 0) + amount
        assert s.balance(account) == paid[account]
        with reverts("AlreadyClaimed", i):  # double claim
            s.claim(i)
    assert s.balance(s.pool.address) == FUNDED - total(tree)


def test_two_leaves_of_one_account_are_both_paid(s):
    """Issue 12 (low): ``claimed`` was keyed by account, so the second leaf of an account was lost."""
    tree = s.finalize()
    account = tree.values[3][0]
    leaves = [i for i, (a, _) in enumerate(tree.values) if a == account]
    assert len(leaves) == 2
    for i in leaves:
        s.claim(i)
    assert s.balance(account) == sum(tree.values[i][1] for i in leaves)


def test_forged_proofs_are_rejected(s):
    c = s.chain
    tree = s.finalize()
    account, amount = tree.values[3]
    other = merkle.build_tree([(account, amount * 2), (s.inst[0].address, 1)])
    forged = [
        dict(amount=amount + 1),  # wrong amount
        dict(index=4),  # another leaf's index
        dict(proof=[bytes(32)] + tree.proof(3)[1:]),  # altered sibling
        dict(proof=tree.proof(3)[:-1]),  # truncated
        dict(proof=other.proof(0), amount=amount * 2, index=0),  # a proof of another tree
    ]
    for kw in forged:
        with reverts("InvalidProof"):
            s.claim(3, **kw)
    with reverts("InvalidProof", 3, c.accounts[9].address, amount):  # somebody else's leaf
        c.send(s.pool.functions.claim(3, c.accounts[9].address, amount, tree.proof(3)), c.accounts[9])
    assert not s.pool.functions.isClaimed(4).call()
    s.claim(3)  # the real one still works


def test_anyone_may_relay_a_claim_but_tokens_go_to_the_leaf(s):
    relayer = s.chain.accounts[9]
    tree = s.finalize()
    s.claim(4, sender=relayer)
    assert s.balance(relayer.address) == 0
    assert s.balance(tree.values[4][0]) == tree.values[4][1]


# ------------------------------------------------------------------------------------------- deadlines and windows


def test_windows_are_bounded(s):
    """Issue 12 (low): ``claimWindow`` was unbounded (an overflow meant the pool could never finalize)
    and zero was accepted by a mutant nobody noticed."""
    c = s.chain
    args = (s.token.address, s.registry.address, 2, s.treasury)
    for attestation, claim in (
        (0, WINDOW),
        (MAX_WINDOW + 1, WINDOW),
        (WINDOW, 0),
        (WINDOW, MAX_WINDOW + 1),
        (WINDOW, 2**256 - 1),
    ):
        with reverts("InvalidWindow", claim if attestation == WINDOW else attestation):
            deploy(c, "RewardPool", *args, attestation, claim)
    pool = deploy(c, "RewardPool", *args, MAX_WINDOW, MAX_WINDOW)
    assert pool.functions.claimWindow().call() == MAX_WINDOW
    assert pool.functions.attestationDeadline().call() == c.timestamp() + MAX_WINDOW


def test_constructor_rejects_zero_addresses(s):
    zero = "0x" + "00" * 20
    for args in (
        (zero, s.registry.address, s.treasury),
        (s.token.address, zero, s.treasury),
        (s.token.address, s.registry.address, zero),
    ):
        with reverts("ZeroAddress"):
            deploy(s.chain, "RewardPool", args[0], args[1], 2, args[2], WINDOW, WINDOW)


def test_nothing_is_funded_or_attested_from_the_attestation_deadline_on(s):
    c = s.chain
    deadline = s.pool.functions.attestationDeadline().call()
    c.send(s.token.functions.approve(s.pool.address, 2), s.op)
    next_block_at(c, deadline - 1)
    c.send(s.pool.functions.fund(1), s.op)  # the last second of the window
    assert c.timestamp() == deadline - 1
    with reverts("AttestationClosed"):  # the next block is at the deadline
        c.send(s.pool.functions.fund(1), s.op)
    with reverts("AttestationClosed"):
        s.attest(s.inst[0])
    assert s.pool.functions.funded().call() == FUNDED + 1


def test_attestation_and_claim_deadlines_at_their_last_second(s):
    c = s.chain
    deadline = s.pool.functions.attestationDeadline().call()
    s.attest(s.inst[0])
    next_block_at(c, deadline - 1)
    s.attest(s.inst[1])  # the last second of the attestation window
    claim_deadline = s.pool.functions.claimDeadline().call()
    assert claim_deadline == deadline - 1 + WINDOW
    next_block_at(c, claim_deadline - 1)
    s.claim(0)  # the last second of the claim window
    with reverts("ClaimWindowClosed"):
        s.claim(1)


def test_treasury_cannot_reclaim_before_the_claim_deadline(s):
    """With an attestation window shorter than the claim window, the sweep waits for the claim deadline."""
    c = s.chain
    pool = s.new_pool(attestation_window=WINDOW // 2, claim_window=WINDOW * 3)
    tree = s.finalize(pool=pool)
    s.claim(0, pool=pool)
    claim_deadline = pool.functions.claimDeadline().call()
    assert pool.functions.sweepNotBefore().call() == claim_deadline
    next_block_at(c, claim_deadline - 1)  # past the attestation deadline, before the claim deadline
    with reverts("SweepTooEarly", claim_deadline):
        c.send(pool.functions.sweep(), s.op)
    s.claim(1, pool=pool)
    with reverts("ClaimWindowClosed"):  # the next block is at the claim deadline
        s.claim(2, pool=pool)
    before = s.balance(s.treasury)
    receipt = c.send(pool.functions.sweep(), c.accounts[9])  # anyone can trigger it
    swept = s.balance(s.treasury) - before
    assert swept == FUNDED - tree.values[0][1] - tree.values[1][1] == pool.functions.sweptTotal().call()
    assert [dict(e["args"]) for e in pool.events.Swept().process_receipt(receipt, errors=DISCARD)] == [
        {"to": s.treasury, "amount": swept}
    ]
    assert s.balance(pool.address) == 0
    with reverts("NothingToSweep"):
        c.send(pool.functions.sweep(), s.op)


def test_unattested_pool_returns_to_treasury_at_the_attestation_deadline(s):
    c = s.chain
    s.attest(s.inst[0])
    deadline = s.pool.functions.attestationDeadline().call()
    assert s.pool.functions.sweepNotBefore().call() == deadline
    next_block_at(c, deadline - 1)
    with reverts("SweepTooEarly", deadline):
        c.send(s.pool.functions.sweep(), s.op)
    c.send(s.token.functions.approve(s.pool.address, 0), s.op)  # a block at deadline - 1
    c.send(s.pool.functions.sweep(), s.op)  # this block is at the deadline
    assert s.balance(s.treasury) == FUNDED


def test_a_blocked_treasury_sweeps_to_another_address(s):
    """Issue 12 (low): a token that blocks the treasury kept the funds in the pool for ever."""
    c = s.chain
    token = deploy(c, "BlocklistToken", s.op.address, 10**6 * TOKENS)
    pool = s.new_pool(token=token)
    c.send(token.functions.setBlocked(s.treasury, True), s.op)
    c.advance_time(WINDOW)
    with reverts("Blocked", s.treasury):
        c.send(pool.functions.sweep(), s.op)
    treasurer = next(a for a in c.accounts if a.address == s.treasury)
    for who in (s.op, c.accounts[9]):
        with reverts("NotTreasury", who.address):
            c.send(pool.functions.sweepTo(who.address), who)
    with reverts("ZeroAddress"):
        c.send(pool.functions.sweepTo("0x" + "00" * 20), treasurer)
    spare = c.accounts[4].address
    c.send(pool.functions.sweepTo(spare), treasurer)
    assert token.functions.balanceOf(spare).call() == FUNDED and token.functions.balanceOf(pool.address).call() == 0


def test_the_treasury_cannot_sweep_early_either(s):
    treasurer = next(a for a in s.chain.accounts if a.address == s.treasury)
    with reverts("SweepTooEarly"):
        s.chain.send(s.pool.functions.sweepTo(treasurer.address), treasurer)


def test_donations_are_swept_with_the_rest(s):
    c = s.chain
    c.send(s.token.functions.transfer(s.pool.address, 1), s.op)  # a 1-wei donation, outside fund()
    tree = s.finalize()
    s.claim(0)
    c.advance_time(WINDOW)
    c.send(s.pool.functions.sweep(), s.op)
    assert s.pool.functions.funded().call() == FUNDED
    assert s.pool.functions.claimedTotal().call() + s.pool.functions.sweptTotal().call() == FUNDED + 1
    assert s.balance(s.treasury) == FUNDED + 1 - tree.values[0][1]


# ------------------------------------------------------------------------------------------- hostile tokens


def test_c6_reentrancy_through_a_malicious_token_is_blocked(s):
    c = s.chain
    token = deploy(c, "ReentrantToken", s.op.address, 10**6 * TOKENS)
    pool = s.new_pool(token=token)
    tree = s.finalize(pool=pool)
    # The hook re-enters claim() for another valid leaf while the first claim's transfer runs.
    acct1, amt1 = tree.values[1]
    reenter = pool.functions.claim(1, acct1, amt1, tree.proof(1))._encode_transaction_data()
    c.send(token.functions.arm(pool.address, reenter, True), s.op)
    acct0, amt0 = tree.values[0]
    with reverts("ReentrancyGuardReentrantCall"):
        s.claim(0, pool=pool)
    assert token.functions.balanceOf(pool.address).call() == FUNDED and not pool.functions.isClaimed(0).call()
    # A token that swallows the failure: the outer claim pays once, the re-entrant one pays nothing.
    c.send(token.functions.arm(pool.address, reenter, False), s.op)
    s.claim(0, pool=pool)
    assert token.functions.reentered().call() and not token.functions.lastReentrySucceeded().call()
    assert token.functions.lastReentryError().call()[:4] == bytes.fromhex("3ee5aeb5")  # ReentrancyGuardReentrantCall()
    assert token.functions.balanceOf(acct0).call() == amt0 and token.functions.balanceOf(acct1).call() == 0
    assert pool.functions.claimedTotal().call() == amt0


def test_c4_fee_on_transfer_token_is_credited_what_arrived(s):
    token = deploy(s.chain, "FeeOnTransferToken", s.op.address, 10**6 * TOKENS)
    pool = s.new_pool(token=token)
    assert pool.functions.funded().call() == FUNDED - FUNDED // 100
    with reverts("AllocationExceedsPool", FUNDED, FUNDED - FUNDED // 100):
        s.attest(s.inst[0], total=FUNDED, pool=pool)


def test_c4_token_without_return_values_works_through_safe_erc20(s):
    token = deploy(s.chain, "NoReturnToken", s.op.address, 10**6 * TOKENS)
    pool = s.new_pool(token=token)
    tree = s.finalize(pool=pool)
    s.claim(2, pool=pool)
    assert token.functions.balanceOf(tree.values[2][0]).call() == tree.values[2][1]


def test_c5_a_blocked_recipient_does_not_block_the_others(s):
    c = s.chain
    token = deploy(c, "BlocklistToken", s.op.address, 10**6 * TOKENS)
    pool = s.new_pool(token=token)
    tree = s.finalize(pool=pool)
    blocked = tree.values[0][0]
    c.send(token.functions.setBlocked(blocked, True), s.op)
    with reverts("Blocked", blocked):
        s.claim(0, pool=pool)
    for i in range(1, len(tree)):
        s.claim(i, pool=pool)
    assert pool.functions.claimedTotal().call() == total(tree) - tree.values[0][1]
