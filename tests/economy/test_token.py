"""OpenZeppelin's ERC-20 behaviours (``ERC20.behavior.js``, ``ERC20.test.js``, v5) on DDValToken."""

from __future__ import annotations

import pytest
from econ_helpers import deploy, reverts

from web3.logs import DISCARD

from ddval.economy.contracts import load_artifact

SUPPLY = 100 * 10**18
ZERO = "0x0000000000000000000000000000000000000000"
MAX = 2**256 - 1


@pytest.fixture(scope="module")
def token(chain):
    return deploy(chain, "DDValToken", chain.accounts[0].address, SUPPLY)


@pytest.fixture
def parties(snapshot):
    holder, recipient, spender, other = snapshot.accounts[:4]
    return snapshot, holder, recipient, spender, other


def events(contract, name, receipt):
    return [dict(e["args"]) for e in getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def test_metadata_and_supply(token, chain):
    assert token.functions.name().call() == "DDVal Reward Token"
    assert token.functions.symbol().call() == "DDV"
    assert token.functions.decimals().call() == 18
    assert token.functions.totalSupply().call() == SUPPLY
    assert token.functions.balanceOf(chain.accounts[0].address).call() == SUPPLY
    assert token.functions.balanceOf(chain.accounts[5].address).call() == 0


def test_mint_emits_transfer_from_zero_and_rejects_zero_holder(chain):
    contract, receipt = chain.deploy(
        load_artifact("DDValToken"), chain.accounts[1].address, 7, sender=chain.accounts[0]
    )
    assert events(contract, "Transfer", receipt) == [{"from": ZERO, "to": chain.accounts[1].address, "value": 7}]
    with reverts("ERC20InvalidReceiver", ZERO):
        deploy(chain, "DDValToken", ZERO, 7)


class TestTransfer:
    def test_reverts_when_amount_exceeds_balance(self, token, parties):
        c, holder, recipient, *_ = parties
        with reverts("ERC20InsufficientBalance", holder.address, SUPPLY, SUPPLY + 1):
            c.send(token.functions.transfer(recipient.address, SUPPLY + 1), holder)

    def test_moves_full_balance_and_emits(self, token, parties):
        c, holder, recipient, *_ = parties
        receipt = c.send(token.functions.transfer(recipient.address, SUPPLY), holder)
        assert token.functions.balanceOf(holder.address).call() == 0
        assert token.functions.balanceOf(recipient.address).call() == SUPPLY
        assert events(token, "Transfer", receipt) == [
            {"from": holder.address, "to": recipient.address, "value": SUPPLY}
        ]

    def test_zero_transfer_succeeds_and_emits(self, token, parties):
        c, holder, recipient, *_ = parties
        receipt = c.send(token.functions.transfer(recipient.address, 0), holder)
        assert events(token, "Transfer", receipt) == [{"from": holder.address, "to": recipient.address, "value": 0}]
        assert token.functions.balanceOf(holder.address).call() == SUPPLY

    def test_reverts_to_zero_address(self, token, parties):
        c, holder, *_ = parties
        with reverts("ERC20InvalidReceiver", ZERO):
            c.send(token.functions.transfer(ZERO, 1), holder)


class TestTransferFrom:
    def test_moves_and_decreases_allowance_without_approval_event(self, token, parties):
        c, holder, recipient, spender, _ = parties
        c.send(token.functions.approve(spender.address, 10), holder)
        receipt = c.send(token.functions.transferFrom(holder.address, recipient.address, 4), spender)
        assert token.functions.allowance(holder.address, spender.address).call() == 6
        assert token.functions.balanceOf(recipient.address).call() == 4
        assert events(token, "Transfer", receipt) == [{"from": holder.address, "to": recipient.address, "value": 4}]
        assert events(token, "Approval", receipt) == []  # OZ 5.x no longer emits Approval here

    def test_reverts_on_insufficient_balance(self, token, parties):
        c, holder, recipient, spender, _ = parties
        c.send(token.functions.approve(spender.address, SUPPLY + 1), holder)
        with reverts("ERC20InsufficientBalance", holder.address, SUPPLY, SUPPLY + 1):
            c.send(token.functions.transferFrom(holder.address, recipient.address, SUPPLY + 1), spender)

    def test_reverts_on_insufficient_allowance(self, token, parties):
        c, holder, recipient, spender, _ = parties
        c.send(token.functions.approve(spender.address, 3), holder)
        with reverts("ERC20InsufficientAllowance", spender.address, 3, 4):
            c.send(token.functions.transferFrom(holder.address, recipient.address, 4), spender)

    def test_unlimited_allowance_is_not_decreased(self, token, parties):
        c, holder, recipient, spender, _ = parties
        c.send(token.functions.approve(spender.address, MAX), holder)
        receipt = c.send(token.functions.transferFrom(holder.address, recipient.address, 5), spender)
        assert token.functions.allowance(holder.address, spender.address).call() == MAX
        assert events(token, "Approval", receipt) == []

    def test_reverts_to_zero_address(self, token, parties):
        c, holder, _, spender, _ = parties
        c.send(token.functions.approve(spender.address, 5), holder)
        with reverts("ERC20InvalidReceiver", ZERO):
            c.send(token.functions.transferFrom(holder.address, ZERO, 5), spender)

    def test_reverts_from_zero_address(self, token, parties):
        c, _, recipient, spender, _ = parties
        with reverts("ERC20InvalidApprover", ZERO):
            c.send(token.functions.transferFrom(ZERO, recipient.address, 0), spender)


class TestApprove:
    def test_sets_replaces_and_emits_even_above_balance(self, token, parties):
        c, holder, _, spender, _ = parties
        receipt = c.send(token.functions.approve(spender.address, SUPPLY * 2), holder)
        assert events(token, "Approval", receipt) == [
            {"owner": holder.address, "spender": spender.address, "value": SUPPLY * 2}
        ]
        c.send(token.functions.approve(spender.address, 1), holder)
        assert token.functions.allowance(holder.address, spender.address).call() == 1

    def test_reverts_for_zero_spender(self, token, parties):
        c, holder, *_ = parties
        with reverts("ERC20InvalidSpender", ZERO):
            c.send(token.functions.approve(ZERO, 1), holder)


class TestBurn:
    def test_burn_decreases_supply_and_emits(self, token, parties):
        c, holder, *_ = parties
        receipt = c.send(token.functions.burn(10), holder)
        assert token.functions.totalSupply().call() == SUPPLY - 10
        assert events(token, "Transfer", receipt) == [{"from": holder.address, "to": ZERO, "value": 10}]

    def test_burn_more_than_balance_reverts(self, token, parties):
        c, _, recipient, *_ = parties
        with reverts("ERC20InsufficientBalance", recipient.address, 0, 1):
            c.send(token.functions.burn(1), recipient)

    def test_burn_from_spends_allowance(self, token, parties):
        c, holder, _, spender, _ = parties
        c.send(token.functions.approve(spender.address, 3), holder)
        with reverts("ERC20InsufficientAllowance", spender.address, 3, 4):
            c.send(token.functions.burnFrom(holder.address, 4), spender)
        c.send(token.functions.burnFrom(holder.address, 3), spender)
        assert token.functions.totalSupply().call() == SUPPLY - 3
