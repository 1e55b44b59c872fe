"""What notebook 05 displays: the stage's outputs as small tables in whole tokens and kilogas."""

from __future__ import annotations

import pandas as pd

from ddval import figures, plots_economy
from ddval.economy.stage import EconomyResult


def run_overview(result: EconomyResult) -> pd.DataFrame:
    """One-row-per-quantity overview in whole tokens (18 decimals), for the notebook."""
    d = result.deployment
    alloc = result.table("allocation")
    amounts = alloc["amount"].map(int)
    rows = [
        ("pool", int(d["pool_amount"])),
        ("allocated to institutions", int(amounts[alloc["kind"] == "institution"].sum())),
        ("allocated to individuals", int(amounts[alloc["kind"] == "individual"].sum())),
        ("not allocated (rounding, clipped values)", int(d["remainder"])),
        ("claimed in this run", int(d["claimed"])),
        ("returned to the treasury after the deadline", int(d["returned_to_treasury"])),
        ("sent to the pool outside fund() (donations)", int(d["donations"])),
    ]
    frame = pd.DataFrame([(k, v / 10**18, v) for k, v in rows], columns=["quantity", "tokens", "base_units"])
    return frame.astype({"base_units": str})


def balances_view(result: EconomyResult) -> pd.DataFrame:
    """Balances in whole tokens (18 decimals) by kind and recipient, for the notebook."""
    b = result.table("balances")
    tokens = [int(x) / 10**18 for x in b["balance"]]
    return pd.DataFrame({"kind": b["kind"], "recipient_id": b["recipient_id"], "tokens": tokens})


def gas_by_operation(gas: pd.DataFrame) -> pd.DataFrame:
    """Gas per operation: count, min, mean, max (the table of notebook 05)."""
    order = list(dict.fromkeys(gas["operation"]))
    g = gas.groupby("operation", sort=False)["gas_used"].agg(["count", "min", "mean", "max"]).reindex(order)
    g["mean"] = g["mean"].round().astype(int)
    return g.reset_index()


def attestations_view(result: EconomyResult) -> pd.DataFrame:
    """What each institution did with the published allocation: how many data points it valued again
    from the pinned feature files, whether its leaves equal the published ones, and its decision."""
    a = result.table("attestations")
    return pd.DataFrame(
        {
            "institution": a["institution"],
            "points recomputed": a["points_recomputed"],
            "leaves match": a["leaves_match"],
            "root": [r[:10] + "…" if isinstance(r, str) and r else "" for r in a["root"]],
            "decision": a["decision"],
            "gas": a["gas_used"].astype("Int64"),
        }
    )


def scaling_view(table: pd.DataFrame) -> pd.DataFrame:
    """The scaling table as shown in notebook 05: gas in thousands, sampled rows marked."""
    columns = ["method", "n_recipients", "n_transactions", "n_measured", "payer_gas", "total_gas", "gas_per_recipient"]
    view = table[columns].copy()
    for col in ("payer_gas", "total_gas"):
        view[col] = (view[col] / 1e3).round(1)
    view["gas_per_recipient"] = view["gas_per_recipient"].round(0)
    view = view.rename(columns={"payer_gas": "payer_kgas", "total_gas": "total_kgas"})
    measured = zip(table["n_measured"], table["n_recipients"])
    view["measured"] = ["all" if m == n else f"sample of {m}" for m, n in measured]
    return view.drop(columns="n_measured")


def scaling_figure(table: pd.DataFrame) -> figures.Rendered:
    """The payout-cost figure (:func:`ddval.plots_economy.payout_scaling`) above :func:`scaling_view`'s table;
    nothing is written to disk (notebook 06 saves the figure over all seeds)."""
    return figures.Rendered("payout_scaling", plots_economy.payout_scaling(table), scaling_view(table), files=())
