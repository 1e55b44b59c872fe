"""Benchmark: one setting trained and valued in process, and as a Flower federation.

    .venv/bin/python benchmarks/bench_federation.py                       # 18 sites, simulation runtime
    .venv/bin/python benchmarks/bench_federation.py --deployment           # + SuperLink and 18 SuperNodes
    .venv/bin/python benchmarks/bench_federation.py --out -                # print only

Stages 01/02 (not timed) run once into a scratch root; the per-site data roots are carved from it.
Timed, each from scratch: the in-process grand coalition (``run_training_stage``) plus DDVal
(``run_valuation_stage(methods=["ddval"])``); the same app under Flower's simulation runtime (a
SuperLink with ``--simulation`` running 18 virtual nodes' ClientApps on Ray); with ``--deployment``
also a SuperLink and one SuperNode process per site (insecure loopback). The federated runs must end
with the in-process model (checked by hash). Wall times are printed with the machine's load average:
other work on the machine stretches them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from ddval.config import load_config  # noqa: E402
from ddval.data import run_index_stage, run_resize_stage  # noqa: E402
from ddval.federation.launch import LocalFederation  # noqa: E402
from ddval.federation.sites import export_sites  # noqa: E402
from ddval.layout import coalition_dir, data_dir  # noqa: E402
from ddval.train import run_training_stage, state_sha256  # noqa: E402
from ddval.train.checkpoints import load_checkpoint  # noqa: E402
from ddval.valuation import run_valuation_stage  # noqa: E402

PRESET = str(REPO / "benchmarks" / "federation18.yaml")
SETTING = "scale18"


def best_hash(cfg, root: Path) -> str:
    grand = [i.name for i in cfg.setting(SETTING).institutions]
    return state_sha256(load_checkpoint(coalition_dir(cfg, 0, SETTING, grand, root) / "best.pt", None)["state"])


def in_process(cfg, data_root: Path, work: Path) -> float:
    data_dir(cfg, work).parent.mkdir(parents=True, exist_ok=True)
    data_dir(cfg, work).symlink_to(data_dir(cfg, data_root), target_is_directory=True)
    start = time.perf_counter()
    run_training_stage(cfg, 0, SETTING, root=work)
    run_valuation_stage(cfg, 0, SETTING, methods=["ddval"], root=work)
    return time.perf_counter() - start


def federated(cfg, sites: dict[str, Path], work: Path, simulate: bool) -> tuple[float, str]:
    results = work / "server"
    config = {"preset": PRESET, "seed": 0, "setting": SETTING, "results-root": str(results), "round-timeout": 3600.0}
    if simulate:
        config["simulation-sites"] = str(next(iter(sites.values())).parent)
    fed = LocalFederation(work / "flower", sites, tls=False, simulate=len(sites) if simulate else 0)
    with fed:
        start = time.perf_counter()
        done = fed.run(config, timeout=7200)
        wall = time.perf_counter() - start
    if not (coalition_dir(cfg, 0, SETTING, list(sites), results) / ".train.done.json").exists():
        raise RuntimeError(f"federated run did not finish:\n{done.stdout[-4000:]}\n{fed.log('superlink')[-4000:]}")
    return wall, best_hash(cfg, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployment", action="store_true", help="also time SuperLink + one SuperNode per site")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_federation.md"))
    args = parser.parse_args()
    cfg = load_config(PRESET)
    scratch = Path(tempfile.mkdtemp(prefix="ddval-bench-federation-"))
    try:
        run_index_stage(cfg, scratch / "data")
        run_resize_stage(cfg, scratch / "data")
        sites = export_sites(cfg, 0, SETTING, scratch / "sites", root=scratch / "data")
        wall = in_process(cfg, scratch / "data", scratch / "inproc")
        rows = [("in process (run_training_stage + DDVal)", wall, "—")]
        reference = best_hash(cfg, scratch / "inproc")
        variants = [("Flower simulation runtime (Ray, 18 virtual nodes)", True)]
        variants += [("Flower deployment (SuperLink + 18 SuperNode processes)", False)] if args.deployment else []
        for label, simulate in variants:
            wall, digest = federated(cfg, sites, scratch / ("sim" if simulate else "deploy"), simulate)
            rows.append((label, wall, "yes" if digest == reference else "NO"))
        load = os.getloadavg()
        lines = [
            f"# Federation benchmark ({_dt.date.today()})",
            "",
            f"`{Path(PRESET).relative_to(REPO)}`: {len(sites)} institutions x 24 train scans, "
            f"{cfg.train.max_rounds} rounds, small DenseNet, CPU, {os.cpu_count()} cores; "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) when it ended.",
            "",
            "| run | wall time (s) | same model as in process |",
            "|---|---:|---|",
            *[f"| {label} | {wall:.1f} | {same} |" for label, wall, same in rows],
            "",
        ]
        text = "\n".join(lines)
        print(text)
        if args.out != "-":
            Path(args.out).write_text(text)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
