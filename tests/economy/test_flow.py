"""The whole economy stage on stand-in stage outputs: embedded chain + store, and anvil + IPFS daemon."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from econ_stage_inputs import write_stage_inputs

from ddval import economy, layout, store
from ddval.config import load_config
from ddval.economy import chain as chain_mod
from ddval.economy import inputs, ipfs, merkle, published, rewards
from ddval.economy.contracts import load_artifact

SETTING = "noniid"
#: Four stand-in rounds: one improving round, then a plateau of exactly ``patience`` rounds.
PATIENCE = 3


def config(**economy):
    return load_config("demo", {"economy": {"n_individuals": 4, **economy}, "train": {"patience": PATIENCE}})


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    cfg = config()
    write_stage_inputs(cfg, 0, SETTING, root, n_rounds=4, patients_per_institution=6)
    return cfg, root, economy.run_economy_stage(cfg, 0, SETTING, root=root)


def test_outputs_follow_the_table_contract(embedded_run):
    _, _, res = embedded_run
    assert list(res.table("gas").columns) == ["operation", "actor", "gas_used", "tx_hash"]
    assert {"kind", "recipient_id", "account", "amount"} <= set(res.table("allocation").columns)
    assert list(res.table("balances").columns) == ["kind", "recipient_id", "account", "balance"]
    ops = set(res.table("gas")["operation"])
    assert {"deploy_registry", "deploy_pool", "submit_round", "submit_features", "fund", "attest", "claim_institution", "claim_individual", "sweep"} <= ops


def test_rounds_features_and_allocation_are_pinned_and_verifiable(embedded_run):
    cfg, root, res = embedded_run
    pins = res.table("pins")
    names = [i.name for i in cfg.setting(SETTING).institutions]
    assert (pins["artifact"] == "model").sum() == 4 * len(names)
    assert (pins["artifact"] == "features").sum() == len(names)
    content = ipfs.EmbeddedStore(res.outputs["gas"].parent / "ipfs")
    sdir = layout.setting_dir(cfg, 0, SETTING, root)
    feat = pins[pins["artifact"] == "features"].iloc[0]
    assert content.cat(feat["cid"]) == (sdir / "valuation" / "features" / f"{feat['owner']}.npz").read_bytes()
    d = res.deployment
    assert published.root_from_table(content.cat(d["allocation_cid"])).hex() == d["merkle_root"][2:]
    assert d["rounds_on_chain"] == 4 and set(content.pins()) == set(pins["cid"])


def test_payouts_equal_the_policy_and_are_conserved(embedded_run):
    cfg, root, res = embedded_run
    sdir = layout.setting_dir(cfg, 0, SETTING, root)
    names = tuple(i.name for i in cfg.setting(SETTING).institutions)
    expected = rewards.allocate(
        rewards.institution_values(pd.read_csv(sdir / "valuation" / "institution_values.csv"), names, "ddval"),
        rewards.patient_values(pd.read_parquet(sdir / "valuation" / "point_values.parquet"), names),
        cfg.economy.pool_amount,
        individual_share=cfg.economy.individual_share,
    )
    alloc = res.table("allocation")
    assert dict(zip(alloc["recipient_id"], alloc["amount"].map(int))) == dict(zip(expected.table["recipient_id"], expected.table["amount"]))
    balances = res.table("balances").set_index("recipient_id")["balance"].map(int)
    claimed = alloc[alloc["claimed"]]
    assert len(claimed) == len(names) + 4
    for rid, amount in zip(claimed["recipient_id"], claimed["amount"].map(int)):
        assert balances[rid] == amount
    assert balances["pool"] == 0
    assert balances["treasury"] + claimed["amount"].map(int).sum() == cfg.economy.pool_amount


def test_a_finished_run_is_not_sent_again(embedded_run):
    cfg, root, res = embedded_run
    again = economy.run_economy_stage(cfg, 0, SETTING, root=root)
    assert again.skipped and again.table("gas").equals(res.table("gas"))


def test_gas_table_is_deterministic_on_the_embedded_chain(embedded_run, tmp_path):
    cfg, _, res = embedded_run
    write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=6)
    other = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path)
    assert other.table("gas").equals(res.table("gas"))  # tx hashes included
    assert other.deployment == res.deployment


# ---------------------------------------------------------------------------- real components


@pytest.mark.chain
@pytest.mark.ipfs
def test_whole_flow_on_anvil_and_the_ipfs_daemon(anvil, ipfs_daemon, tmp_path, embedded_run):
    cfg = config()
    write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=6)
    res = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=anvil, ipfs_api=ipfs_daemon)
    d = res.deployment
    # the same inputs cost the same gas, transaction by transaction, as on the embedded chain
    embedded = embedded_run[2].table("gas")
    assert res.table("gas")[["operation", "actor", "gas_used"]].equals(embedded[["operation", "actor", "gas_used"]])
    assert d["merkle_root"] == embedded_run[2].deployment["merkle_root"]
    assert d["allocation_cid"] == embedded_run[2].deployment["allocation_cid"]  # daemon CID == embedded CID
    assert d["chain"] == "rpc" and d["chain_id"] == 31337 and d["ipfs"] == "daemon"
    c = chain_mod.connect(anvil)
    registry = c.at(load_artifact("SwarmRegistry"), d["registry"])
    pool = c.at(load_artifact("RewardPool"), d["pool"])
    assert registry.functions.stopped().call() and registry.functions.roundsClosed().call() == 4
    assert registry.functions.featuresSubmitted().call() == 3
    assert pool.functions.finalized().call() and pool.functions.merkleRoot().call().hex() == d["merkle_root"][2:]
    assert ipfs.CID.parse(pool.functions.allocationCid().call()) == ipfs.CID.parse(d["allocation_cid"])
    # every pinned artifact is readable back from the daemon, and the on-chain model CIDs match the pins
    daemon = ipfs.KuboClient(ipfs_daemon)
    assert published.root_from_table(daemon.cat(d["allocation_cid"])).hex() == d["merkle_root"][2:]
    pins = res.table("pins")
    first = pins[pins["artifact"] == "model"].iloc[0]
    on_chain = registry.functions.modelCid(0, c.accounts[1].address).call()
    assert str(ipfs.CID.parse(on_chain)) == first["cid"]
    model = layout.setting_dir(cfg, 0, SETTING, tmp_path) / "train" / "nih+chexpert+mimic" / "rounds" / "001" / "nih.pt"
    assert first["owner"] == "nih" and daemon.cat(first["cid"]) == model.read_bytes()
    claimed = pool.functions.claimedTotal().call()
    assert claimed + int(res.table("balances").set_index("recipient_id").loc["treasury", "balance"]) == cfg.economy.pool_amount


# ---------------------------------------------------------------------------- bad input: nothing sent


def corrupt_values(sdir, value):
    path = sdir / "valuation" / "institution_values.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "value"] = value
    store.write_table(path, frame)


@pytest.mark.chain
@pytest.mark.parametrize(
    "break_inputs, error, message",
    [
        (lambda s: corrupt_values(s, math.nan), rewards.RewardError, r"institution_values.csv: row 2, field 'value' \(nih\): value is nan"),
        (lambda s: (s / "valuation" / "point_values.parquet").unlink(), inputs.EconomyInputError, r"point_values.parquet: not found; run notebook 04_valuation"),
        (lambda s: (s / "train" / "nih+chexpert+mimic" / "rounds" / "002" / "mimic.pt").unlink(), inputs.EconomyInputError, r"002/mimic.pt: local model of 'mimic' in round 2 not found"),
        (lambda s: (s / "valuation" / "features" / "nih.npz").unlink(), inputs.EconomyInputError, r"nih.npz: deep features of 'nih' not found"),
    ],
)
def test_bad_inputs_fail_before_anything_is_sent(anvil, tmp_path, break_inputs, error, message):
    cfg = config()
    sdir = write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=6)
    break_inputs(sdir)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(error, match=message):
        economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=anvil)
    assert probe.w3.eth.block_number == block
    assert not (sdir / "economy" / "gas.csv").exists()


@pytest.mark.chain
def test_negative_values_policy_error_and_unknown_accounts_send_nothing(anvil, tmp_path):
    sdir = write_stage_inputs(config(), 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=6)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    corrupt_values(sdir, -0.01)
    with pytest.raises(rewards.RewardError, match="institution 'nih'.*negative"):
        economy.run_economy_stage(config(negative_values="error"), 0, SETTING, root=tmp_path, rpc_url=anvil)
    corrupt_values(sdir, 0.05)
    accounts = tmp_path / "accounts.csv"
    pd.DataFrame({"kind": ["individual"], "recipient_id": ["nih/p0000"], "account": ["0x" + "12" * 20]}).to_csv(accounts, index=False)
    with pytest.raises(rewards.RewardError, match=r"no account for recipient\(s\) \['nih/p0001'"):
        economy.run_economy_stage(config(accounts_csv=str(accounts)), 0, SETTING, root=tmp_path, rpc_url=anvil)
    assert probe.w3.eth.block_number == block


@pytest.mark.chain
def test_wrong_chain_or_unreachable_endpoints_send_nothing(anvil, tmp_path):
    from econ_helpers import free_port

    write_stage_inputs(config(), 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=6)
    probe = chain_mod.connect(anvil)
    block = probe.w3.eth.block_number
    with pytest.raises(chain_mod.ChainError, match="serves chain id 31337, expected 1;"):
        economy.run_economy_stage(config(chain_id=1), 0, SETTING, root=tmp_path, rpc_url=anvil)
    with pytest.raises(chain_mod.ChainError, match="cannot reach the RPC endpoint"):
        economy.run_economy_stage(config(), 0, SETTING, root=tmp_path, rpc_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ipfs.IPFSError, match="cannot reach the IPFS RPC API"):
        economy.run_economy_stage(config(), 0, SETTING, root=tmp_path, rpc_url=anvil, ipfs_api=f"http://127.0.0.1:{free_port()}")
    assert probe.w3.eth.block_number == block


def test_rounds_beyond_the_stopping_rule_are_rejected(tmp_path):
    cfg = config()
    sdir = write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=2)
    path = sdir / "train" / "nih+chexpert+mimic" / "rounds.csv"
    frame = pd.read_csv(path)
    frame["val_loss"] = 0.5  # flat: the first round stays the best one
    store.write_table(path, frame)
    located = inputs.locate_inputs(cfg, 0, SETTING, tmp_path)
    assert inputs.plan_rounds(located, patience=3, max_rounds=12).stop_index == 3  # exactly where the table ends
    with pytest.raises(inputs.EconomyInputError, match=r"rounds.csv: 4 rounds, but the stopping rule \(patience 5, max 12 rounds\) does not fire"):
        inputs.plan_rounds(located, patience=5, max_rounds=12)
    with pytest.raises(inputs.EconomyInputError, match="fires after round 2, but the table goes on to round 4"):
        inputs.plan_rounds(located, patience=1, max_rounds=12)


def test_merkle_values_of_the_pinned_table_are_the_leaves(embedded_run):
    _, _, res = embedded_run
    alloc = res.table("allocation")
    leaves = rewards.leaves(alloc.assign(amount=alloc["amount"].map(int)))
    assert "0x" + merkle.build_tree(leaves).root.hex() == res.deployment["merkle_root"]
