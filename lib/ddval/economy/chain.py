"""Connection to an EVM chain: the embedded one (eth-tester, in-process) or any JSON-RPC URL.

Keys never come from files in the repository:

- embedded chain and local dev nodes (anvil, hardhat: chain ids 31337, 1337): accounts derived from
  the standard public test mnemonic (``test test ... junk``), the same accounts anvil funds, so a
  run on the embedded chain and on anvil uses identical addresses;
- any other RPC endpoint: ``DDVAL_PRIVATE_KEYS`` (comma-separated hex keys) or ``DDVAL_MNEMONIC``
  from the environment. The dev mnemonic is refused there, because its keys are public.

Every problem with the endpoint (unreachable, wrong or unstated chain id, no keys) raises
:class:`ChainError` from :func:`connect`, before anything is sent: a chain that is not a local
development chain must be named (``chain_id``), so that keys are never used on a chain nobody
expected. RPC URLs often carry an API key in their path or query: every message names the endpoint
by :func:`redact_url` only, and a failing request later in a run raises a one-line
:class:`ChainError` that names the redacted endpoint too. Transactions are signed locally, sent raw
and awaited with a timeout; a revert raises :class:`TxFailed` with the decoded custom error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
import requests
from web3 import HTTPProvider, Web3
from web3.contract import Contract

#: Public test mnemonic of anvil/hardhat/eth-tester. Its keys are public: dev chains only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
#: BIP-44 path prefix of the dev accounts (anvil's: account i is m/44'/60'/0'/0/i).
DEV_HD_PATH = "m/44'/60'/0'/0"
#: Chain ids of local development nodes (anvil/hardhat 31337, ganache/geth --dev 1337).
DEV_CHAIN_IDS = (31337, 1337)
#: Gas limit of transactions on the embedded chain (half a block; they are simulated first).
EMBEDDED_TX_GAS = 15_000_000
#: Chain id of the embedded eth-tester chain.
EMBEDDED_CHAIN_ID = 131277322940537  # eth-tester's default

Account.enable_unaudited_hdwallet_features()


class ChainError(RuntimeError):
    """The chain endpoint cannot be used (unreachable, wrong chain id, no keys)."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, with ``/<redacted>`` when it had a path or query (where
    providers put API keys) and without any user info: safe to print and to write into records."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    netloc = f"{host}:{parts.port}" if parts.port else host
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password
    return f"{parts.scheme or 'http'}://{netloc}" + ("/<redacted>" if hidden else "")


def _failure(exc: BaseException) -> str:
    """A one-line reason for a failed request, without the URL it was sent to."""
    text = " ".join(str(exc).split())
    cause = re.search(r"\[Errno -?\d+\][^'\")]*|timed out|Read timed out|\b[45]\d\d [A-Z][\w ]+", text)
    return f"{type(exc).__name__}" + (f" ({cause.group(0).strip()})" if cause else "")


class _RedactingHTTPProvider(HTTPProvider):
    """web3's HTTP provider whose transport errors name the endpoint only by :func:`redact_url`."""

    def make_request(self, method: Any, params: Any) -> Any:
        try:
            return super().make_request(method, params)
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; HTTP status errors ValueErrors
            if isinstance(exc, ValueError) and not isinstance(exc, requests.exceptions.RequestException):
                raise
            raise ChainError(
                f"RPC endpoint {redact_url(str(self.endpoint_uri))}: {method} failed: {_failure(exc)}"
            ) from None


class TxFailed(RuntimeError):
    """A transaction (or its gas estimate) reverted; ``error`` is the decoded custom error name."""

    def __init__(self, message: str, error: str | None = None, args: tuple = ()):
        super().__init__(message)
        self.error = error
        self.error_args = args


