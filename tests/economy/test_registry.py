"""SwarmRegistry: access control, round binding, and a stopping rule that is actually evaluated.

Regressions of the original private contract (``original_token_code.md`` §2.3–2.4): C9 the
early-stopping rule was dead code (training always stopped after exactly 10 rounds, even while
improving); C10 no round binding (extra or skipped submissions desynchronised everyone); C12 no
validation of the institution list and silently ignored outsiders.
"""

from __future__ import annotations

import pytest
from econ_helpers import deploy, reverts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddval.economy.inputs import stopping_index

CID = b"\x01\x55\x12\x20" + bytes(range(32))


@pytest.fixture(scope="module")
def registry(chain):
    reg = deploy(chain, "SwarmRegistry", chain.accounts[0].address, 3, 20)
    for a in chain.accounts[1:4]:
        chain.send(reg.functions.registerInstitution(a.address), chain.accounts[0])
    return reg


def submit_round(c, reg, r, losses, institutions):
    for who, loss in zip(institutions, losses):
        c.send(reg.functions.submitRound(r, CID, loss), who)


def test_only_the_owner_registers_valid_distinct_institutions(registry, snapshot):
    c = snapshot
    with reverts("OwnableUnauthorizedAccount", c.accounts[9].address):
        c.send(registry.functions.registerInstitution(c.accounts[9].address), c.accounts[9])
    with reverts("AlreadyRegistered", c.accounts[1].address):
        c.send(registry.functions.registerInstitution(c.accounts[1].address), c.accounts[0])
    with reverts("ZeroAddress"):
        c.send(registry.functions.registerInstitution("0x" + "00" * 20), c.accounts[0])
    assert registry.functions.institutionCount().call() == 3
    assert [registry.functions.institutionAt(i).call() for i in range(3)] == [a.address for a in c.accounts[1:4]]


def test_registration_closes_when_training_starts(registry, snapshot):
    c = snapshot
    c.send(registry.functions.submitRound(0, CID, 5), c.accounts[1])
    with reverts("RegistrationClosed"):
        c.send(registry.functions.registerInstitution(c.accounts[9].address), c.accounts[0])


def test_c10_rounds_are_bound_and_submitted_once(registry, snapshot):
    c = snapshot
    inst = c.accounts[1:4]
    with reverts("NotInstitution", c.accounts[9].address):
        c.send(registry.functions.submitRound(0, CID, 1), c.accounts[9])
    with reverts("WrongRound", 0, 1):  # skipping ahead
        c.send(registry.functions.submitRound(1, CID, 1), inst[0])
    with reverts("EmptyCid"):
        c.send(registry.functions.submitRound(0, b"", 1), inst[0])
    c.send(registry.functions.submitRound(0, CID, 10), inst[0])
    with reverts("AlreadySubmitted", inst[0].address, 0):  # an extra submission
        c.send(registry.functions.submitRound(0, CID, 1), inst[0])
    assert registry.functions.currentRound().call() == 0  # the round stays open until all submitted
    c.send(registry.functions.submitRound(0, CID, 20), inst[1])
    c.send(registry.functions.submitRound(0, CID, 33), inst[2])
    assert registry.functions.currentRound().call() == 1
    assert registry.functions.roundMeanLoss(0).call() == 21  # floor(63 / 3)
    assert registry.functions.modelCid(0, inst[1].address).call() == CID
    assert registry.functions.valLoss(0, inst[2].address).call() == 33
    with reverts("WrongRound", 1, 0):  # replaying a closed round
        c.send(registry.functions.submitRound(0, CID, 1), inst[0])


def test_c9_improving_training_is_not_stopped_early(registry, snapshot):
    """The original stopped after exactly 10 rounds even with strictly improving results."""
    c = snapshot
    inst = c.accounts[1:4]
    for r in range(19):
        submit_round(c, registry, r, [100 - r] * 3, inst)
        assert not registry.functions.stopped().call(), f"stopped after round {r} while improving"
    submit_round(c, registry, 19, [50] * 3, inst)
    assert registry.functions.stopped().call()  # max rounds (20) reached
    assert registry.functions.bestRound().call() == 19


def test_c9_plateau_stops_after_patience_rounds_and_features_follow(registry, snapshot):
    c = snapshot
    inst = c.accounts[1:4]
    means = [9, 7, 8, 8, 7]  # best at round 1; rounds 2, 3, 4 do not improve (7 is a tie, not better)
    with reverts("TrainingNotStopped"):
        c.send(registry.functions.submitFeatures(CID), inst[0])
    for r, m in enumerate(means):
        assert not registry.functions.stopped().call()
        submit_round(c, registry, r, [m] * 3, inst)
    assert registry.functions.stopped().call() and registry.functions.bestRound().call() == 1
    with reverts("TrainingHasStopped"):
        c.send(registry.functions.submitRound(5, CID, 1), inst[0])
    c.send(registry.functions.submitFeatures(CID), inst[0])
    with reverts("FeaturesAlreadySubmitted", inst[0].address):
        c.send(registry.functions.submitFeatures(CID), inst[0])
    assert registry.functions.featuresCid(inst[0].address).call() == CID
    assert registry.functions.featuresSubmitted().call() == 1


def test_invalid_stopping_rule_is_rejected(chain):
    with reverts("InvalidStoppingRule", 0, 5):
        deploy(chain, "SwarmRegistry", chain.accounts[0].address, 0, 5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    losses=st.lists(st.integers(0, 6), min_size=1, max_size=9),
    patience=st.integers(1, 4),
    max_rounds=st.integers(1, 9),
)
def test_the_python_mirror_matches_the_contract(chain, losses, patience, max_rounds):
    """``inputs.stopping_index`` (used to validate rounds.csv before sending) equals the contract's rule."""
    owner, inst = chain.accounts[0], chain.accounts[1]
    reg = deploy(chain, "SwarmRegistry", owner.address, patience, max_rounds)
    chain.send(reg.functions.registerInstitution(inst.address), owner)
    stopped_at = None
    for r, loss in enumerate(losses):
        chain.send(reg.functions.submitRound(r, CID, loss), inst)
        if reg.functions.stopped().call():
            stopped_at = r
            break
    assert stopping_index(losses, patience, max_rounds) == stopped_at
