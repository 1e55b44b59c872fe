"""From valuation tables to integer token amounts for institutions and individuals.

Policy (every step is exact rational arithmetic on the float inputs, so the amounts are the same on
every machine and do not depend on row order):

1. **Institutions.** Institution ``c`` weighs ``w_c = max(phi_c, 0)``, where ``phi_c`` is its value
   by the configured method (``ddval`` by default) in ``institution_values.csv``. Its reward is
   ``R_c = floor(pool * w_c / sum(w))``. If every ``w_c`` is 0, nothing is allocated.
2. **Individuals.** A share ``s`` (``economy.individual_share``) of each institution's reward is
   passed on to its individuals (patients): ``I_c = floor(R_c * s)``; the institution keeps
   ``R_c - I_c``. Patient ``p`` of ``c`` weighs ``u_p = max(sum of its scans' values, 0)`` (from
   ``point_values.parquet``, the per-data-point DDVal values) and gets ``floor(I_c * u_p / sum(u))``.
   If no patient of ``c`` has a positive value, ``I_c`` is not distributed.
3. **Negative values** (harmful data, e.g. flipped labels) earn nothing and cost nothing:
   ``negative="zero"`` (default) clips them to 0; ``negative="error"`` rejects them instead.
4. **Remainder.** Flooring never rounds up, so the amounts add up to at most the pool; the
   remainder (rounding dust, less than one base unit per recipient, plus undistributed individual
   shares) stays in the reward pool and returns to the treasury with unclaimed funds after the
   claim deadline. Equal values always get equal amounts (no largest-remainder tie-breaking).

Bad input (missing or NaN values, unknown or duplicate institutions, a patient without an account)
raises :class:`RewardError` naming the file, row and field, before anything is sent on chain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import pandas as pd
from eth_utils import is_address, to_checksum_address

Negative = Literal["zero", "error"]


class RewardError(ValueError):
    """A valuation or account table cannot be turned into payouts; the message says where."""


@dataclass(frozen=True)
class Allocation:
    """Integer amounts per recipient. ``table`` has one row per recipient:
    ``kind`` (institution/individual), ``recipient_id``, ``institution``, ``value``, ``amount``."""

    table: pd.DataFrame
    pool: int

    @property
    def total(self) -> int:
        return int(sum(int(a) for a in self.table["amount"]))

    @property
    def remainder(self) -> int:
        return self.pool - self.total


# ---------------------------------------------------------------------------- exact shares


def _exact(value: float, where: str) -> Fraction:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise RewardError(f"{where}: value is {value!r}; expected a finite number")
    try:
        return Fraction(value)
    except (TypeError, ValueError):
        raise RewardError(f"{where}: value {value!r} is not a number") from None


def _weight(value: Fraction, negative: Negative, where: str) -> Fraction:
    if value < 0:
        if negative == "error":
            raise RewardError(f"{where}: value {float(value)!r} is negative (economy.negative_values is 'error')")
        return Fraction(0)
    return value


def split(amount: int, weights: Mapping[object, Fraction]) -> dict[object, int]:
    """``floor(amount * w / sum(w))`` per key; all zeros when the weights sum to 0."""
    if amount < 0:
        raise RewardError(f"cannot split a negative amount {amount}")
    total = sum(weights.values(), Fraction(0))
    if total == 0:
        return {k: 0 for k in weights}
    return {k: math.floor(amount * w / total) for k, w in weights.items()}


# ---------------------------------------------------------------------------- inputs


def institution_values(
    frame: pd.DataFrame, institutions: Sequence[str], method: str, *, source: str = "institution_values.csv"
) -> dict[str, Fraction]:
    """The exact value of every institution by ``method``; one row each, none missing or extra."""
    _require_columns(frame, ("method", "institution", "value"), source)
    rows = frame[frame["method"] == method]
    if rows.empty:
        known = sorted(frame["method"].dropna().unique())
        raise RewardError(f"{source}: no rows with method {method!r}; methods present: {known}")
    out: dict[str, Fraction] = {}
    for idx, row in rows.iterrows():
        name, where = row["institution"], f"{source}: row {idx + 2}"  # +2: header line, 1-based
        if not isinstance(name, str) or not name:
            raise RewardError(f"{where}: field 'institution' is missing")
        if name not in institutions:
            raise RewardError(f"{where}: institution {name!r} is not one of the setting's {list(institutions)}")
        if name in out:
            raise RewardError(f"{where}: institution {name!r} appears twice for method {method!r}")
        out[name] = _exact(row["value"], f"{where}, field 'value' ({name})")
    missing = [i for i in institutions if i not in out]
    if missing:
        raise RewardError(f"{source}: no {method!r} value for institution(s) {missing}")
    return {i: out[i] for i in institutions}


def patient_values(
    frame: pd.DataFrame, institutions: Sequence[str], *, source: str = "point_values.parquet"
) -> dict[tuple[str, str], Fraction]:
    """Exact per-patient values: the sum of each patient's data-point values, by institution."""
    _require_columns(frame, ("institution", "patient_id", "value"), source)
    sums: dict[tuple[str, str], Fraction] = {}
    inst = frame["institution"].to_numpy()
    pid = frame["patient_id"].to_numpy()
    val = frame["value"].to_numpy()
    for i in range(len(frame)):
        where = f"{source}: row {i}"
        if not isinstance(inst[i], str) or not inst[i]:
            raise RewardError(f"{where}: field 'institution' is missing")
        if inst[i] not in institutions:
            raise RewardError(f"{where}: institution {inst[i]!r} is not one of the setting's {list(institutions)}")
        if pid[i] is None or (isinstance(pid[i], float) and math.isnan(pid[i])) or str(pid[i]) == "":
            raise RewardError(f"{where}: field 'patient_id' is missing")
        key = (inst[i], str(pid[i]))
        sums[key] = sums.get(key, Fraction(0)) + _exact(float(val[i]), f"{where}, field 'value'")
    return sums