@dataclass
class Chain:
    """A connected chain with local signing accounts (``accounts[0]`` deploys and funds)."""

    w3: Web3
    kind: str  # "embedded" or "rpc"
    chain_id: int
    accounts: list[LocalAccount]
    url: str | None = field(default=None, repr=False)  # may hold an API key: print :attr:`endpoint`
    receipt_timeout: float = 120.0
    _error_abis: dict[bytes, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict, repr=False)

    @property
    def endpoint(self) -> str:
        """What to call this chain in messages: ``embedded`` or the redacted RPC URL."""
        return "embedded" if self.url is None else redact_url(self.url)

    def genesis_hash(self) -> str:
        """``0x``-hash of block 0: tells two chains with one chain id apart (a restarted dev node)."""
        return "0x" + bytes(self.w3.eth.get_block(0)["hash"]).hex()

    def has_code(self, address: str) -> bool:
        """Whether a contract is deployed at ``address`` on this chain."""
        return len(self.w3.eth.get_code(to_checksum_address(address))) > 0

    # ------------------------------------------------------------------ accounts

    def account(self, index: int) -> LocalAccount:
        """Signing account ``index`` (a clear error when there are not that many keys)."""
        if index >= len(self.accounts):
            raise ChainError(f"account {index} requested, but only {len(self.accounts)} keys are configured")
        return self.accounts[index]

    # ------------------------------------------------------------------ transactions

    def send(self, call: Any, sender: LocalAccount, *, gas: int | None = None) -> dict[str, Any]:
        """Sign and send a contract call (``contract.functions.f(...)``) or constructor; wait for
        the receipt. Reverts raise :class:`TxFailed` (nothing is sent when the estimate reverts)."""
        params: dict[str, Any] = {
            "from": sender.address,
            "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain_id,
        }
        # The embedded chain: simulate once (eth_call) under a fixed limit instead of eth-tester's
        # binary-search estimate (several executions); gasUsed does not depend on the limit.
        simulate = gas is None and self.kind == "embedded"
        if gas is not None or simulate:
            params["gas"] = gas if gas is not None else EMBEDDED_TX_GAS
        try:
            tx = call.build_transaction(params)
            if simulate:
                # "pending": the block the transaction will be mined in (its timestamp decides deadlines)
                self.w3.eth.call({k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}, "pending")
        except Exception as exc:  # noqa: BLE001 - web3 raises several types for a reverting call
            raise self._as_tx_failed(exc, "simulation" if simulate else "gas estimate") from exc
        if gas is None and not simulate:
            # 20 % headroom over the estimate: state may drift between estimate and inclusion.
            tx["gas"] = min(int(tx["gas"] * 1.2) + 10_000, self.block_gas_limit())
        signed = sender.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout))
        if receipt["status"] != 1:
            raise TxFailed(f"transaction {tx_hash.hex()} reverted (gas used {receipt['gasUsed']})")
        return receipt

    def call(self, call: Any) -> Any:
        """The result of a view call (``contract.functions.f(...)``); a revert raises :class:`TxFailed`
        with the decoded custom error, as :meth:`send` does."""
        try:
            return call.call()
        except Exception as exc:  # noqa: BLE001 - web3 raises several types for a reverting call
            raise self._as_tx_failed(exc, "call") from exc

    def send_batch(self, calls: Sequence[Any], sender: LocalAccount, *, gas: int) -> list[dict[str, Any]]:
        """Send many calls from one sender back to back (consecutive nonces, one fee quote), then
        collect the receipts; for measurements with thousands of transactions. Nothing is simulated:
        a reverted transaction raises :class:`TxFailed` after the batch."""
        w3 = self.w3
        nonce = w3.eth.get_transaction_count(sender.address, "pending")
        tip = 10**9
        # Generous fee cap: a batch of full blocks may raise the base fee by 12.5 % per block.
        max_fee = 4 * int(w3.eth.get_block("latest")["baseFeePerGas"]) + tip
        hashes = []
        for i, call in enumerate(calls):
            tx = call.build_transaction(
                {
                    "from": sender.address,
                    "nonce": nonce + i,
                    "gas": gas,
                    "chainId": self.chain_id,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": tip,
                }
            )
            hashes.append(w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
        receipts = [
            dict(w3.eth.wait_for_transaction_receipt(h, timeout=self.receipt_timeout, poll_latency=0.01))
            for h in hashes
        ]
        failed = [r["transactionHash"].hex() for r in receipts if r["status"] != 1]
        if failed:
            raise TxFailed(f"{len(failed)} of {len(receipts)} batched transactions reverted, e.g. {failed[0]}")
        return receipts

    def deploy(self, artifact: Any, *args: Any, sender: LocalAccount) -> tuple[Contract, dict[str, Any]]:
        """Deploy a compiled contract; return the bound contract and the receipt."""
        self.register_errors(artifact.abi)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.send(factory.constructor(*args), sender)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi), receipt

    def at(self, artifact: Any, address: str) -> Contract:
        """A deployed contract bound to ``artifact``'s ABI."""
        self.register_errors(artifact.abi)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)

    def block_gas_limit(self) -> int:
        return int(self.w3.eth.get_block("latest")["gasLimit"])

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward (embedded chain and anvil/hardhat only) and mine a block."""
        if self.kind == "embedded":
            tester = self.w3.provider.ethereum_tester
            tester.time_travel(self.timestamp() + int(seconds))
            tester.mine_blocks(1)
        elif self.chain_id in DEV_CHAIN_IDS:
            self.w3.provider.make_request("evm_increaseTime", [int(seconds)])
            self.w3.provider.make_request("evm_mine", [])
        else:
            raise ChainError(f"cannot move the clock of chain {self.chain_id}; wait for real time instead")

    # ------------------------------------------------------------------ errors

    def register_errors(self, abi: Sequence[dict[str, Any]]) -> None:
        """Remember the custom errors of ``abi`` so that reverts can be decoded by name."""
        for item in abi:
            if item.get("type") == "error":
                selector = function_abi_to_4byte_selector(item)
                self._error_abis[selector] = (item["name"], item.get("inputs", []))

    def decode_error(self, data: bytes | str | None) -> tuple[str | None, tuple]:
        """``(name, args)`` of a custom error from revert data, or ``(None, ())``."""
        from eth_abi import decode

        if data is None:
            return None, ()
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
        if raw[:4] == bytes.fromhex("08c379a0"):  # Error(string)
            return "Error", tuple(decode(["string"], raw[4:]))
        if raw[:4] == bytes.fromhex("4e487b71"):  # Panic(uint256)
            return "Panic", tuple(decode(["uint256"], raw[4:]))
        if raw[:4] in self._error_abis:
            name, inputs = self._error_abis[raw[:4]]
            types = [i["type"] for i in inputs]
            values = decode(types, raw[4:])
            return name, tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values))
        return None, ()

    def _as_tx_failed(self, exc: Exception, what: str) -> Exception:
        data = _revert_data(exc)
        try:
            name, args = self.decode_error(data) if isinstance(data, (str, bytes)) else (None, ())
        except Exception:  # noqa: BLE001 - undecodable revert data: keep the original message
            name, args = None, ()
        if name is None and isinstance(data, str) and not data.startswith("0x") and "reverted" in str(exc):
            name, args = "Error", (data,)  # eth-tester decodes Error(string) reasons to plain text
        if name is None:
            if isinstance(exc, (ValueError, TypeError)) and not hasattr(exc, "data"):
                return exc  # a programming error (bad arguments), not a revert
            return TxFailed(f"{what} reverted: {exc}")
        return TxFailed(f"{what} reverted with {name}{args}", name, args)


def _revert_data(exc: Exception) -> bytes | str | None:
    """Revert data of a failed call: web3's ``.data`` (hex) or eth-tester's message."""
    import ast
    import re

    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, (str, bytes)):
        return data
    text = str(exc.args[0]) if exc.args else ""
    match = re.search(r"execution reverted: (.*)$", text, re.S)
    if match is None:
        return None
    payload = match.group(1).strip()
    if payload.startswith(("b'", 'b"')):
        try:
            return ast.literal_eval(payload)
        except (ValueError, SyntaxError):
            return None
    return payload


# ---------------------------------------------------------------------- connecting


def dev_accounts(n: int, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The first ``n`` accounts of ``mnemonic`` (path m/44'/60'/0'/0/i, as anvil derives them)."""
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

    seed = seed_from_mnemonic(mnemonic, passphrase="")  # PBKDF2 once, not once per account
    return [Account.from_key(key_from_seed(seed, f"{DEV_HD_PATH}/{i}")) for i in range(n)]


