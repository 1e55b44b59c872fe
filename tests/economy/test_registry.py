"""SwarmRegistry: access control, round binding, bounded losses, round deadlines, and a stopping rule
that is actually evaluated.

Regressions of the original private contract (``original_token_code.md`` §2.3–2.4): C9 the
early-stopping rule was dead code (training always stopped after exactly 10 rounds, even while
improving); C10 no round binding (extra or skipped submissions desynchronised everyone); C12 no
validation of the institution list and silently ignored outsiders. Regressions of issue 12: losses
without a bound (one loss of 2**256-1 made every later submission overflow), no round deadline (one
silent institution kept a round open for ever), registration open until the first round record.
"""

from __future__ import annotations

import pytest
from econ_helpers import deploy, next_block_at, reverts
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddval.economy.inputs import stopping_index

CID = b"\x01\x55\x12\x20" + bytes(range(32))
MAX_LOSS = 10**24  # a loss of 1e6 at ddval's 1e18 scale
TIMEOUT = 1000  # seconds per round (and for the features after training)


def new_registry(chain, patience=3, max_rounds=20, max_loss=MAX_LOSS, timeout=TIMEOUT, institutions=None, close=True):
    """A registry with ``institutions`` (default accounts 1-3) registered and, with ``close``, registration closed."""
    owner = chain.accounts[0]
    reg = deploy(chain, "SwarmRegistry", owner.address, patience, max_rounds, max_loss, timeout)
    for a in chain.accounts[1:4] if institutions is None else institutions:
        chain.send(reg.functions.registerInstitution(a.address), owner)
    if close:
        chain.send(reg.functions.closeRegistration(), owner)
    return reg


@pytest.fixture(scope="module")
def registry(chain):
    return new_registry(chain)


def submit_round(c, reg, r, losses, institutions):
    for who, loss in zip(institutions, losses):
        c.send(reg.functions.submitRound(r, CID, loss), who)


def digest(reg, best_round, models, features):
    """``trainingDigest`` recomputed in Python (what an attester checks)."""
    return keccak(encode(["address", "uint256", "bytes[]", "bytes[]"], [reg.address, best_round, models, features]))


# ---------------------------------------------------------------------------- registration


def test_only_the_owner_registers_valid_distinct_institutions(chain, snapshot):
    c = snapshot
    reg = new_registry(c, close=False)
    with reverts("OwnableUnauthorizedAccount", c.accounts[9].address):
        c.send(reg.functions.registerInstitution(c.accounts[9].address), c.accounts[9])
    with reverts("AlreadyRegistered", c.accounts[1].address):
        c.send(reg.functions.registerInstitution(c.accounts[1].address), c.accounts[0])
    with reverts("ZeroAddress"):
        c.send(reg.functions.registerInstitution("0x" + "00" * 20), c.accounts[0])
    assert reg.functions.institutionCount().call() == 3
    assert [reg.functions.institutionAt(i).call() for i in range(3)] == [a.address for a in c.accounts[1:4]]
    assert (
        reg.functions.isInstitution(c.accounts[2].address).call()
        and not reg.functions.isInstitution(c.accounts[9].address).call()
    )


def test_registration_closes_for_good_before_training_starts(chain, snapshot):
    """Issue 12 (high): registration stayed open until the first round record, so the owner could add
    institutions after a pool was funded. Now training cannot start before the set is closed, and
    nothing can be added after it is."""
    c = snapshot
    owner = c.accounts[0]
    with reverts("NoInstitutions"):
        c.send(new_registry(c, institutions=[], close=False).functions.closeRegistration(), owner)
    reg = new_registry(c, close=False)
    with reverts("RegistrationOpen"):
        c.send(reg.functions.submitRound(0, CID, 5), c.accounts[1])
    with reverts("RegistrationOpen"):
        c.send(reg.functions.closeExpiredRound(), c.accounts[9])
    with reverts("OwnableUnauthorizedAccount", c.accounts[1].address):
        c.send(reg.functions.closeRegistration(), c.accounts[1])
    c.send(reg.functions.closeRegistration(), owner)
    assert reg.functions.registrationClosed().call() and reg.functions.roundOpenedAt().call() == c.timestamp()
    with reverts("RegistrationClosed"):
        c.send(reg.functions.registerInstitution(c.accounts[9].address), owner)
    with reverts("RegistrationClosed"):
        c.send(reg.functions.closeRegistration(), owner)


def test_constructor_validates_its_inputs(chain):
    owner = chain.accounts[0].address
    for patience, max_rounds in ((0, 5), (2, 0)):
        with reverts("InvalidStoppingRule", patience, max_rounds):
            deploy(chain, "SwarmRegistry", owner, patience, max_rounds, MAX_LOSS, TIMEOUT)
    for max_loss in (0, 10**36 + 1):
        with reverts("InvalidMaxLoss", max_loss):
            deploy(chain, "SwarmRegistry", owner, 2, 5, max_loss, TIMEOUT)
    for timeout in (0, 365 * 86400 + 1):
        with reverts("InvalidTimeout", timeout):
            deploy(chain, "SwarmRegistry", owner, 2, 5, MAX_LOSS, timeout)
    edge = deploy(chain, "SwarmRegistry", owner, 1, 1, 10**36, 365 * 86400)  # the bounds themselves are valid
    assert edge.functions.maxLoss().call() == 10**36 and edge.functions.roundTimeout().call() == 365 * 86400


