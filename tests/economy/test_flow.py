"""The whole economy stage on stand-in stage outputs: embedded chain + store, and anvil + IPFS daemon."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from econ_helpers import free_port
from econ_operator import published_by, shifted
from econ_stage_inputs import SETTING, flow_config, flow_stand_ins

from ddval import economy, layout, store
from ddval.economy import chain as chain_mod
from ddval.economy import inputs, ipfs, rewards, steps
from ddval.economy.contracts import load_artifact
from ddval.economy.published import AllocationDocument


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    cfg = flow_config()
    flow_stand_ins(cfg, root)
    return cfg, root, economy.run_economy_stage(cfg, 0, SETTING, root=root)


def document(res, content=None) -> AllocationDocument:
    content = content or ipfs.EmbeddedStore(res.outputs["gas"].parent / "ipfs")
    return AllocationDocument.from_bytes(content.cat(res.deployment["allocation_cid"]))


def test_outputs_follow_the_table_contract(embedded_run):
    _, _, res = embedded_run
    assert list(res.table("gas").columns) == ["operation", "actor", "gas_used", "tx_hash"]
    assert {"kind", "recipient_id", "account", "amount", "leaf", "claimed"} <= set(res.table("allocation").columns)
    assert list(res.table("balances").columns) == ["kind", "recipient_id", "account", "balance"]
    assert {"institution", "decision", "reason", "points_recomputed", "leaves_match", "root"} <= set(
        res.table("attestations").columns
    )
    ops = list(dict.fromkeys(res.table("gas")["operation"]))
    assert ops == [
        "deploy_token",
        "deploy_registry",
        "register_institution",
        "close_registration",
        "deploy_pool",
        "approve",
        "fund",
        "submit_round",
        "submit_features",
        "attest",
        "claim_institution",
        "eth_for_gas",
        "claim_individual",
        "sweep",
    ]


def test_every_institution_recomputed_the_allocation_and_a_majority_attested(embedded_run):
    cfg, root, res = embedded_run
    att = res.table("attestations")
    points = len(pd.read_parquet(layout.valuation_dir(cfg, 0, SETTING, root) / "point_values.parquet"))
    assert list(att["institution"]) == ["nih", "chexpert", "mimic"]
    assert list(att["decision"]) == ["attested", "attested", "already final"]
    assert att["leaves_match"].all() and (att["points_recomputed"] == points).all()
    assert set(att["root"]) == {res.deployment["merkle_root"]}
    gas = res.table("gas")
    assert list(gas.loc[gas["operation"] == "attest", "tx_hash"]) == list(att["tx_hash"].dropna())


def test_rounds_features_and_allocation_are_pinned_and_verifiable(embedded_run):
    cfg, root, res = embedded_run
    pins = res.table("pins")
    names = [i.name for i in cfg.setting(SETTING).institutions]
    assert (pins["artifact"] == "model").sum() == 4 * len(names)
    assert (pins["artifact"] == "features").sum() == len(names)
    content = ipfs.EmbeddedStore(res.outputs["gas"].parent / "ipfs")
    feat = pins[pins["artifact"] == "features"].iloc[0]
    assert (
        content.cat(feat["cid"]) == (layout.features_dir(cfg, 0, SETTING, root) / f"{feat['owner']}.npz").read_bytes()
    )
    d, doc = res.deployment, document(res)
    assert "0x" + doc.tree().root.hex() == d["merkle_root"] and doc.training == d["training_digest"]
    assert (doc.pool, doc.registry, doc.chain_id, doc.best_round) == (
        d["pool"],
        d["registry"],
        d["chain_id"],
        d["best_round"],
    )
    assert (
        doc.total == int(d["allocation_total"])
        and d["rounds_on_chain"] == 4
        and set(content.pins()) == set(pins["cid"])
    )
    assert b"p0000" not in content.cat(d["allocation_cid"])  # no patient id is published


def test_payouts_equal_the_policy_and_are_conserved(embedded_run):
    cfg, root, res = embedded_run
    vdir = layout.valuation_dir(cfg, 0, SETTING, root)
    names = tuple(i.name for i in cfg.setting(SETTING).institutions)
    expected = rewards.allocate(
        rewards.institution_values(pd.read_csv(vdir / "institution_values.csv"), names, "ddval"),
        rewards.patient_values(pd.read_parquet(vdir / "point_values.parquet"), names),
        cfg.economy.pool_amount,
        individual_share=cfg.economy.individual_share,
    )
    alloc = res.table("allocation")
    assert dict(zip(alloc["recipient_id"], alloc["amount"].map(int))) == dict(
        zip(expected.table["recipient_id"], expected.table["amount"])
    )
    leaves = alloc[alloc["leaf"] >= 0].sort_values("leaf")
    assert list(leaves["leaf"]) == list(range(len(leaves))) and list(
        zip(leaves["account"], leaves["amount"].map(int))
    ) == list(document(res).leaves)
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


def test_the_input_digest_covers_only_the_consumed_columns(embedded_run):
    """Issue 17 item 9: ``wall_time_s`` changed the economy's input hash, so any recompute redeployed."""
    cfg, root, _ = embedded_run
    path = layout.valuation_dir(cfg, 0, SETTING, root) / "institution_values.csv"
    original = path.read_bytes()
    try:
        frame = pd.read_csv(path)
        store.write_table(path, frame.assign(wall_time_s=frame["wall_time_s"] * 7 + 1))
        assert economy.run_economy_stage(cfg, 0, SETTING, root=root).skipped
        located = inputs.locate_inputs(cfg, 0, SETTING, root)
        before = located.digests()
        store.write_table(path, frame.assign(value=frame["value"] * 2))
        assert located.digests()["institution_values.csv"] != before["institution_values.csv"]
    finally:
        path.write_bytes(original)