def connect(
    rpc_url: str | None = None,
    *,
    chain_id: int | None = None,
    n_accounts: int = 10,
    timeout: float = 10.0,
    keys: Sequence[str] | None = None,
) -> Chain:
    """Connect to the embedded chain (``rpc_url=None``) or to a JSON-RPC endpoint.

    ``chain_id``: the chain the caller expects; a different one raises :class:`ChainError`, and so
    does a chain that is not a development chain (:data:`DEV_CHAIN_IDS`) when ``chain_id`` is None.
    Keys: ``keys`` (hex private keys; an actor that signs for itself only, such as an attester) or
    see the module docstring. Nothing is sent here.
    """
    if rpc_url is None:
        return _connect_embedded(n_accounts)
    where = redact_url(rpc_url)
    w3 = Web3(_RedactingHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        actual = int(w3.eth.chain_id)
    except ChainError as exc:
        raise ChainError(f"cannot reach the RPC endpoint {where}: {str(exc).split(' failed: ')[-1]}") from None
    except Exception as exc:  # noqa: BLE001 - bad JSON, an HTML error page, ...
        raise ChainError(f"cannot use the RPC endpoint {where}: {_failure(exc)}") from None
    if chain_id is None and actual not in DEV_CHAIN_IDS:
        raise ChainError(
            f"RPC endpoint {where} serves chain id {actual}, which is not a development chain: set "
            "economy.chain_id to the chain you mean; nothing was sent"
        )
    if chain_id is not None and actual != chain_id:
        raise ChainError(f"RPC endpoint {where} serves chain id {actual}, expected {chain_id}; nothing was sent")
    accounts = _accounts_from_keys(keys) if keys is not None else _keys_from_environment(actual, n_accounts, where)
    return Chain(
        w3=w3, kind="rpc", chain_id=actual, accounts=accounts, url=rpc_url, receipt_timeout=max(timeout, 120.0)
    )


def _connect_embedded(n_accounts: int) -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend.from_mnemonic(DEV_MNEMONIC, num_accounts=n_accounts, hd_path=DEV_HD_PATH)
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    return Chain(w3=w3, kind="embedded", chain_id=int(w3.eth.chain_id), accounts=dev_accounts(n_accounts))


def _accounts_from_keys(keys: Sequence[str], where: str = "the key list") -> list[LocalAccount]:
    try:
        return [Account.from_key(k) for k in keys]
    except Exception as exc:  # noqa: BLE001 - never echo the key itself
        raise ChainError(f"{where} holds an invalid private key ({type(exc).__name__})") from None


def _keys_from_environment(chain_id: int, n_accounts: int, where: str) -> list[LocalAccount]:
    keys = [k.strip() for k in os.environ.get("DDVAL_PRIVATE_KEYS", "").split(",") if k.strip()]
    mnemonic = os.environ.get("DDVAL_MNEMONIC", "").strip()
    if keys:
        return _accounts_from_keys(keys, "DDVAL_PRIVATE_KEYS")
    if mnemonic:
        if mnemonic == DEV_MNEMONIC and chain_id not in DEV_CHAIN_IDS:
            raise ChainError(f"refusing the public test mnemonic on chain {chain_id} ({where}); its keys are public")
        return dev_accounts(n_accounts, mnemonic)
    if chain_id in DEV_CHAIN_IDS:
        return dev_accounts(n_accounts)
    raise ChainError(
        f"no keys for chain {chain_id} ({where}): set DDVAL_PRIVATE_KEYS (comma-separated hex keys) "
        "or DDVAL_MNEMONIC in the environment; keys are never read from files"
    )