# ---------------------------------------------------------------------------- rounds


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
    assert registry.functions.currentRound().call() == 0 and registry.functions.submittedInRound().call() == 1
    c.send(registry.functions.submitRound(0, CID, 20), inst[1])
    c.send(registry.functions.submitRound(0, CID, 33), inst[2])
    assert registry.functions.currentRound().call() == 1 and registry.functions.submittedInRound().call() == 0
    assert registry.functions.roundMeanLoss(0).call() == 21  # floor(63 / 3)
    assert registry.functions.modelCid(0, inst[1].address).call() == CID
    assert registry.functions.valLoss(0, inst[2].address).call() == 33
    with reverts("WrongRound", 1, 0):  # replaying a closed round
        c.send(registry.functions.submitRound(0, CID, 1), inst[0])
    submit_round(c, registry, 1, [3, 3, 3], inst)  # the loss sum starts again from 0 in each round
    assert registry.functions.roundMeanLoss(1).call() == 3 and registry.functions.bestRound().call() == 1


def test_losses_above_the_bound_are_refused(registry, snapshot):
    """Issue 12: a first loss of 2**256-1 made every later submitRound overflow, and one institution's
    huge losses swamped the mean. Losses above ``maxLoss`` are refused; the bound itself is accepted."""
    c = snapshot
    inst = c.accounts[1:4]
    for loss in (2**256 - 1, MAX_LOSS + 1):
        with reverts("LossOutOfRange", loss, MAX_LOSS):
            c.send(registry.functions.submitRound(0, CID, loss), inst[0])
    submit_round(c, registry, 0, [MAX_LOSS, MAX_LOSS, MAX_LOSS], inst)
    submit_round(c, registry, 1, [1, 1, 1], inst)  # the sums never overflow
    assert registry.functions.roundMeanLoss(0).call() == MAX_LOSS and registry.functions.bestRound().call() == 1


def test_a_silent_institution_is_skipped_after_the_round_deadline(registry, snapshot):
    """Issue 12: one institution that never submitted kept a round open for ever."""
    c = snapshot
    inst = c.accounts[1:4]
    submit_round(c, registry, 0, [9, 9, 9], inst)
    opened = registry.functions.roundOpenedAt().call()
    assert registry.functions.roundDeadline().call() == opened + TIMEOUT
    submit_round(c, registry, 1, [4, 8], inst[:2])  # the third stays silent
    with reverts("RoundNotExpired", 1, opened + TIMEOUT):
        c.send(registry.functions.closeExpiredRound(), c.accounts[9])
    next_block_at(c, opened + TIMEOUT)
    with reverts("RoundExpired", 1, opened + TIMEOUT):  # too late to submit at the deadline itself
        c.send(registry.functions.submitRound(1, CID, 1), inst[2])
    c.send(registry.functions.closeExpiredRound(), c.accounts[9])  # anyone may close it, from the deadline on
    assert c.timestamp() == opened + TIMEOUT
    assert registry.functions.currentRound().call() == 2
    assert registry.functions.roundMeanLoss(1).call() == 6  # the mean of those who submitted
    assert registry.functions.bestRound().call() == 1
    assert registry.functions.modelCid(1, inst[2].address).call() == b""
    submit_round(c, registry, 2, [5, 5, 5], inst)  # the next round opened with a fresh deadline


def test_a_round_nobody_submitted_is_never_the_best(chain, snapshot):
    c = snapshot
    reg = new_registry(c, patience=2)
    for r in range(3):
        c.advance_time(TIMEOUT)
        c.send(reg.functions.closeExpiredRound(), c.accounts[9])
        assert reg.functions.roundMeanLoss(r).call() == 2**256 - 1
    assert reg.functions.stopped().call() and reg.functions.bestMeanLoss().call() == 2**256 - 1
    with reverts("TrainingHasStopped"):
        c.send(reg.functions.closeExpiredRound(), c.accounts[9])
    c.advance_time(TIMEOUT)
    with reverts("NoBestRound"):  # nothing to attest a reward against
        c.call(reg.functions.trainingDigest())


def test_c9_improving_training_is_not_stopped_early(registry, snapshot):
    """The original stopped after exactly 10 rounds even with strictly improving results."""
    c = snapshot
    inst = c.accounts[1:4]
    for r in range(19):
        submit_round(c, registry, r, [100 - r] * 3, inst)
        assert not registry.functions.stopped().call(), f"stopped after round {r} while improving"
    submit_round(c, registry, 19, [50] * 3, inst)
    assert registry.functions.stopped().call()  # max rounds (20) reached
    assert registry.functions.bestRound().call() == 19 and registry.functions.stoppedAt().call() == c.timestamp()


