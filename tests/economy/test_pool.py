"""RewardPool: the attacks on the original token economy, one regression test each, and its invariants.

Original findings (``original_token_code.md`` §2.4): C1 anyone drains the pool before values are
posted; C2 self-reported, overwritable valuations; C3 over-allocation / DoS by one institution;
C4 ignored ERC-20 return values; C5 one reverting recipient blocks everyone; C6 reentrancy through
the token; C8 ETH locked in the contract. Plus double claims, forged proofs, claims before the
quorum, and a treasury reclaim before the deadline.
"""

from __future__ import annotations

import pytest
from econ_helpers import deploy, reverts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

from ddval.economy import merkle

TOKENS = 10**18
FUNDED = 1000 * TOKENS
WINDOW = 1000  # seconds, attestation and claim windows
CID = b"\x01\x55\x12\x20" + bytes(32)


@pytest.fixture(scope="module")
def setup(chain):
    """Token, registry (3 institutions), pool (quorum 2), funded with 1000 tokens."""
    op = chain.accounts[0]
    inst = chain.accounts[1:4]
    treasury = chain.accounts[5].address
    token = deploy(chain, "DDValToken", op.address, 10**6 * TOKENS)
    registry = deploy(chain, "SwarmRegistry", op.address, 2, 10)
    for a in inst:
        chain.send(registry.functions.registerInstitution(a.address), op)
    pool = deploy(chain, "RewardPool", token.address, registry.address, 2, treasury, WINDOW, WINDOW)
    chain.send(token.functions.approve(pool.address, FUNDED), op)
    chain.send(pool.functions.fund(FUNDED), op)
    individuals = chain.accounts[6:9]
    honest = merkle.build_tree(
        [(inst[0].address, 200 * TOKENS), (inst[1].address, 300 * TOKENS), (inst[2].address, 100 * TOKENS)]
        + [(a.address, (10 + i) * TOKENS) for i, a in enumerate(individuals)]
    )  # fmt: skip
    return {"op": op, "inst": inst, "treasury": treasury, "token": token, "registry": registry, "pool": pool, "tree": honest, "individuals": individuals}


def total(tree):
    return sum(a for _, a in tree.values)


def attest(c, s, tree, who, cid=CID):
    return c.send(s["pool"].functions.attest(tree.root, total(tree), cid), who)


def finalize(c, s, tree=None):
    tree = tree or s["tree"]
    attest(c, s, tree, s["inst"][0])
    attest(c, s, tree, s["inst"][1])
    assert s["pool"].functions.finalized().call()
    return tree


def claim(c, s, tree, i, sender=None, amount=None, proof=None):
    account, value = tree.values[i]
    return c.send(s["pool"].functions.claim(account, value if amount is None else amount, tree.proof(i) if proof is None else proof), sender or s["op"])


def balance(s, who):
    return s["token"].functions.balanceOf(who).call()


# ------------------------------------------------------------------------------------------- C1


def test_no_function_moves_funds_except_claim_and_sweep(setup):
    """The pool has no owner and only four state-changing functions."""
    writes = {f["name"] for f in setup["pool"].abi if f.get("type") == "function" and f["stateMutability"] not in ("view", "pure")}
    assert writes == {"fund", "attest", "claim", "sweep"}
    assert not any(f.get("name") in ("owner", "transferOwnership", "withdraw") for f in setup["pool"].abi)


def test_c1_nobody_can_drain_before_values_are_posted(setup, snapshot):
    c, s = snapshot, setup
    outsider = c.accounts[9]
    for who in (outsider, s["op"], s["inst"][0]):
        with reverts("NotFinalized"):
            claim(c, s, s["tree"], 0, sender=who)
        with reverts("SweepTooEarly"):
            c.send(s["pool"].functions.sweep(), who)
    assert balance(s, s["pool"].address) == FUNDED


def test_c8_ether_is_rejected(setup, snapshot):
    c = snapshot
    tx = {"to": setup["pool"].address, "value": 1, "from": c.accounts[0].address}
    with pytest.raises(Exception):
        c.w3.eth.call(tx)


# ------------------------------------------------------------------------------------------- quorum, C2, C3


def test_claim_before_quorum_reverts(setup, snapshot):
    c, s = snapshot, setup
    attest(c, s, s["tree"], s["inst"][0])
    assert not s["pool"].functions.finalized().call()
    with reverts("NotFinalized"):
        claim(c, s, s["tree"], 0)


