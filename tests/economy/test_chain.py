"""Connecting: embedded chain, a real anvil node, wrong chain ids, unreachable endpoints, keys."""

from __future__ import annotations

import pytest
from econ_helpers import _stop, deploy, free_port, reverts, start_anvil

from ddval.economy import chain as chain_mod

pytestmark = pytest.mark.chain

ANVIL_FIRST = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # account 0 of the public test mnemonic


def test_embedded_chain_uses_the_same_dev_accounts_as_anvil(chain, anvil):
    rpc = chain_mod.connect(anvil)
    assert chain.accounts[0].address == rpc.accounts[0].address == ANVIL_FIRST
    assert [a.address for a in chain.accounts[:5]] == [a.address for a in rpc.accounts[:5]]
    assert chain.w3.eth.get_balance(chain.accounts[9].address) > 0


def test_anvil_deploy_call_and_decoded_revert(anvil):
    c = chain_mod.connect(anvil, chain_id=31337)
    assert c.kind == "rpc" and c.chain_id == 31337
    token = deploy(c, "DDValToken", c.accounts[0].address, 1000)
    c.send(token.functions.transfer(c.accounts[1].address, 10), c.accounts[0])
    assert token.functions.balanceOf(c.accounts[1].address).call() == 10
    with reverts("ERC20InsufficientBalance", c.accounts[2].address, 0, 1):
        c.send(token.functions.transfer(c.accounts[1].address, 1), c.accounts[2])


def test_anvil_clock_moves(anvil):
    c = chain_mod.connect(anvil)
    before = c.timestamp()
    c.advance_time(3600)
    assert c.timestamp() >= before + 3600


def test_wrong_chain_id_fails_before_anything_is_sent(anvil):
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(chain_mod.ChainError, match=r"serves chain id 31337, expected 11155111; nothing was sent"):
        chain_mod.connect(anvil, chain_id=11155111)
    assert probe.w3.eth.block_number == block


def test_unreachable_rpc_is_a_one_line_error_naming_the_redacted_endpoint():
    """Issue 17 item 9: a bare ``requests`` ConnectionError that did not name the endpoint; issue 12: the
    full URL (which may hold an API key) in error messages."""
    port = free_port()
    with pytest.raises(chain_mod.ChainError) as info:
        chain_mod.connect(f"http://user:pw@127.0.0.1:{port}/v3/API-KEY?token=T0KEN", timeout=2)
    message = str(info.value)
    reason = "ConnectionError ([Errno 111] Connection refused)"
    assert message == f"cannot reach the RPC endpoint http://127.0.0.1:{port}/<redacted>: {reason}"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback repeats the URL


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://sepolia.infura.io/v3/0123abcd", "https://sepolia.infura.io/<redacted>"),
        ("https://eth.example.org:8443/?apikey=k", "https://eth.example.org:8443/<redacted>"),
        ("http://alice:secret@10.0.0.2:8545", "http://10.0.0.2:8545/<redacted>"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
    ],
)
def test_rpc_urls_are_redacted(url, shown):
    assert chain_mod.redact_url(url) == shown


def test_a_failing_request_mid_run_names_only_the_redacted_endpoint(anvil):
    c = chain_mod.connect(anvil)
    c.w3.provider.endpoint_uri = f"http://127.0.0.1:{free_port()}/v3/API-KEY"  # the node goes away
    with pytest.raises(
        chain_mod.ChainError,
        match=r"^RPC endpoint http://127.0.0.1:\d+/<redacted>: eth_blockNumber failed: ConnectionError",
    ) as info:
        c.w3.eth.block_number
    assert "API-KEY" not in str(info.value)
    assert "url" not in repr(c) and "API-KEY" not in repr(c)


@pytest.fixture(scope="module")
def public_like_chain(tmp_path_factory):
    """An anvil that pretends to be a non-development chain (chain id 4242)."""
    url, proc = start_anvil(tmp_path_factory.mktemp("anvil4242"), "--chain-id", "4242")
    yield url
    _stop(proc)


def test_non_dev_chain_must_be_named(public_like_chain, monkeypatch):
    """Issue 12: ``chain_id`` defaulted to whatever the endpoint served; keys then went to any chain."""
    monkeypatch.setenv("DDVAL_PRIVATE_KEYS", "0x" + chain_mod.dev_accounts(1)[0].key.hex())
    with pytest.raises(
        chain_mod.ChainError, match="serves chain id 4242, which is not a development chain: set economy.chain_id"
    ):
        chain_mod.connect(public_like_chain)
    with pytest.raises(chain_mod.ChainError, match="serves chain id 4242, expected 4243; nothing was sent"):
        chain_mod.connect(public_like_chain, chain_id=4243)
    assert chain_mod.connect(public_like_chain, chain_id=4242).chain_id == 4242


def test_non_dev_chain_needs_keys_from_the_environment(public_like_chain, monkeypatch):
    monkeypatch.delenv("DDVAL_PRIVATE_KEYS", raising=False)
    monkeypatch.delenv("DDVAL_MNEMONIC", raising=False)
    with pytest.raises(chain_mod.ChainError, match="no keys for chain 4242.*DDVAL_PRIVATE_KEYS"):
        chain_mod.connect(public_like_chain, chain_id=4242)
    monkeypatch.setenv("DDVAL_MNEMONIC", chain_mod.DEV_MNEMONIC)
    with pytest.raises(chain_mod.ChainError, match="refusing the public test mnemonic on chain 4242"):
        chain_mod.connect(public_like_chain, chain_id=4242)
    monkeypatch.delenv("DDVAL_MNEMONIC")
    key = chain_mod.dev_accounts(3)[2].key.hex()
    monkeypatch.setenv("DDVAL_PRIVATE_KEYS", f"0x{key}")
    c = chain_mod.connect(public_like_chain, chain_id=4242)
    assert [a.address for a in c.accounts] == [chain_mod.dev_accounts(3)[2].address]
    monkeypatch.setenv("DDVAL_PRIVATE_KEYS", "0xnot-a-key")
    with pytest.raises(chain_mod.ChainError, match="invalid private key") as info:
        chain_mod.connect(public_like_chain, chain_id=4242)
    assert "not-a-key" not in str(info.value)  # keys are never echoed
    with pytest.raises(chain_mod.ChainError, match="cannot move the clock of chain 4242"):
        c.advance_time(1)
