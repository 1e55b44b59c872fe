"""Who signs what in the economy stage: the operator, the institutions, the treasury and the individuals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from ddval.config import ExperimentConfig
from ddval.economy import chain as chain_mod
from ddval.economy import rewards
from ddval.economy.inputs import EconomyInputError


def demo_individual_key(seed: int, recipient_id: str) -> LocalAccount:
    """The demo key of an individual: keccak256 of a public label (demo only: anyone can derive it)."""
    from eth_hash.auto import keccak

    return Account.from_key(keccak(f"ddval-demo-individual:{seed}:{recipient_id}".encode()))


@dataclass
class Parties:
    """Who signs what: the operator (deploys, funds), institutions, the treasury and individuals."""

    operator: LocalAccount
    institutions: dict[str, LocalAccount]
    treasury: str
    accounts: dict[str, str]  # recipient_id -> address, for the allocation
    individual_keys: dict[str, LocalAccount] = field(default_factory=dict)  # demo individuals only


def is_dev_chain(chain: chain_mod.Chain) -> bool:
    """The embedded chain or a local development node (public test keys, demo accounts allowed)."""
    return chain.kind == "embedded" or chain.chain_id in chain_mod.DEV_CHAIN_IDS


def recipient_accounts(
    cfg: ExperimentConfig, dev: bool, institutions: dict[str, str], individuals: Sequence[str], seed: int
) -> tuple[dict[str, str], dict[str, LocalAccount]]:
    """``(recipient_id -> address, demo keys)``: the institutions' own addresses, and the individuals'
    from ``economy.accounts_csv`` or, on a dev chain without one, the derived demo accounts. The
    operator and every attester build the allocation's accounts with this one function."""
    accounts = dict(institutions)
    keys: dict[str, LocalAccount] = {}
    path = cfg.economy.accounts_csv
    if path is not None:
        if not Path(path).exists():
            raise EconomyInputError(f"{path}: account table (economy.accounts_csv) not found")
        accounts.update(rewards.load_accounts(pd.read_csv(path, dtype=str), source=str(path)))
    elif dev:
        for rid in individuals:
            keys[rid] = demo_individual_key(seed, rid)
            accounts[rid] = keys[rid].address
    else:
        raise EconomyInputError("economy.accounts_csv (kind, recipient_id, account) is required on a non-dev chain")
    return accounts, keys


def make_parties(
    cfg: ExperimentConfig, chain: chain_mod.Chain, institutions: Sequence[str], recipients: Sequence[str], seed: int
) -> Parties:
    """Demo accounts on dev chains; on other chains the keys (operator + institutions, in config
    order) come from the environment and the recipients' accounts from ``economy.accounts_csv``."""
    eco = cfg.economy
    dev = is_dev_chain(chain)
    n = len(institutions)
    if len(chain.accounts) < n + 1:
        raise chain_mod.ChainError(f"{n + 1} keys needed (operator + {n} institutions), {len(chain.accounts)} given")
    operator = chain.accounts[0]
    inst = {name: chain.accounts[1 + i] for i, name in enumerate(institutions)}
    if eco.treasury is not None:
        if not is_address(eco.treasury):
            raise EconomyInputError(f"economy.treasury {eco.treasury!r} is not an address")
        treasury = to_checksum_address(eco.treasury)
    elif dev and len(chain.accounts) > n + 1:
        treasury = chain.accounts[n + 1].address
    else:
        raise EconomyInputError("economy.treasury must be set on a non-development chain")
    accounts, keys = recipient_accounts(cfg, dev, {name: acct.address for name, acct in inst.items()}, recipients, seed)
    return Parties(operator, inst, treasury, accounts, keys)


def sample_individuals(table: pd.DataFrame, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` individuals with a positive amount (sorted by recipient id)."""
    ids = sorted(table.loc[(table["kind"] == "individual") & (table["amount"].map(int) > 0), "recipient_id"])
    if n >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.choice(len(ids), size=n, replace=False))


def claimers(table: pd.DataFrame, institutions: Sequence[str], n_individuals: int, seed: int) -> list[str]:
    """Who claims in the demo run: every institution with a positive amount, then a seeded sample of
    individuals (:func:`sample_individuals`). An institution valued at or below zero is owed nothing: it has
    no Merkle leaf and nothing to claim (e.g. a label-noise institution of a quality setting).

    Args:
        table: the allocation (``kind``, ``recipient_id``, ``amount`` in base units).
        institutions: the setting's institutions, in order.
        n_individuals: how many individuals claim.
        seed: the run's seed.

    Returns:
        Recipient ids, institutions first.
    """
    paid = set(table.loc[(table["kind"] == "institution") & (table["amount"].map(int) > 0), "recipient_id"])
    return [name for name in institutions if name in paid] + sample_individuals(table, n_individuals, seed)
