"""The attester: what an institution checks before it attests, and the separate process's interface."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from econ_operator import published_by
from econ_stage_inputs import write_stage_inputs

from ddval.config import load_config
from ddval.economy import attester, published, steps
from ddval.economy.published import AllocationDocument, DocumentError

SETTING = "noniid"


def config(**economy):
    return load_config("demo", {"economy": {"n_individuals": 2, **economy}, "train": {"patience": 3}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The operator's steps on the embedded chain, up to an honest published allocation."""
    root = tmp_path_factory.mktemp("results")
    cfg = config()
    write_stage_inputs(cfg, 0, SETTING, root, n_rounds=4, patients_per_institution=4)
    s, contracts, honest, cid = published_by(cfg, root, SETTING, lambda doc: doc)
    return cfg, s, contracts, honest, cid


def review(run, cfg=None, cid=None):
    base, s, contracts, _, honest_cid = run
    return attester.run_attester(
        cfg or base,
        0,
        SETTING,
        "nih",
        s.chain,
        s.content,
        contracts.pool.address,
        cid or honest_cid,
        s.parties.institutions["nih"],
    )


def republish(run, **changes):
    _, s, _, honest, _ = run
    return steps.publish_allocation(s, dataclasses.replace(honest, **changes))


def test_the_honest_allocation_is_recomputed_and_matches(run):
    cfg, s, contracts, honest, cid = run
    check = attester.review(cfg, 0, SETTING, s.chain, s.content, contracts.pool.address, cid)
    assert check.leaves_match and check.root == honest.tree().root and check.training.hex() == honest.training[2:]
    assert check.points == 3 * sum(1 + p % 3 for p in range(4))  # every train point of every institution


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"chain_id": 1}, "the document's chain_id is 1, the chain says"),
        ({"pool": "0x" + "12" * 20}, "the document's pool is"),
        ({"training": "0x" + "00" * 32}, "the document's training is"),
        ({"best_round": 3}, "the document's best_round is 3"),
        ({"grand_utility": 0.4}, "utility 0.4 is not an AUROC above chance"),
        ({"grand_utility": 0.9}, "the published leaves differ from the recomputed allocation"),
    ],
)
def test_a_document_that_does_not_fit_the_chain_is_refused(run, changes, reason):
    verdict = review(run, cid=republish(run, **changes))
    assert verdict.decision == "refused" and reason in verdict.reason
    assert not run[2].pool.functions.finalized().call()


def test_a_policy_other_than_the_institutions_own_is_refused(run):
    verdict = review(run, cfg=config(individual_share=0.25))
    assert (
        verdict.decision == "refused"
        and "policy differs from this institution's configuration in ['individual_share']" in verdict.reason
    )
    verdict = review(run, cfg=config(value_method="exact"))
    assert verdict.decision == "refused" and "'value_method'" in verdict.reason


def test_nothing_is_attested_before_the_training_record_is_final(tmp_path):
    cfg = config()
    write_stage_inputs(cfg, 0, SETTING, tmp_path, n_rounds=4, patients_per_institution=2)
    from ddval import layout
    from ddval.economy import inputs, stage

    run = stage.open_run(
        cfg,
        0,
        SETTING,
        inputs.locate_inputs(cfg, 0, SETTING, tmp_path),
        layout.economy_dir(cfg, 0, SETTING, tmp_path),
        None,
        None,
    )
    contracts = steps.deploy(run.session)
    verdict = attester.run_attester(
        cfg,
        0,
        SETTING,
        "nih",
        run.session.chain,
        run.session.content,
        contracts.pool.address,
        "bafkqaaa",
        run.session.parties.institutions["nih"],
    )
    assert verdict.decision == "refused" and verdict.reason == "the training record is not final (TrainingNotStopped)"


def test_documents_are_canonical_and_malformed_ones_name_the_field(run):
    honest = run[3]
    assert AllocationDocument.from_bytes(honest.to_bytes()) == honest
    assert json.loads(honest.to_bytes())["format"] == published.FORMAT
    doc = json.loads(honest.to_bytes())
    for mutate, message in (
        (lambda d: d.update(format="other"), "field 'format'"),
        (lambda d: d.pop("training"), r"missing field\(s\) \['training'\]"),
        (lambda d: d.update(pool="0x12"), "field 'pool' is not an address"),
        (lambda d: d.update(leaves=[]), "'leaves' must be a non-empty list"),
        (lambda d: d.update(leaves=[["0x" + "11" * 20, "-5"]]), "leaf 0"),
        (lambda d: d["policy"].pop("k"), "field 'policy' is invalid"),
    ):
        broken = json.loads(json.dumps(doc))
        mutate(broken)
        with pytest.raises(DocumentError, match=message):
            AllocationDocument.from_bytes(json.dumps(broken).encode())
    with pytest.raises(DocumentError, match="not JSON"):
        AllocationDocument.from_bytes(b"account,amount\n")


def test_the_attester_process_needs_its_own_key_and_says_so_in_one_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "ddval.economy.attester",
        "--config",
        "demo",
        "--seed",
        "0",
        "--setting",
        SETTING,
        "--institution",
        "nih",
        "--pool",
        "0x" + "12" * 20,
        "--allocation-cid",
        "bafkqaaa",
        "--rpc-url",
        "http://127.0.0.1:9/v3/KEY",
    ]
    env = {k: v for k, v in __import__("os").environ.items() if k != attester.KEY_VARIABLE}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr.strip()
        == f"attester nih: ChainError: set {attester.KEY_VARIABLE} to this institution's private key"
    )


def test_the_consortium_configuration_round_trips(tmp_path):
    cfg = config(individual_share=0.25)
    assert load_config(attester.config_file(cfg, tmp_path / "c.yaml")) == cfg