def test_c9_plateau_stops_after_patience_rounds(registry, snapshot):
    c = snapshot
    inst = c.accounts[1:4]
    means = [9, 7, 8, 8, 7]  # best at round 1; rounds 2, 3, 4 do not improve (7 is a tie, not better)
    for r, m in enumerate(means):
        assert not registry.functions.stopped().call()
        submit_round(c, registry, r, [m] * 3, inst)
    assert registry.functions.stopped().call() and registry.functions.bestRound().call() == 1
    assert registry.functions.bestMeanLoss().call() == 7 and registry.functions.roundsClosed().call() == 5
    with reverts("TrainingHasStopped"):
        c.send(registry.functions.submitRound(5, CID, 1), inst[0])


# ---------------------------------------------------------------------------- features and the training digest


def test_features_follow_training_until_their_deadline(registry, snapshot):
    c = snapshot
    inst = c.accounts[1:4]
    with reverts("TrainingNotStopped"):
        c.send(registry.functions.submitFeatures(CID), inst[0])
    for r, m in enumerate([9, 7, 8, 8, 7]):
        submit_round(c, registry, r, [m] * 3, inst)
    stopped_at = registry.functions.stoppedAt().call()
    assert registry.functions.featuresDeadline().call() == stopped_at + TIMEOUT
    with reverts("NotInstitution", c.accounts[9].address):
        c.send(registry.functions.submitFeatures(CID), c.accounts[9])
    with reverts("EmptyCid"):
        c.send(registry.functions.submitFeatures(b""), inst[0])
    c.send(registry.functions.submitFeatures(CID), inst[0])
    with reverts("FeaturesAlreadySubmitted", inst[0].address):
        c.send(registry.functions.submitFeatures(CID), inst[0])
    assert (
        registry.functions.featuresCid(inst[0].address).call() == CID
        and registry.functions.featuresSubmitted().call() == 1
    )
    next_block_at(c, stopped_at + TIMEOUT - 1)
    c.send(registry.functions.submitFeatures(CID), inst[1])  # the last second of the window
    with reverts("FeaturesClosed", stopped_at + TIMEOUT):  # the next block is at the deadline
        c.send(registry.functions.submitFeatures(CID), inst[2])


def test_training_digest_binds_the_best_round_its_models_and_the_features(registry, snapshot):
    """Issue 12: attestations referred to nothing of the training. The digest the pool checks is final
    only once training stopped and every feature file is recorded (or their deadline passed)."""
    c = snapshot
    inst = c.accounts[1:4]
    with reverts("TrainingNotStopped"):
        c.call(registry.functions.trainingDigest())
    models = [b"\x01" + bytes([k]) * 8 for k in range(3)]
    for r, m in enumerate([9, 7, 8, 8, 7]):
        for who, cid in zip(inst, models):
            c.send(registry.functions.submitRound(r, cid + bytes([r]), m), who)
    features = [b"\x02" + bytes([k]) * 8 for k in range(3)]
    c.send(registry.functions.submitFeatures(features[0]), inst[0])
    c.send(registry.functions.submitFeatures(features[1]), inst[1])
    deadline = registry.functions.featuresDeadline().call()
    with reverts("FeaturesOpen", deadline):  # one feature file is still missing
        c.call(registry.functions.trainingDigest())
    c.send(registry.functions.submitFeatures(features[2]), inst[2])
    best_models = [cid + bytes([1]) for cid in models]  # round 1 is the best one
    assert registry.functions.trainingDigest().call() == digest(registry, 1, best_models, features)
    assert registry.functions.trainingDigest().call() != digest(
        registry, 4, [cid + bytes([4]) for cid in models], features
    )


def test_missing_features_count_as_empty_once_their_deadline_passed(registry, snapshot):
    c = snapshot
    inst = c.accounts[1:4]
    for r, m in enumerate([9, 7, 8, 8, 7]):
        submit_round(c, registry, r, [m] * 3, inst)
    c.send(registry.functions.submitFeatures(CID), inst[1])
    deadline = registry.functions.featuresDeadline().call()
    c.advance_time(deadline - 1 - c.timestamp())  # the latest block is the last second of the window
    with reverts("FeaturesOpen", deadline):
        c.call(registry.functions.trainingDigest())
    c.advance_time(1)  # the latest block is at the deadline: the missing feature files are final
    assert c.timestamp() == deadline
    assert registry.functions.trainingDigest().call() == digest(registry, 1, [CID] * 3, [b"", CID, b""])


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    losses=st.lists(st.integers(0, 6), min_size=1, max_size=9),
    patience=st.integers(1, 4),
    max_rounds=st.integers(1, 9),
)
def test_the_python_mirror_matches_the_contract(chain, losses, patience, max_rounds):
    """``inputs.stopping_index`` (used to validate rounds.csv before sending) equals the contract's rule."""
    inst = chain.accounts[1]
    reg = new_registry(chain, patience=patience, max_rounds=max_rounds, institutions=[inst])
    stopped_at = None
    for r, loss in enumerate(losses):
        chain.send(reg.functions.submitRound(r, CID, loss), inst)
        if reg.functions.stopped().call():
            stopped_at = r
            break
    assert stopping_index(losses, patience, max_rounds) == stopped_at
