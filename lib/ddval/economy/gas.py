"""Sending the economy's transactions with a log of the gas each one used (``gas.csv``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from eth_account.signers.local import LocalAccount

from ddval.economy import chain as chain_mod


class GasMeter:
    """Sends transactions through a :class:`~ddval.economy.chain.Chain` and records the gas each one used
    (one row per transaction: operation, actor, gas used, hash; :meth:`table` is ``gas.csv``)."""

    def __init__(self, chain: chain_mod.Chain):
        self.chain = chain
        self.rows: list[dict[str, Any]] = []

    def send(self, operation: str, actor: str, call: Any, sender: LocalAccount, **kw: Any) -> dict[str, Any]:
        receipt = self.chain.send(call, sender, **kw)
        self._log(operation, actor, receipt)
        return receipt

    def deploy(self, operation: str, actor: str, artifact: Any, *args: Any, sender: LocalAccount):
        contract, receipt = self.chain.deploy(artifact, *args, sender=sender)
        self._log(operation, actor, receipt)
        return contract

    def send_eth(self, operation: str, actor: str, to: str, value: int, sender: LocalAccount) -> None:
        w3 = self.chain.w3
        tx = {
            "to": to,
            "value": value,
            "gas": 21_000,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain.chain_id,
            "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.chain.receipt_timeout)
        self._log(operation, actor, dict(receipt))

    def record(self, operation: str, actor: str, gas_used: int, tx_hash: str) -> None:
        """Log a transaction that another actor sent (an attester in its own process)."""
        self.rows.append({"operation": operation, "actor": actor, "gas_used": int(gas_used), "tx_hash": tx_hash})

    def _log(self, operation: str, actor: str, receipt: dict[str, Any]) -> None:
        self.record(operation, actor, receipt["gasUsed"], "0x" + bytes(receipt["transactionHash"]).hex())

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["operation", "actor", "gas_used", "tx_hash"])