def test_gas_table_is_deterministic_on_the_embedded_chain(embedded_run, tmp_path):
    cfg, _, res = embedded_run
    flow_stand_ins(cfg, tmp_path)
    other = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path)
    assert other.table("gas").equals(res.table("gas"))  # tx hashes included
    assert {k: v for k, v in other.deployment.items() if k != "genesis_hash"} == {
        k: v for k, v in res.deployment.items() if k != "genesis_hash"
    }


# ---------------------------------------------------------------------------- a dishonest operator


def test_honest_institutions_refuse_a_tampered_allocation(tmp_path):
    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    s, contracts, _, cid = published_by(cfg, tmp_path, SETTING, shifted)
    verdicts = steps.run_attesters(s, contracts.pool, cid)
    assert [v.decision for v in verdicts] == ["refused"] * 3
    assert all(v.points_recomputed > 0 and not v.leaves_match for v in verdicts)
    assert not contracts.pool.functions.finalized().call()


def test_a_refused_allocation_fails_the_stage_and_leaves_no_outputs(tmp_path, monkeypatch):
    """Issue 17 item 9: a failed run left the previous run's ``deployment.json`` / ``balances.csv``."""
    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    first = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path)
    assert first.outputs["deployment"].exists()
    honest_publish = steps.publish_allocation
    monkeypatch.setattr(steps, "publish_allocation", lambda s, doc: honest_publish(s, shifted(doc)))
    with pytest.raises(RuntimeError, match="did not finalize: no strict majority.*nih: refused"):
        economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, force=True)
    assert not any(p.exists() for p in first.outputs.values())
    assert not store.record_path(first.outputs["gas"].parent, "economy").exists()


def test_a_donation_to_the_pool_is_swept_and_accounted_for(tmp_path, monkeypatch):
    """Issue 12 (low): a 1-wei donation to the pool (outside ``fund``) made the flow's conservation check raise."""
    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    honest_check = steps.sweep_and_check

    def donate_then_check(s, token, pool):
        s.chain.send(token.functions.transfer(pool.address, 1), s.parties.institutions["nih"])  # it has claimed
        return honest_check(s, token, pool)

    monkeypatch.setattr(steps, "sweep_and_check", donate_then_check)
    res = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path)
    d = res.deployment
    assert d["donations"] == "1"
    assert int(d["claimed"]) + int(d["returned_to_treasury"]) == int(d["funded"]) + 1
    assert res.table("balances").set_index("recipient_id").loc["pool", "balance"] == 0


