"""The allocation document pinned to IPFS: what the operator publishes and every institution checks.

One JSON document (canonical: sorted keys, no spaces) that says which pool and which training it is
for, how it was computed, and the Merkle leaves::

    {"format": "ddval-allocation/1", "chain_id": ..., "registry": "0x..", "pool": "0x..",
     "training": "0x<registry.trainingDigest()>", "best_round": 4,
     "grand_utility": 0.80..., "policy": {...}, "leaves": [["0xaccount", "amount"], ...]}

Leaf ``i`` is ``(i, account, amount)`` (:mod:`ddval.economy.merkle`). No patient id is published:
only accounts and amounts. ``grand_utility`` is the grand coalition's utility U of the training
stage, which scales every DDVal value by the same positive factor (``ddval.valuation.hierarchy``); an
attester cannot recompute it from the pinned artifacts, so it takes it from here and checks that it
is a valid AUROC above chance (with U in (0.5, 1], a different U changes amounts only by rounding).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from eth_utils import is_address, to_checksum_address

from ddval.config import ExperimentConfig
from ddval.economy import merkle, rewards

FORMAT = "ddval-allocation/1"


class DocumentError(rewards.RewardError):
    """A published allocation document is malformed; the message names the field."""


@dataclass(frozen=True)
class Policy:
    """Everything besides the data that decides the amounts: the consortium's agreed parameters.

    An attester compares the published policy with its own configuration and refuses on any
    difference, before it recomputes anything."""

    pool_amount: int
    individual_share: str  # an exact fraction, e.g. "1/2"
    negative_values: str
    value_method: str
    k: int
    test_per_class: int

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> Policy:
        eco, val = cfg.economy, cfg.valuation
        share = Fraction(str(eco.individual_share))
        return cls(
            int(eco.pool_amount), str(share), eco.negative_values, eco.value_method, int(val.k), int(val.test_per_class)
        )


@dataclass(frozen=True)
class AllocationDocument:
    """The published allocation (see the module docstring)."""

    chain_id: int
    registry: str
    pool: str
    training: str
    best_round: int
    grand_utility: float
    policy: Policy
    leaves: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(amount for _, amount in self.leaves)

    def tree(self) -> merkle.MerkleTree:
        """The Merkle tree of the leaves (``tree().root`` is what the pool is asked to pay)."""
        return merkle.build_tree(self.leaves)

    def to_bytes(self) -> bytes:
        """Canonical JSON (amounts as decimal strings: they exceed JSON's safe integers)."""
        doc: dict[str, Any] = {"format": FORMAT, **asdict(self)}
        doc["policy"] = {**doc["policy"], "pool_amount": str(self.policy.pool_amount)}
        doc["leaves"] = [[account, str(amount)] for account, amount in self.leaves]
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AllocationDocument:
        """Parse and check a published document; :class:`DocumentError` names the bad field."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DocumentError(f"allocation document: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DocumentError(f"allocation document: field 'format' is not {FORMAT!r}")
        fields = {"chain_id", "registry", "pool", "training", "best_round", "grand_utility", "policy", "leaves"}
        missing = sorted(fields - set(doc))
        if missing:
            raise DocumentError(f"allocation document: missing field(s) {missing}")
        try:
            policy = Policy(**{**doc["policy"], "pool_amount": int(doc["policy"]["pool_amount"])})
        except (TypeError, KeyError, ValueError) as exc:
            raise DocumentError(f"allocation document: field 'policy' is invalid ({exc})") from None
        for name in ("registry", "pool"):
            if not is_address(doc[name]):
                raise DocumentError(f"allocation document: field {name!r} is not an address")
        return cls(
            chain_id=int(doc["chain_id"]),
            registry=to_checksum_address(doc["registry"]),
            pool=to_checksum_address(doc["pool"]),
            training=str(doc["training"]),
            best_round=int(doc["best_round"]),
            grand_utility=float(doc["grand_utility"]),
            policy=policy,
            leaves=_leaves(doc["leaves"]),
        )


def _leaves(rows: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(rows, list) or not rows:
        raise DocumentError("allocation document: field 'leaves' must be a non-empty list")
    out = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and isinstance(row[1], str)):
            raise DocumentError(f"allocation document: leaf {i} is not [account, amount]")
        if not is_address(row[0]) or not row[1].isdigit():
            raise DocumentError(f"allocation document: leaf {i} ({row[0]!r}, {row[1]!r}) is not [address, integer]")
        out.append((to_checksum_address(row[0]), int(row[1])))
    return tuple(out)