def institution_values_from_points(
    points: pd.DataFrame, institutions: Sequence[str], *, source: str = "point_values"
) -> dict[str, Fraction]:
    """DDVal's institution values, exactly as the valuation stage sums them from its point values
    (:func:`ddval.valuation.hierarchy.institution_values`): what an attester recomputes."""
    from ddval.valuation.hierarchy import institution_values as sum_by_institution

    _require_columns(points, ("institution", "value"), source)
    sums = sum_by_institution(points, institutions)
    return {name: _exact(float(sums[name]), f"{source}: institution {name!r}") for name in institutions}


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RewardError(f"{source}: missing column(s) {missing}; has {list(frame.columns)}")


# ---------------------------------------------------------------------------- the allocation


def individual_id(institution: str, patient_id: str) -> str:
    """Recipient id of a patient: ``<institution>/<patient_id>`` (unique across institutions)."""
    return f"{institution}/{patient_id}"


def allocate(
    inst_values: Mapping[str, Fraction],
    pat_values: Mapping[tuple[str, str], Fraction],
    pool: int,
    *,
    individual_share: Fraction | str | float = Fraction(1, 2),
    negative: Negative = "zero",
) -> Allocation:
    """Integer amounts for every institution and patient (see the module docstring for the policy)."""
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
        raise RewardError(f"pool must be a non-negative integer of base units, got {pool!r}")
    share = (
        Fraction(str(individual_share)) if isinstance(individual_share, (str, float)) else Fraction(individual_share)
    )
    if not 0 <= share <= 1:
        raise RewardError(f"individual_share must be in [0, 1], got {individual_share!r}")
    w_inst = {c: _weight(v, negative, f"institution {c!r}") for c, v in inst_values.items()}
    reward = split(pool, w_inst)
    rows = []
    for c in inst_values:
        patients = {p: v for (ci, p), v in pat_values.items() if ci == c}
        w_pat = {p: _weight(v, negative, f"patient {individual_id(c, p)!r}") for p, v in sorted(patients.items())}
        individual_pool = math.floor(reward[c] * share)
        rows.append(("institution", c, c, float(inst_values[c]), reward[c] - individual_pool))
        for p, amount in split(individual_pool, w_pat).items():
            rows.append(("individual", individual_id(c, p), c, float(patients[p]), amount))
    table = pd.DataFrame(rows, columns=["kind", "recipient_id", "institution", "value", "amount"])
    table["amount"] = table["amount"].astype(object)  # Python ints: 18-decimal amounts exceed int64
    return Allocation(table=table, pool=pool)


# ---------------------------------------------------------------------------- accounts


def load_accounts(frame: pd.DataFrame, *, source: str = "accounts.csv") -> dict[str, str]:
    """``recipient_id -> checksummed address`` from an account table (``kind, recipient_id, account``)."""
    _require_columns(frame, ("recipient_id", "account"), source)
    out: dict[str, str] = {}
    for idx, row in frame.iterrows():
        where = f"{source}: row {idx + 2}"
        rid, account = row["recipient_id"], row["account"]
        if not isinstance(rid, str) or not rid:
            raise RewardError(f"{where}: field 'recipient_id' is missing")
        if not isinstance(account, str) or not is_address(account):
            raise RewardError(f"{where}: field 'account' {account!r} of {rid!r} is not an address")
        if rid in out:
            raise RewardError(f"{where}: recipient {rid!r} has two accounts")
        out[rid] = to_checksum_address(account)
    return out


def attach_accounts(allocation: Allocation, accounts: Mapping[str, str], *, source: str = "accounts") -> pd.DataFrame:
    """The allocation table with an ``account`` column; a recipient with an amount but no account is an error."""
    table = allocation.table.copy()
    missing = [r for r, a in zip(table["recipient_id"], table["amount"]) if r not in accounts and a > 0]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise RewardError(f"{source}: no account for recipient(s) {missing[:5]}{more}; nothing was sent")
    table["account"] = [accounts.get(r) for r in table["recipient_id"]]
    return table


def leaves(table: pd.DataFrame) -> list[tuple[str, int]]:
    """Merkle leaves ``(account, amount)``: one per recipient with a positive amount, in table order
    (institutions, each followed by its individuals). Leaf ``i`` is claimed by its index, so two
    recipients that share an account are two leaves, each paid once."""
    out = []
    for account, amount in zip(table["account"], table["amount"]):
        if int(amount) < 0:
            raise RewardError(f"negative amount {amount} for {account}")
        if int(amount) > 0:
            out.append((account, int(amount)))
    return out