def test_c2_self_dealing_institution_cannot_overwrite_or_get_paid(setup, snapshot):
    c, s = snapshot, setup
    greedy = s["inst"][0]
    self_dealing = merkle.build_tree([(greedy.address, FUNDED)])
    attest(c, s, self_dealing, greedy)
    with reverts("AlreadyAttested", greedy.address):  # no overwriting, not even to the honest root
        attest(c, s, s["tree"], greedy)
    assert not s["pool"].functions.finalized().call()
    attest(c, s, s["tree"], s["inst"][1])
    attest(c, s, s["tree"], s["inst"][2])
    assert s["pool"].functions.merkleRoot().call() == s["tree"].root
    with reverts("InvalidProof", greedy.address, FUNDED):
        claim(c, s, self_dealing, 0)
    claim(c, s, s["tree"], 0)
    assert balance(s, greedy.address) == 200 * TOKENS


def test_only_registered_institutions_attest(setup, snapshot):
    c, s = snapshot, setup
    for who in (c.accounts[9], s["op"]):
        with reverts("NotInstitution", who.address):
            attest(c, s, s["tree"], who)


def test_c3_over_allocation_is_rejected_at_attestation(setup, snapshot):
    c, s = snapshot, setup
    with reverts("AllocationExceedsPool", FUNDED + 1, FUNDED):
        c.send(s["pool"].functions.attest(s["tree"].root, FUNDED + 1, CID), s["inst"][0])


def test_c3_a_tree_paying_more_than_its_total_stops_at_the_total(setup, snapshot):
    c, s = snapshot, setup
    inst = s["inst"]
    tree = merkle.build_tree([(inst[0].address, 600 * TOKENS), (inst[1].address, 600 * TOKENS)])
    c.send(s["pool"].functions.attest(tree.root, 700 * TOKENS, CID), inst[0])
    c.send(s["pool"].functions.attest(tree.root, 700 * TOKENS, CID), inst[1])
    claim(c, s, tree, 0)
    with reverts("ClaimExceedsAllocation", 1200 * TOKENS, 700 * TOKENS):
        claim(c, s, tree, 1)


def test_c3_one_institution_cannot_block_the_others(setup, snapshot):
    c, s = snapshot, setup
    bogus = merkle.build_tree([(c.accounts[9].address, 1)])
    attest(c, s, bogus, s["inst"][2])  # a competing, bogus allocation
    finalize(c, s)  # the two others still reach the quorum
    for i in range(len(s["tree"])):
        claim(c, s, s["tree"], i)
    assert s["pool"].functions.claimedTotal().call() == total(s["tree"])


def test_attestations_close_after_finalization(setup, snapshot):
    c, s = snapshot, setup
    finalize(c, s)
    with reverts("AlreadyFinalized"):
        attest(c, s, s["tree"], s["inst"][2])
    with reverts("AlreadyFinalized"):
        c.send(s["pool"].functions.fund(1), s["op"])


# ------------------------------------------------------------------------------------------- claims


def test_every_leaf_claims_once_and_events_name_it(setup, snapshot):
    c, s = snapshot, setup
    tree = finalize(c, s)
    for i, (account, amount) in enumerate(tree.values):
        receipt = claim(c, s, tree, i)
        logs = s["pool"].events.Claimed().process_receipt(receipt, errors=DISCARD)
        assert [dict(e["args"]) for e in logs] == [{"account": account, "amount": amount}]
        assert balance(s, account) == amount
        with reverts("AlreadyClaimed", account):  # double claim
            claim(c, s, tree, i)
    assert balance(s, s["pool"].address) == FUNDED - total(tree)


def test_forged_proofs_are_rejected(setup, snapshot):
    c, s = snapshot, setup
    tree = finalize(c, s)
    account, amount = tree.values[3]
    other = merkle.build_tree([(account, amount * 2), (s["inst"][0].address, 1)])
    forged = [
        dict(amount=amount + 1),  # wrong amount
        dict(proof=[bytes(32)] + tree.proof(3)[1:]),  # altered sibling
        dict(proof=tree.proof(3)[:-1]),  # truncated
        dict(proof=other.proof(0), amount=amount * 2),  # a proof of another tree
    ]
    for kw in forged:
        with reverts("InvalidProof"):
            claim(c, s, tree, 3, **kw)
    with reverts("InvalidProof", c.accounts[9].address, amount):  # somebody else's leaf
        c.send(s["pool"].functions.claim(c.accounts[9].address, amount, tree.proof(3)), c.accounts[9])
    claim(c, s, tree, 3)  # the real one still works


