"""A real federation on 127.0.0.1: a SuperLink and three SuperNodes as separate processes, each
SuperNode with a data root holding only its institution's scans, the ddval app started by ``flwr run``.

Checked against the in-process pipeline on the same partition and seed: every recorded model state
bit-identical, the same tables, the same feature files and the same DDVal values. Then a SuperNode is
killed mid-round: the run fails naming the site, nothing is recorded as complete, and the same run
started again with the site back resumes and ends with the same model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ddval import store
from ddval.config import load_config
from ddval.layout import coalition_dir, features_dir, valuation_dir

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
PRESET = str(HERE / "tiny.yaml")
SETTING = "trio"
GRAND = ("nih", "chexpert", "mimic")


def run_config(results: Path, **extra) -> dict:
    return {
        "preset": PRESET,
        "seed": 0,
        "setting": SETTING,
        "results-root": str(results),
        "round-timeout": 120.0,
        "wait-for-sites": 120.0,
        **extra,
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The in-process run (data stages, grand coalition, DDVal) and the sites carved from it."""
    from ddval.data import run_index_stage, run_resize_stage
    from ddval.federation.sites import export_sites
    from ddval.train import run_training_stage
    from ddval.valuation import run_valuation_stage

    base = tmp_path_factory.mktemp("federation")
    cfg = load_config(PRESET)
    inproc = base / "in-process"
    run_index_stage(cfg, inproc)
    run_resize_stage(cfg, inproc)
    run_training_stage(cfg, 0, SETTING, root=inproc)
    run_valuation_stage(cfg, 0, SETTING, methods=["ddval"], root=inproc)
    sites = export_sites(cfg, 0, SETTING, base / "sites", root=inproc)
    return cfg, base, inproc, sites


@pytest.fixture(scope="module")
def federated(study):
    """The same study as a TLS federation with SuperNode authentication; returns the server's root."""
    from ddval.federation.launch import LocalFederation

    cfg, base, _, sites = study
    server = base / "server-tls"
    with LocalFederation(base / "tls", sites, tls=True) as fed:
        started = time.perf_counter()
        done = fed.run(run_config(server), timeout=1500)
        print(f"federated run (TLS): {time.perf_counter() - started:.1f} s")
    assert (coalition_dir(cfg, 0, SETTING, GRAND, server) / ".train.done.json").exists(), done.stdout[-4000:]
    return server


def test_each_site_holds_only_its_own_data(study):
    from ddval.federation.sites import load_site

    _, _, _, sites = study
    for name, root in sites.items():
        site = load_site(root)
        assert set(site.rows["institution"]) == {name}
        assert not any(root.rglob("index*.parquet"))  # no index of the cohort, nobody else's rows
        assert all(Path(p).is_relative_to(root) for p in site.rows["path"])


def test_federated_models_are_bit_identical_to_in_process(study, federated):
    from ddval.train import state_sha256
    from ddval.train.checkpoints import load_checkpoint

    cfg, _, inproc, _ = study
    here, there = (coalition_dir(cfg, 0, SETTING, GRAND, r) for r in (inproc, federated))
    states = sorted(p.relative_to(here) for p in here.rglob("*.pt"))
    assert states == sorted(p.relative_to(there) for p in there.rglob("*.pt"))
    assert len(states) == 1 + 1 + 4 * cfg.train.max_rounds  # best, initial, (global + 3 sites) per round
    for rel in states:
        a, b = load_checkpoint(here / rel, None)["state"], load_checkpoint(there / rel, None)["state"]
        assert state_sha256(a) == state_sha256(b), rel
    for table in ("rounds.csv", "curve.csv", "auroc.csv", "auroc_per_test_set.csv"):
        assert store.read_table(here / table).equals(store.read_table(there / table)), table


def test_ddval_values_equal_in_process(study, federated):
    cfg, _, inproc, _ = study
    for name in GRAND:
        with (
            np.load(features_dir(cfg, 0, SETTING, inproc) / f"{name}.npz") as a,
            np.load(features_dir(cfg, 0, SETTING, federated) / f"{name}.npz") as b,
        ):
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (name, key)
    here, there = (valuation_dir(cfg, 0, SETTING, r) for r in (inproc, federated))
    points = [store.read_table(d / "point_values.parquet").drop(columns="n_flipped") for d in (here, there)]
    assert points[0].equals(points[1])
    values = [store.read_table(d / "institution_values.csv")[["institution", "value"]] for d in (here, there)]
    assert values[0].equals(values[1])


def test_a_killed_site_fails_the_run_and_a_restart_resumes(study, federated):
    """Insecure loopback mode; the policy of ``ddval.federation.server_app``: fail, record nothing as
    complete, resume from the last finished round."""
    from ddval.federation.launch import LocalFederation
    from ddval.train import state_sha256
    from ddval.train.checkpoints import load_checkpoint

    cfg, base, _, sites = study
    server = base / "server-killed"
    cdir = coalition_dir(cfg, 0, SETTING, GRAND, server)
    with LocalFederation(base / "insecure", sites, tls=False) as fed:
        run = fed.submit(run_config(server, **{"round-timeout": 90.0}), "killed-run")
        deadline = time.monotonic() + 900
        while not (cdir / "checkpoint.pt").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (cdir / "checkpoint.pt").exists(), fed.log("killed-run")[-4000:]
        fed.kill_node("mimic")  # in round 2
        run.wait(timeout=600)
        output = fed.log("killed-run")
        assert "FederationError" in output and "site 'mimic'" in output, output[-4000:]
        assert not (cdir / ".train.done.json").exists() and not (cdir / "best.pt").exists()
        assert not (valuation_dir(cfg, 0, SETTING, server) / "institution_values.csv").exists()
        assert load_checkpoint(cdir / "checkpoint.pt", None)["history"]  # the finished rounds are kept

        fed.start_node("mimic")
        again = fed.run(run_config(server, **{"round-timeout": 300.0, "wait-for-sites": 90.0}), timeout=1500)
        assert (cdir / ".train.done.json").exists(), again.stdout[-4000:]
    best = load_checkpoint(cdir / "best.pt", None)["state"]
    expected = load_checkpoint(coalition_dir(cfg, 0, SETTING, GRAND, federated) / "best.pt", None)["state"]
    assert state_sha256(best) == state_sha256(expected)


def test_the_economy_stage_reads_the_servers_run_folder(study, federated):
    """What notebook 05 reads first, on what the server wrote: the round table and every round's
    model files (planned as the chain's stopping rule would), the values and the feature files."""
    from ddval.economy.inputs import locate_inputs, plan_rounds

    cfg = study[0]
    inputs = locate_inputs(cfg, 0, SETTING, federated)
    plan = plan_rounds(inputs, cfg.train.patience, cfg.train.max_rounds)
    assert plan.rounds == tuple(range(1, cfg.train.max_rounds + 1))
    assert all(path.exists() for path in plan.models.values()) and len(plan.models) == 3 * cfg.train.max_rounds
    assert list(store.read_table(inputs.institution_values)["institution"]) == list(GRAND)
    assert sorted(p.name for p in inputs.features.glob("*.npz")) == sorted(f"{n}.npz" for n in GRAND)
