"""Valuation tables -> integer token amounts: golden cases, properties, and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddval.economy import rewards

INST = ("a", "b", "c")


def F(x):
    return Fraction(x)


def test_golden_small_case_by_hand():
    # pool 1000: weights a=1, b=3, c=0 (negative clipped) -> R = 250, 750, 0
    # half goes to patients: a keeps 125, patients of a share 125 as 1:1:2 -> 31, 31, 62 (1 unit dust)
    inst = {"a": F(1), "b": F(3), "c": F(-2)}
    pats = {("a", "p1"): F(1), ("a", "p2"): F(1), ("a", "p3"): F(2), ("b", "q1"): F(-1), ("b", "q2"): F(0)}
    alloc = rewards.allocate(inst, pats, 1000, individual_share="1/2")
    got = dict(zip(alloc.table["recipient_id"], alloc.table["amount"]))
    assert got == {"a": 125, "a/p1": 31, "a/p2": 31, "a/p3": 62, "b": 375, "b/q1": 0, "b/q2": 0, "c": 0}
    # b's individuals have no positive value: its individual share (375) is not distributed
    assert alloc.total == 624 and alloc.remainder == 376


def test_negative_values_can_be_rejected():
    with pytest.raises(rewards.RewardError, match="institution 'c'.*negative"):
        rewards.allocate({"a": F(1), "c": F(-1)}, {}, 10, negative="error")
    with pytest.raises(rewards.RewardError, match="patient 'a/p'.*negative"):
        rewards.allocate({"a": F(1)}, {("a", "p"): F(-1)}, 10, negative="error")


def test_all_zero_values_allocate_nothing():
    alloc = rewards.allocate({"a": F(0), "b": F(-1)}, {("a", "p"): F(1)}, 10**18)
    assert alloc.total == 0 and alloc.remainder == 10**18


def test_amounts_are_python_ints_beyond_int64():
    alloc = rewards.allocate({"a": F(1)}, {}, 10**30, individual_share=0)
    assert alloc.table["amount"].tolist() == [10**30] and alloc.total == 10**30


values = st.floats(-1, 1, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw):
    inst = {name: Fraction(draw(values)) for name in INST}
    pats = {}
    for name in INST:
        for p in range(draw(st.integers(0, 6))):
            pats[(name, f"p{p}")] = Fraction(draw(values))
    pool = draw(st.integers(0, 10**24))
    share = draw(st.fractions(0, 1, max_denominator=100))
    return inst, pats, pool, share


@settings(max_examples=300, deadline=None)
@given(tables())
def test_payouts_are_conserved(t):
    inst, pats, pool, share = t
    alloc = rewards.allocate(inst, pats, pool, individual_share=share)
    amounts = [int(a) for a in alloc.table["amount"]]
    assert all(a >= 0 for a in amounts)
    assert sum(amounts) <= pool
    assert alloc.remainder == pool - sum(amounts) >= 0
    if all(v <= 0 for v in inst.values()):
        assert alloc.remainder == pool  # nobody earned anything: the whole pool stays
        return
    # flooring loses less than one unit per recipient, unless a whole individual share is undistributed
    undistributed = sum(
        math.floor(r * share)
        for c, r in rewards.split(pool, {k: max(v, 0) for k, v in inst.items()}).items()
        if not any(v > 0 for (ci, _), v in pats.items() if ci == c)
    )
    assert alloc.remainder - undistributed < len(amounts)


@settings(max_examples=200, deadline=None)
@given(tables(), st.data())
def test_symmetric_contributors_get_equal_amounts(t, data):
    inst, pats, pool, share = t
    # make b an exact copy of a (same value, same patient values) -> equal amounts everywhere
    inst["b"] = inst["a"]
    pats = {k: v for k, v in pats.items() if k[0] != "b"}
    pats.update({("b", p): v for (c, p), v in list(pats.items()) if c == "a"})
    alloc = rewards.allocate(inst, pats, pool, individual_share=share)
    got = dict(zip(alloc.table["recipient_id"], alloc.table["amount"]))
    assert got["a"] == got["b"]
    for (c, p), _ in pats.items():
        if c == "a":
            assert got[f"a/{p}"] == got[f"b/{p}"]
    # equal patients within one institution get equal amounts too
    by_value = {}
    for (c, p), v in pats.items():
        if c == "a":
            by_value.setdefault(v, set()).add(got[f"a/{p}"])
    assert all(len(s) == 1 for s in by_value.values())


@settings(max_examples=200, deadline=None)
@given(tables())
def test_zero_or_negative_value_gets_zero_and_more_value_never_gets_less(t):
    inst, pats, pool, share = t
    alloc = rewards.allocate(inst, pats, pool, individual_share=share)
    got = dict(zip(alloc.table["recipient_id"], alloc.table["amount"]))
    for name, v in inst.items():
        if v <= 0:
            assert got[name] == 0
    for (c, p), v in pats.items():
        if v <= 0:
            assert got[f"{c}/{p}"] == 0
    for (c1, p1), v1 in pats.items():
        for (c2, p2), v2 in pats.items():
            if c1 == c2 and v1 > v2:
                assert got[f"{c1}/{p1}"] >= got[f"{c2}/{p2}"]


# ---------------------------------------------------------------------------- tables and bad input


def inst_frame(rows):
    return pd.DataFrame(
        rows, columns=["setting", "seed", "method", "institution", "value", "wall_time_s", "n_utility_evals"]
    )


def good_inst():
    return inst_frame([["s", 0, m, i, v, 0.1, 1] for m in ("ddval", "exact") for i, v in zip(INST, (0.1, 0.2, 0.3))])


def test_institution_values_read_exactly_by_method():
    got = rewards.institution_values(good_inst(), INST, "exact")
    assert got == {"a": Fraction(0.1), "b": Fraction(0.2), "c": Fraction(0.3)}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.assign(value=[math.nan] + list(f["value"][1:])), r"row 2, field 'value' \(a\): value is nan"),
        (lambda f: f.drop(index=1), r"no 'ddval' value for institution\(s\) \['b'\]"),
        (lambda f: f.assign(institution=["z"] + list(f["institution"][1:])), r"row 2: institution 'z' is not one of"),
        (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), r"row 8: institution 'a' appears twice"),
        (lambda f: f.drop(columns=["value"]), r"missing column\(s\) \['value'\]"),
        (lambda f: f.assign(method="or"), r"no rows with method 'ddval'"),
    ],
)
def test_bad_institution_tables_name_file_row_and_field(mutate, message):
    with pytest.raises(rewards.RewardError, match="institution_values.csv: " + message):
        rewards.institution_values(mutate(good_inst()), INST, "ddval")


def points(rows):
    return pd.DataFrame(rows, columns=["institution", "scan_id", "patient_id", "value"])


def test_patient_values_sum_scans_exactly():
    got = rewards.patient_values(
        points([["a", "s1", "p1", 0.1], ["a", "s2", "p1", 0.2], ["b", "s3", "p1", -0.5]]), INST
    )
    assert got == {("a", "p1"): Fraction(0.1) + Fraction(0.2), ("b", "p1"): Fraction(-0.5)}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["a", "s1", "p1", math.nan]], r"row 0, field 'value': value is nan"),
        ([["a", "s1", "p1", math.inf]], r"row 0, field 'value': value is inf"),
        ([["a", "s1", None, 0.1]], r"row 0: field 'patient_id' is missing"),
        ([["a", "s1", "p", 0.1], [None, "s2", "p", 0.1]], r"row 1: field 'institution' is missing"),
        ([["x", "s1", "p1", 0.1]], r"row 0: institution 'x' is not one of"),
    ],
)
def test_bad_point_tables_name_file_row_and_field(rows, message):
    with pytest.raises(rewards.RewardError, match="point_values.parquet: " + message):
        rewards.patient_values(points(rows), INST)


def test_unknown_account_is_an_error_listing_the_recipients():
    alloc = rewards.allocate({"a": F(1)}, {("a", "p1"): F(1), ("a", "p2"): F(1)}, 100)
    with pytest.raises(rewards.RewardError, match=r"no account for recipient\(s\) \['a/p2'\]; nothing was sent"):
        rewards.attach_accounts(alloc, {"a": "0x" + "11" * 20, "a/p1": "0x" + "22" * 20})


def test_account_table_is_validated():
    frame = pd.DataFrame(
        {
            "kind": ["institution", "individual"],
            "recipient_id": ["a", "a/p1"],
            "account": ["0x" + "11" * 20, "not-an-address"],
        }
    )
    with pytest.raises(rewards.RewardError, match=r"accounts.csv: row 3: field 'account' 'not-an-address' of 'a/p1'"):
        rewards.load_accounts(frame)
    frame.loc[1, "account"] = "0x" + "22" * 20
    frame.loc[1, "recipient_id"] = "a"
    with pytest.raises(rewards.RewardError, match="recipient 'a' has two accounts"):
        rewards.load_accounts(frame)


def test_leaves_keep_table_order_one_per_recipient_and_drop_zero_amounts():
    """Claims are keyed by leaf index, so two recipients sharing an account are two leaves."""
    table = pd.DataFrame({"account": ["0x" + "11" * 20, "0x" + "22" * 20, "0x" + "11" * 20], "amount": [5, 0, 7]})
    assert rewards.leaves(table) == [("0x" + "11" * 20, 5), ("0x" + "11" * 20, 7)]
    with pytest.raises(rewards.RewardError, match="negative amount -1"):
        rewards.leaves(table.assign(amount=[5, -1, 7]))


def test_an_institution_owed_nothing_does_not_claim():
    """An institution valued at or below zero gets no leaf, so it must not be sent to claim one (the run used to
    stop with a KeyError: a quality setting's label-noise institution had a negative DDVal value)."""
    from ddval.economy.parties import claimers

    table = pd.DataFrame(
        {
            "kind": ["institution", "institution", "institution", "individual", "individual"],
            "recipient_id": ["clean", "noisy", "ood", "clean/p1", "ood/p2"],
            "amount": ["7", "0", "3", "2", "0"],
        }
    )
    assert claimers(table, ["clean", "noisy", "ood"], 5, 0) == ["clean", "ood", "clean/p1"]
