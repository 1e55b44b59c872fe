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


def make_parties(cfg: ExperimentConfig, chain: chain_mod.Chain, institutions: Sequence[str], recipients: Sequence[str], seed: int) -> Parties:
    """Demo accounts on dev chains; on other chains the keys (operator + institutions, in config
    order) come from the environment and the recipients' accounts from ``economy.accounts_csv``."""
    eco = cfg.economy
    dev = chain.kind == "embedded" or chain.chain_id in chain_mod.DEV_CHAIN_IDS
    n = len(institutions)
    if len(chain.accounts) < n + 1:
        raise chain_mod.ChainError(f"{n + 1} keys needed (operator + {n} institutions), {len(chain.accounts)} configured")
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
    accounts = {name: acct.address for name, acct in inst.items()}
    keys: dict[str, LocalAccount] = {}
    if eco.accounts_csv is not None:
        path = Path(eco.accounts_csv)
        if not path.exists():
            raise EconomyInputError(f"{path}: account table (economy.accounts_csv) not found")
        accounts.update(rewards.load_accounts(pd.read_csv(path, dtype=str), source=str(path)))
    elif dev:
        for rid in recipients:
            keys[rid] = demo_individual_key(seed, rid)
            accounts[rid] = keys[rid].address
    else:
        raise EconomyInputError("economy.accounts_csv (kind, recipient_id, account) is required on a non-development chain")
    return Parties(operator, inst, treasury, accounts, keys)



def sample_individuals(table: pd.DataFrame, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` individuals with a positive amount (sorted by recipient id)."""
    ids = sorted(table.loc[(table["kind"] == "individual") & (table["amount"].map(int) > 0), "recipient_id"])
    if n >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.choice(len(ids), size=n, replace=False))