def test_anyone_may_relay_a_claim_but_tokens_go_to_the_leaf(setup, snapshot):
    c, s = snapshot, setup
    tree = finalize(c, s)
    relayer = c.accounts[9]
    claim(c, s, tree, 4, sender=relayer)
    assert balance(s, relayer.address) == 0
    assert balance(s, tree.values[4][0]) == tree.values[4][1]


# ------------------------------------------------------------------------------------------- deadlines


def test_treasury_cannot_reclaim_before_the_claim_deadline(setup, snapshot):
    c, s = snapshot, setup
    tree = finalize(c, s)
    claim(c, s, tree, 0)
    with reverts("SweepTooEarly"):
        c.send(s["pool"].functions.sweep(), s["op"])
    c.advance_time(WINDOW + 1)
    with reverts("ClaimWindowClosed"):
        claim(c, s, tree, 1)
    before = balance(s, s["treasury"])
    receipt = c.send(s["pool"].functions.sweep(), c.accounts[9])  # anyone can trigger it
    swept = balance(s, s["treasury"]) - before
    assert swept == FUNDED - tree.values[0][1]
    assert [dict(e["args"]) for e in s["pool"].events.Swept().process_receipt(receipt, errors=DISCARD)] == [{"treasury": s["treasury"], "amount": swept}]
    assert balance(s, s["pool"].address) == 0
    with reverts("NothingToSweep"):
        c.send(s["pool"].functions.sweep(), s["op"])


def test_unattested_pool_returns_to_treasury_after_attestation_deadline(setup, snapshot):
    c, s = snapshot, setup
    attest(c, s, s["tree"], s["inst"][0])
    c.advance_time(WINDOW + 1)
    with reverts("AttestationClosed"):
        attest(c, s, s["tree"], s["inst"][1])
    c.send(s["pool"].functions.sweep(), s["op"])
    assert balance(s, s["treasury"]) == FUNDED


def test_constructor_validates_its_inputs(setup, chain):
    s = setup
    zero = "0x" + "00" * 20
    with reverts("InvalidQuorum", 0, 3):
        deploy(chain, "RewardPool", s["token"].address, s["registry"].address, 0, s["treasury"], WINDOW, WINDOW)
    with reverts("InvalidQuorum", 4, 3):
        deploy(chain, "RewardPool", s["token"].address, s["registry"].address, 4, s["treasury"], WINDOW, WINDOW)
    with reverts("ZeroAddress"):
        deploy(chain, "RewardPool", s["token"].address, s["registry"].address, 2, zero, WINDOW, WINDOW)
    with reverts("InvalidWindow"):
        deploy(chain, "RewardPool", s["token"].address, s["registry"].address, 2, s["treasury"], 0, WINDOW)


# ------------------------------------------------------------------------------------------- hostile tokens


def pool_with(c, s, token_name, supply=10**6 * TOKENS):
    token = deploy(c, token_name, s["op"].address, supply)
    pool = deploy(c, "RewardPool", token.address, s["registry"].address, 2, s["treasury"], WINDOW, WINDOW)
    return token, pool


def test_c6_reentrancy_through_a_malicious_token_is_blocked(setup, snapshot):
    c, s = snapshot, setup
    token, pool = pool_with(c, s, "ReentrantToken")
    c.send(token.functions.approve(pool.address, FUNDED), s["op"])
    c.send(pool.functions.fund(FUNDED), s["op"])
    tree = s["tree"]
    for who in s["inst"][:2]:
        c.send(pool.functions.attest(tree.root, total(tree), CID), who)
    # The hook re-enters claim() for another valid leaf while the first claim's transfer runs.
    acct1, amt1 = tree.values[1]
    reenter = pool.functions.claim(acct1, amt1, tree.proof(1))._encode_transaction_data()
    c.send(token.functions.arm(pool.address, reenter, True), s["op"])
    acct0, amt0 = tree.values[0]
    with reverts("ReentrancyGuardReentrantCall"):
        c.send(pool.functions.claim(acct0, amt0, tree.proof(0)), s["op"])
    assert token.functions.balanceOf(pool.address).call() == FUNDED and not pool.functions.claimed(acct0).call()
    # A token that swallows the failure: the outer claim pays once, the re-entrant one pays nothing.
    c.send(token.functions.arm(pool.address, reenter, False), s["op"])
    c.send(pool.functions.claim(acct0, amt0, tree.proof(0)), s["op"])
    assert token.functions.reentered().call() and not token.functions.lastReentrySucceeded().call()
    assert token.functions.lastReentryError().call()[:4] == bytes.fromhex("3ee5aeb5")  # ReentrancyGuardReentrantCall()
    assert token.functions.balanceOf(acct0).call() == amt0 and token.functions.balanceOf(acct1).call() == 0
    assert pool.functions.claimedTotal().call() == amt0