def _flip_last_byte(path):
    """Corrupt ``path`` in place, size unchanged (what a size check alone would miss)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_file_changed_after_its_record_is_not_published(tmp_path):
    """Issue 17 item 6: a truncated model and feature file were pinned and their CIDs recorded on chain."""
    sdir = flow_stand_ins(flow_config(), tmp_path)
    features = sdir / "valuation" / "features" / "chexpert.npz"
    _flip_last_byte(features)
    with pytest.raises(store.StaleOutputError, match=r"chexpert.npz"):
        economy.run_economy_stage(flow_config(), 0, SETTING, root=tmp_path)
    assert not (sdir / "economy" / "gas.csv").exists() and not (sdir / "economy" / "ipfs").exists()
    stray = sdir / "valuation" / "features" / "stray.npz"
    stray.write_bytes(b"no record vouches for me")
    with pytest.raises(store.StaleOutputError, match=r"stray.npz: no completion record vouches for it"):
        steps.vouched_bytes(stray)


def test_a_model_corrupted_after_the_checks_is_still_not_pinned(tmp_path, monkeypatch):
    """The check runs again when a file is pinned, not only before anything is sent."""
    cfg = flow_config()
    sdir = flow_stand_ins(cfg, tmp_path)
    model = sdir / "train" / "nih+chexpert+mimic" / "rounds" / "002" / "mimic.pt"
    honest_deploy = steps.deploy

    def deploy_then_corrupt(s):
        deployed = honest_deploy(s)
        _flip_last_byte(model)
        return deployed

    monkeypatch.setattr(steps, "deploy", deploy_then_corrupt)
    with pytest.raises(store.StaleOutputError, match=r"002/mimic.pt"):
        economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path)
    assert not (sdir / "economy" / "pins.csv").exists()


# ---------------------------------------------------------------------------- real components


@pytest.mark.chain
@pytest.mark.ipfs
def test_whole_flow_on_anvil_and_the_ipfs_daemon_with_attester_processes(anvil, ipfs_daemon, tmp_path, embedded_run):
    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    res = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=anvil, ipfs_api=ipfs_daemon)
    d = res.deployment
    # the same inputs cost the same gas, transaction by transaction, as on the embedded chain, but for
    # the attestations (the allocation document, hence its CID in the calldata, names the chain) and
    # the submissions that close a round (anvil mines blocks within one second: rewriting an
    # unchanged ``roundOpenedAt`` costs 2,800 gas less)
    embedded, rpc = embedded_run[2].table("gas"), res.table("gas")
    assert rpc[["operation", "actor"]].equals(embedded[["operation", "actor"]])
    slack = rpc["operation"].map({"attest": 16 * 36, "submit_round": 2800}).fillna(0)
    assert ((rpc["gas_used"] - embedded["gas_used"]).abs() <= slack).all()
    assert d["merkle_root"] == embedded_run[2].deployment["merkle_root"]
    assert d["chain"] == "rpc" and d["chain_id"] == 31337 and d["ipfs"] == "daemon" and d["endpoint"] == anvil
    att = res.table("attestations")  # written by three separate attester processes
    assert list(att["decision"]) == ["attested", "attested", "already final"] and att["leaves_match"].all()
    c = chain_mod.connect(anvil)
    registry = c.at(load_artifact("SwarmRegistry"), d["registry"])
    pool = c.at(load_artifact("RewardPool"), d["pool"])
    assert registry.functions.stopped().call() and registry.functions.roundsClosed().call() == 4
    assert registry.functions.featuresSubmitted().call() == 3
    assert pool.functions.finalized().call() and pool.functions.merkleRoot().call().hex() == d["merkle_root"][2:]
    assert "0x" + pool.functions.attestedTraining().call().hex() == d["training_digest"]
    for i, who in enumerate(att["account"][:2]):
        assert pool.functions.attestationOf(who).call() != bytes(32), f"attester {i} did not sign itself"
    daemon = ipfs.KuboClient(ipfs_daemon)
    assert document(res, daemon).tree().root.hex() == d["merkle_root"][2:]
    pins = res.table("pins")
    first = pins[pins["artifact"] == "model"].iloc[0]
    assert str(ipfs.CID.parse(registry.functions.modelCid(0, c.accounts[1].address).call())) == first["cid"]
    model = layout.train_dir(cfg, 0, SETTING, tmp_path) / "nih+chexpert+mimic" / "rounds" / "001" / "nih.pt"
    assert first["owner"] == "nih" and daemon.cat(first["cid"]) == model.read_bytes()
    claimed = pool.functions.claimedTotal().call()
    assert (
        claimed + int(res.table("balances").set_index("recipient_id").loc["treasury", "balance"])
        == cfg.economy.pool_amount
    )


@pytest.mark.chain
def test_attester_processes_refuse_a_tampered_allocation_and_one_key_cannot_finalize(anvil, tmp_path):
    """Issue 12: with every key in one process the quorum was the operator's decision. Each attester
    here is a separate OS process holding only its own key."""
    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    s, contracts, honest, cid = published_by(cfg, tmp_path, SETTING, shifted, rpc_url=anvil)
    pool = contracts.pool
    verdicts = steps.run_attesters(s, pool, cid)
    assert [v.decision for v in verdicts] == ["refused"] * 3 and not any(v.leaves_match for v in verdicts)
    assert not pool.functions.finalized().call()
    # a compromised key attests the tampered allocation directly: one vote of three
    tampered = shifted(honest)
    s.chain.send(
        pool.functions.attest(
            tampered.tree().root, tampered.total, ipfs.CID.parse(cid).to_bytes(), bytes.fromhex(honest.training[2:])
        ),
        s.parties.institutions["nih"],
    )
    assert not pool.functions.finalized().call()
    # the two honest institutions attest the honest allocation and finalize it; the compromised one is refused again
    verdicts = steps.run_attesters(s, pool, steps.publish_allocation(s, honest))
    assert [v.decision for v in verdicts] == ["refused", "attested", "attested"]
    assert verdicts[0].leaves_match and "already attested another allocation" in verdicts[0].reason
    assert pool.functions.finalized().call() and pool.functions.merkleRoot().call() == honest.tree().root


@pytest.mark.chain
def test_a_skipped_run_is_checked_against_the_chain_it_points_at(tmp_path):
    """Issue 17 item 7: after anvil restarted, the step was skipped and ``deployment.json`` pointed at
    addresses without code."""
    from econ_helpers import _stop, start_anvil

    cfg = flow_config()
    flow_stand_ins(cfg, tmp_path)
    port = free_port()
    url, proc = start_anvil(tmp_path, port=port)
    try:
        first = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=url)
        assert economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=url).skipped  # same chain: skipped
    finally:
        _stop(proc)
    url, proc = start_anvil(tmp_path, port=port)  # a fresh chain on the same endpoint
    try:
        probe = chain_mod.connect(url)
        assert not probe.has_code(first.deployment["pool"])
        again = economy.run_economy_stage(cfg, 0, SETTING, root=tmp_path, rpc_url=url)
        assert not again.skipped
        assert all(probe.has_code(again.deployment[k]) for k in ("token", "registry", "pool"))
        assert again.deployment["genesis_hash"] == probe.genesis_hash()
    finally:
        _stop(proc)


@pytest.mark.chain
def test_a_recorded_deployment_is_stale_on_another_chain_or_genesis_or_without_code(anvil):
    """Issue 17 item 7: each way a recorded deployment can stop matching the endpoint has its own reason."""
    from econ_helpers import deploy

    from ddval.economy.stage import recorded_deployment_is_gone

    probe = chain_mod.connect(anvil)
    token = deploy(probe, "DDValToken", probe.accounts[0].address, 10)
    recorded = {"chain_id": 31337, "genesis_hash": probe.genesis_hash()}
    recorded |= {"token": token.address, "registry": token.address, "pool": token.address}
    assert recorded_deployment_is_gone(recorded, anvil, None) is None
    assert recorded_deployment_is_gone(recorded, anvil, 31337) is None
    cases = [
        ({"chain_id": 1}, "the endpoint serves chain 31337, the run was recorded on chain 1"),
        ({"genesis_hash": "0x" + "00" * 32}, r"chain 31337 at http://127.0.0.1:\d+ has another genesis block"),
        ({"pool": "0x" + "12" * 20}, r"^no contract code at the recorded pool address\(es\) on http://127.0.0.1:\d+$"),
    ]
    for change, reason in cases:
        assert re.search(reason, recorded_deployment_is_gone(recorded | change, anvil, None))
    with pytest.raises(chain_mod.ChainError, match=r"serves chain id 31337, expected 5;"):
        recorded_deployment_is_gone(recorded, anvil, 5)  # a configured chain id is never overridden
