"""The economy stage refuses bad inputs, policies, chains and endpoints before anything is sent."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from econ_helpers import free_port
from econ_stage_inputs import SETTING, flow_config, flow_stand_ins, write_stage_inputs

from ddval import economy, store
from ddval.economy import chain as chain_mod
from ddval.economy import inputs, ipfs, rewards


def corrupt_values(sdir, value):
    path = sdir / "valuation" / "institution_values.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "value"] = value
    store.write_table(path, frame)


@pytest.mark.chain
@pytest.mark.parametrize(
    "break_inputs, error, message",
    [
        (
            lambda s: corrupt_values(s, math.nan),
            rewards.RewardError,
            r"institution_values.csv: row 2, field 'value' \(nih\): value is nan",
        ),
        (
            lambda s: corrupt_values(s, 0.5),
            inputs.EconomyInputError,
            r"institution_values.csv: the 'ddval' values of \['nih'\] are not the sums",
        ),
        (
            lambda s: (s / "valuation" / "point_values.parquet").unlink(),
            inputs.EconomyInputError,
            r"point_values.parquet: not found; run notebook 04_valuation",
        ),
        (
            lambda s: (s / "train" / "nih+chexpert+mimic" / "rounds" / "002" / "mimic.pt").unlink(),
            inputs.EconomyInputError,
            r"002/mimic.pt: local model of 'mimic' in round 2 not found",
        ),
        (
            lambda s: (s / "valuation" / "features" / "nih.npz").unlink(),
            inputs.EconomyInputError,
            r"nih.npz: not found; run notebook 04_valuation",
        ),
        (
            lambda s: (s / "train" / "utilities.csv").unlink(),
            inputs.EconomyInputError,
            r"utilities.csv: not found; run notebook 03_train",
        ),
    ],
)
def test_bad_inputs_fail_before_anything_is_sent(anvil, tmp_path, break_inputs, error, message):
    sdir = flow_stand_ins(flow_config(), tmp_path)
    break_inputs(sdir)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(error, match=message):
        economy.run_economy_stage(flow_config(), 0, SETTING, root=tmp_path, rpc_url=anvil)
    assert probe.w3.eth.block_number == block
    assert not (sdir / "economy" / "gas.csv").exists()


@pytest.mark.chain
def test_bad_policies_and_unknown_accounts_send_nothing(anvil, tmp_path):
    sdir = flow_stand_ins(flow_config(), tmp_path)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(
        inputs.EconomyInputError, match=r"economy.quorum is 1; the pool needs a strict majority of the 3"
    ):
        economy.run_economy_stage(flow_config(quorum=1), 0, SETTING, root=tmp_path, rpc_url=anvil)
    with pytest.raises(
        inputs.EconomyInputError, match=r"rounds.csv: row 2: field 'val_loss' is .*, above economy.max_val_loss \(0.1\)"
    ):
        economy.run_economy_stage(flow_config(max_val_loss=0.1), 0, SETTING, root=tmp_path, rpc_url=anvil)
    frame = pd.read_csv(sdir / "valuation" / "institution_values.csv")
    store.write_table(
        sdir / "valuation" / "institution_values.csv",
        frame.assign(value=frame["value"].where(frame["method"] != "exact", -0.01)),
    )
    with pytest.raises(rewards.RewardError, match="institution 'nih'.*negative"):
        economy.run_economy_stage(
            flow_config(negative_values="error", value_method="exact"), 0, SETTING, root=tmp_path, rpc_url=anvil
        )
    accounts = tmp_path / "accounts.csv"
    pd.DataFrame({"kind": ["individual"], "recipient_id": ["nih/p0000"], "account": ["0x" + "12" * 20]}).to_csv(
        accounts, index=False
    )
    with pytest.raises(rewards.RewardError, match=r"no account for recipient\(s\) \['nih/p0001'"):
        economy.run_economy_stage(flow_config(accounts_csv=str(accounts)), 0, SETTING, root=tmp_path, rpc_url=anvil)
    assert probe.w3.eth.block_number == block


@pytest.mark.chain
def test_wrong_chain_or_unreachable_endpoints_send_nothing(anvil, tmp_path):
    flow_stand_ins(flow_config(), tmp_path)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(chain_mod.ChainError, match="serves chain id 31337, expected 1;"):
        economy.run_economy_stage(flow_config(chain_id=1), 0, SETTING, root=tmp_path, rpc_url=anvil)
    secret = f"http://127.0.0.1:{free_port()}/v3/SECRET-API-KEY?key=ALSO-SECRET"
    with pytest.raises(
        chain_mod.ChainError, match=r"^cannot reach the RPC endpoint http://127.0.0.1:\d+/<redacted>: ConnectionError"
    ) as info:
        economy.run_economy_stage(flow_config(), 0, SETTING, root=tmp_path, rpc_url=secret)
    assert "SECRET" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ipfs.IPFSError, match="cannot reach the IPFS RPC API"):
        economy.run_economy_stage(
            flow_config(), 0, SETTING, root=tmp_path, rpc_url=anvil, ipfs_api=f"http://127.0.0.1:{free_port()}"
        )
    assert probe.w3.eth.block_number == block


def test_rounds_beyond_the_stopping_rule_are_rejected(tmp_path):
    cfg = flow_config()
    sdir = write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=2)
    path = sdir / "train" / "nih+chexpert+mimic" / "rounds.csv"
    frame = pd.read_csv(path)
    frame["val_loss"] = 0.5  # flat: the first round stays the best one
    store.write_table(path, frame)
    located = inputs.locate_inputs(cfg, 0, SETTING, tmp_path)
    assert inputs.plan_rounds(located, patience=3, max_rounds=12).stop_index == 3  # exactly where the table ends
    with pytest.raises(
        inputs.EconomyInputError,
        match=r"rounds.csv: 4 rounds, but the stopping rule \(patience 5, max 12 rounds\) does not fire",
    ):
        inputs.plan_rounds(located, patience=5, max_rounds=12)
    with pytest.raises(inputs.EconomyInputError, match="fires after round 2, but the table goes on to round 4"):
        inputs.plan_rounds(located, patience=1, max_rounds=12)