def test_c4_fee_on_transfer_token_is_credited_what_arrived(setup, snapshot):
    c, s = snapshot, setup
    token, pool = pool_with(c, s, "FeeOnTransferToken")
    c.send(token.functions.approve(pool.address, FUNDED), s["op"])
    c.send(pool.functions.fund(FUNDED), s["op"])
    assert pool.functions.funded().call() == FUNDED - FUNDED // 100
    with reverts("AllocationExceedsPool", FUNDED, FUNDED - FUNDED // 100):
        c.send(pool.functions.attest(s["tree"].root, FUNDED, CID), s["inst"][0])


def test_c4_token_without_return_values_works_through_safe_erc20(setup, snapshot):
    c, s = snapshot, setup
    token, pool = pool_with(c, s, "NoReturnToken")
    c.send(token.functions.approve(pool.address, FUNDED), s["op"])
    c.send(pool.functions.fund(FUNDED), s["op"])
    tree = s["tree"]
    for who in s["inst"][:2]:
        c.send(pool.functions.attest(tree.root, total(tree), CID), who)
    c.send(pool.functions.claim(*tree.values[2], tree.proof(2)), s["op"])
    assert token.functions.balanceOf(tree.values[2][0]).call() == tree.values[2][1]


def test_c5_a_blocked_recipient_does_not_block_the_others(setup, snapshot):
    c, s = snapshot, setup
    token, pool = pool_with(c, s, "BlocklistToken")
    c.send(token.functions.approve(pool.address, FUNDED), s["op"])
    c.send(pool.functions.fund(FUNDED), s["op"])
    tree = s["tree"]
    for who in s["inst"][:2]:
        c.send(pool.functions.attest(tree.root, total(tree), CID), who)
    blocked = tree.values[0][0]
    c.send(token.functions.setBlocked(blocked, True), s["op"])
    with reverts("Blocked", blocked):
        c.send(pool.functions.claim(*tree.values[0], tree.proof(0)), s["op"])
    for i in range(1, len(tree)):
        c.send(pool.functions.claim(*tree.values[i], tree.proof(i)), s["op"])
    assert pool.functions.claimedTotal().call() == total(tree) - tree.values[0][1]


# ------------------------------------------------------------------------------------------- conservation


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_conservation_claimed_plus_returned_equals_funded(setup, chain, data):
    s = setup
    snap = chain.w3.provider.ethereum_tester.take_snapshot()
    try:
        amounts = data.draw(st.lists(st.integers(0, 50 * TOKENS), min_size=1, max_size=6), label="amounts")
        funded = data.draw(st.integers(sum(amounts), sum(amounts) + 10 * TOKENS), label="funded")
        people = [a.address for a in chain.accounts[4:10]][: len(amounts)]
        tree = merkle.build_tree(zip(people, amounts))
        pool = deploy(chain, "RewardPool", s["token"].address, s["registry"].address, 2, s["treasury"], WINDOW, WINDOW)
        chain.send(s["token"].functions.approve(pool.address, funded), s["op"])
        chain.send(pool.functions.fund(funded), s["op"])
        for who in s["inst"][:2]:
            chain.send(pool.functions.attest(tree.root, sum(amounts), CID), who)
        claimers = data.draw(st.sets(st.integers(0, len(amounts) - 1)), label="claimers")
        for i in sorted(claimers):
            chain.send(pool.functions.claim(*tree.values[i], tree.proof(i)), s["op"])
        chain.advance_time(WINDOW + 1)
        before = balance(s, s["treasury"])
        if funded - pool.functions.claimedTotal().call() > 0:
            chain.send(pool.functions.sweep(), s["op"])
        returned = balance(s, s["treasury"]) - before
        claimed = pool.functions.claimedTotal().call()
        assert claimed == sum(tree.values[i][1] for i in claimers)
        assert claimed + returned == funded
        assert balance(s, pool.address) == 0
    finally:
        chain.w3.provider.ethereum_tester.revert_to_snapshot(snap)
