"""Benchmark: the paper's full non-IID setting valued on one machine, memory-mapped (issue 15).

    .venv/bin/python benchmarks/bench_paper_scale.py --scale tiny --out -     # ~1 min: the whole path
    .venv/bin/python benchmarks/bench_paper_scale.py --scale small            # N = 84,000, D = 4,096
    nice .venv/bin/python benchmarks/bench_paper_scale.py --scale full        # the paper: D = 65,536

Data (``paper_scale_data.py``): 3 institutions (nih, chexpert, mimic) of 28,000 training scans and
a 10,000-scan test split each, 65,536 float16 features per scan (the flattened ``denseblock4`` of
DenseNet-121 at 256 px), written once with a seeded generator with cluster structure into the
valuation stage's feature files (``<S>/valuation/features/<institution>.npz``, 14 GB at full scale)
under ``--cache`` (default ``.cache/paper_scale/<scale>``; re-runs reuse them and every finished step).

What runs is the valuation stage's own KNN path (what notebook 04 runs), each step in a fresh process:
* ``unsharded``: ``knn_stage.knn_stage`` with one shard: ``load_features`` (memory-mapped, the files are
  >= 1 GiB; forced at reduced scales) -> ``pool_features`` (balanced 300 + 300 test scans per label and
  institution) -> ``knn_sum`` -> ``knn_values.npz``;
* ``shard i``: ``knn_stage.compute_shard(i, 8)``, the function a ``valuation-shard`` task of the job runner
  calls (the runner itself would wrap each in papermill and a kernel start), then ``reduce``:
  ``knn_stage.knn_stage`` with 8 shards, which adds the shard files;
* ``check``: the sharded values equal the unsharded ones bit for bit (full scale), and on a
  sub-sample (every 16th training scan, 256 test points) the memory-mapped, lazily pooled, 8-way
  sharded sums equal an in-memory, unsharded call bit for bit;
* ``profile``: one chunk of test points single-threaded under cProfile: where the time goes (GEMM,
  conversion of the train rows to float64, sort, recursion, guard) as costs per unit, composed for
  the whole run; the float32 / int8 products against the float64 one, and how many neighbouring
  distances each one's rigorous error bound could not order;
* ``densenet``: DenseNet-121 at 256 px on this CPU (inference and training per scan), for the
  crossover against exact retraining and GTG-Shapley at 2-18 clients of 8,000 scans.

Each step reports wall and CPU time (user + sys), peak RSS (VmHWM: includes mapped file pages and
the torch import), feature bytes read through the memory maps, bytes read from storage, and the
load average. The table goes to ``benchmarks/results/paper_scale.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "lib"), str(HERE)]

SETTING, SEED, SHARDS = "noniid", 0, 8
INSTITUTIONS = ("nih", "chexpert", "mimic")
SCALES = {
    "full": {"n_train": 28_000, "dim": 65_536, "n_test": 10_000},
    "small": {"n_train": 28_000, "dim": 4_096, "n_test": 10_000},
    "tiny": {"n_train": 2_000, "dim": 512, "n_test": 2_500},
}
SCAL_CLIENTS, SCAL_POINTS, SCAL_TEST_POOL = tuple(range(2, 19, 2)), 8_000, 3_600  # the paper's scalability runs


# --------------------------------------------------------------------------------------------
# The run folder: a preset and the features stage, as the valuation stage expects them
# --------------------------------------------------------------------------------------------


def experiment(args):
    """``(cfg, root)``: the paper's non-IID preset at ``args.scale`` (a preset file in the cache, so that
    a notebook kernel of the job runner loads the same), its run folder in the cache."""
    import yaml

    from ddval.config import load_config

    s = SCALES[args.scale]
    institutions = [
        {"name": n, "datasets": [n], "train": s["n_train"], "val": 0, "test": s["n_test"]} for n in INSTITUTIONS
    ]
    preset = {
        "extends": "paper_noniid",
        "seeds": [SEED],
        "settings": [{"name": SETTING, "scheme": "noniid", "institutions": institutions}],
        "valuation": {
            "feature_dtype": "float16",
            "memory_budget_mb": args.budget_mb,
            "shards": SHARDS,
            "device": "host",
            "threads": args.threads,
            "test_per_class": 300,
            "k": 3,
        },
    }
    path = args.cache / f"paper_scale_{args.scale}.yaml"
    text = "# written by benchmarks/bench_paper_scale.py\n" + yaml.safe_dump(preset, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_config(path), args.cache / "results"


def generate(args) -> dict:
    """Write the feature files through the features stage's completion record. Files already written
    by the same generator (``<cache>/features.json``) are vouched for again instead of rewritten, so a
    change of what the stage's record holds (e.g. a new field of ``features_params``) costs no 14 GB."""
    from ddval import store
    from ddval.layout import features_dir
    from ddval.valuation.features import STAGE, features_params
    from paper_scale_data import GENERATOR_VERSION, FeatureGenerator

    cfg, root = experiment(args)
    s = SCALES[args.scale]
    fdir, params = features_dir(cfg, SEED, SETTING, root), features_params(cfg, SEED, SETTING, root)
    paths = [fdir / f"{n}.npz" for n in INSTITUTIONS]
    made = {"generator": GENERATOR_VERSION, "seed": SEED, **s}
    ledger = args.cache / "features.json"
    if not store.is_complete(fdir, STAGE, params):
        written = json.loads(ledger.read_text()) if ledger.exists() else None
        sizes = [p.stat().st_size if p.exists() else -1 for p in paths]
        if written == {**made, "sizes": sizes}:
            store.mark_complete(fdir, STAGE, params, paths)
            return {"skipped": True, "bytes_on_disk": sum(sizes)}
    need = len(INSTITUTIONS) * (s["n_train"] + s["n_test"]) * s["dim"] * 2
    args.cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.cache).free
    if not store.is_complete(fdir, STAGE, params) and free < 1.1 * need:
        raise SystemExit(f"{args.cache}: {need / 1e9:.1f} GB of features needed, {free / 1e9:.1f} GB free")
    gen = FeatureGenerator(s["dim"], seed=SEED)

    def compute():
        return [
            gen.write_institution(path, i, name, s["n_train"], s["n_test"])
            for i, (name, path) in enumerate(zip(INSTITUTIONS, paths))
        ]

    result = store.run_stage(fdir, STAGE, params, compute)
    sizes = [p.stat().st_size for p in paths]
    ledger.write_text(json.dumps({**made, "sizes": sizes}))
    return {"skipped": result.skipped, "bytes_on_disk": sum(sizes)}


# --------------------------------------------------------------------------------------------
# Workers: one step each, in a fresh process; print one JSON line
# --------------------------------------------------------------------------------------------


def _pooled(cfg, root):
    from ddval.valuation.features import load_features
    from ddval.valuation.pooled import pool_features

    return pool_features(load_features(cfg, SEED, SETTING, root, mmap=True), cfg.valuation.test_per_class)


def work_unsharded(args) -> dict:
    from ddval import store
    from ddval.layout import valuation_dir
    from ddval.valuation.knn_stage import knn_stage

    cfg, root = experiment(args)
    vdir = valuation_dir(cfg, SEED, SETTING, root)
    store.record_path(vdir, "knn").unlink(missing_ok=True)  # time a computation, not a skip
    made = []
    path = knn_stage(cfg, SEED, SETTING, lambda: made.append(_pooled(cfg, root)) or made[0], n_shards=1, root=root)
    shutil.copyfile(path, args.cache / "values_unsharded.npz")
    store.record_path(vdir, "knn").unlink()  # the reduce step writes knn_values.npz again from the shards
    pooled = made[0]
    return {
        "n_train": pooled.n_train,
        "n_test": len(pooled.test_ids),
        "dim": pooled.train_x.shape[1],
        "label_tests": [len(r) for r in pooled.label_tests],
        "engine_wall_s": float(np.load(path)["wall_time_s"]),
    }


def work_shard(args) -> dict:
    from ddval import store
    from ddval.layout import shard_path, valuation_dir
    from ddval.valuation.knn_stage import compute_shard

    cfg, root = experiment(args)
    path = shard_path(valuation_dir(cfg, SEED, SETTING, root), args.shard, SHARDS)
    store.record_path(path.parent, path.stem).unlink(missing_ok=True)
    compute_shard(cfg, SEED, SETTING, args.shard, SHARDS, root)
    shutil.copyfile(path, path.with_name("direct-" + path.name))  # what the job-runner step compares with
    with np.load(path) as npz:
        return {"rows": npz["rows"].tolist(), "engine_wall_s": float(npz["wall_time_s"])}


def work_jobrunner(args) -> dict:
    """Shard 0 as a ``valuation-shard`` task of the job runner (papermill runs notebook 04 in a fresh
    kernel): its cost from the outside (the kernel is a child process), and its file against the
    direct ``compute_shard`` run's, bit for bit."""
    import dataclasses

    from ddval import store
    from ddval.jobs.manifest import build_manifest, write_manifest
    from ddval.jobs.task import run_task
    from ddval.layout import shard_path, valuation_dir

    cfg, root = experiment(args)
    path = shard_path(valuation_dir(cfg, SEED, SETTING, root), 0, SHARDS)
    direct = path.with_name("direct-" + path.name)  # written by the shard 0 step
    store.record_path(path.parent, path.stem).unlink(missing_ok=True)
    tasks = build_manifest(cfg, root, preset=args.cache / f"paper_scale_{args.scale}.yaml")
    task = next(t for t in tasks if t.stage == "valuation-shard" and t.parameters["shard"] == 0)
    task = dataclasses.replace(task, row=0, depends_on=())  # the training tasks it follows are not part of this
    manifest = write_manifest([task], args.cache / "jobrunner-manifest.jsonl")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = run_task(task, manifest=str(manifest))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if outcome.status != "done":
        raise RuntimeError(f"job runner task failed: {outcome.message}")
    with np.load(path) as a, np.load(direct) as b:
        same = all(np.array_equal(a[k], b[k]) for k in ("hi", "lo", "n_test", "rows"))
    return {
        "kernel_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "kernel_peak_rss_mb": after.ru_maxrss / 1024,
        "task_seconds": outcome.seconds,
        "bit_identical_to_direct": same,
    }


def work_reduce(args) -> dict:
    from ddval.valuation.knn_stage import knn_stage

    cfg, root = experiment(args)
    path = knn_stage(cfg, SEED, SETTING, lambda: _pooled(cfg, root), n_shards=SHARDS, root=root)
    with np.load(path) as sharded, np.load(args.cache / "values_unsharded.npz") as whole:
        same = all(np.array_equal(sharded[key], whole[key]) for key in ("label_values", "scan_id"))
        return {"bit_identical_to_unsharded": same, "shard_wall_sum_s": float(sharded["wall_time_s"])}


def work_check(args) -> dict:
    """Sub-sample: memory-mapped lazy views, 8 shards vs in-memory arrays, one call: same bits."""
    from ddval.valuation.knn_shapley import knn_shapley_sum
    from ddval.valuation.mapped import RowTake
    from ddval.valuation.pooled import label_test_mask, shard_slice

    cfg, root = experiment(args)
    pooled = _pooled(cfg, root)
    train = np.arange(0, pooled.n_train, 16)
    m = min(256, len(pooled.test_ids))
    mask = label_test_mask(pooled)[:m]
    lazy_x, lazy_t = RowTake(pooled.train_x, train), RowTake(pooled.test_x, np.arange(m))
    k, budget = cfg.valuation.k, cfg.valuation.memory_budget_mb
    parts = [
        knn_shapley_sum(
            lazy_x,
            pooled.train_y[train],
            lazy_t,
            pooled.test_y[:m],
            k,
            test_mask=mask,
            test_slice=shard_slice(m, i, SHARDS),
            memory_budget_mb=budget,
        )
        for i in range(SHARDS)
    ]
    sharded = sum(parts[1:], parts[0])
    whole = knn_shapley_sum(
        lazy_x[:],
        pooled.train_y[train],
        lazy_t[:],
        pooled.test_y[:m],
        k,
        test_mask=mask,
        chunk=m,
        memory_budget_mb=budget,
    )
    same = bool(np.array_equal(sharded.hi, whole.hi) and np.array_equal(sharded.lo, whole.lo))
    return {"sub_train": len(train), "sub_test": m, "bit_identical": same}


def work_profile(args) -> dict:
    """One chunk single-threaded under cProfile, per-unit costs; the faster products and their bounds."""
    import cProfile
    import pstats

    from ddval.valuation.pooled import knn_sum

    cfg, root = experiment(args)
    pooled = _pooled(cfg, root)
    rows = (0, min(args.profile_rows, len(pooled.test_ids)))
    profiler = cProfile.Profile(time.process_time)  # CPU seconds: wall time on a shared machine is noise
    profiler.runcall(
        knn_sum, pooled, cfg.valuation.k, rows=rows, threads=1, memory_budget_mb=cfg.valuation.memory_budget_mb
    )
    stats = pstats.Stats(profiler).stats
    from paper_scale_profile import gemm_alternatives, phases

    return {"rows": rows[1], **phases(stats), **gemm_alternatives(pooled, args.gap_rows)}


def work_densenet(args) -> dict:
    from paper_scale_profile import densenet_costs

    return densenet_costs(args.threads)


WORKERS = {
    "unsharded": work_unsharded,
    "shard": work_shard,
    "reduce": work_reduce,
    "jobrunner": work_jobrunner,
    "check": work_check,
    "profile": work_profile,
    "densenet": work_densenet,
}


def _measured(fn, args) -> dict:
    """Run ``fn(args)`` and add wall, CPU, peak RSS, bytes read and the load average."""
    from ddval.valuation.mapped import MappedArray

    def io() -> dict:
        lines = Path("/proc/self/io").read_text().split("\n") if Path("/proc/self/io").exists() else []
        return {k: int(v) for k, v in (line.split(": ") for line in lines if line)}

    load0, io0, cpu0, start = os.getloadavg(), io(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    extra = fn(args)
    wall = time.perf_counter() - start
    cpu1, io1 = resource.getrusage(resource.RUSAGE_SELF), io()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {
        "wall_s": wall,
        "cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "mapped_bytes": MappedArray.bytes_read,
        "storage_read_bytes": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
        "load_before": load0[0],
        "load_after": os.getloadavg()[0],
        **extra,
    }


# --------------------------------------------------------------------------------------------
# The parent: steps (cached in <cache>/steps/), the table
# --------------------------------------------------------------------------------------------


def run_step(args, name: str, worker: str, *extra: str) -> dict:
    """The step's measurements: from ``<cache>/steps/<name>.json``, or by running its worker."""
    out = args.cache / "steps" / f"{name}.json"
    if out.exists() and name not in args.redo and "all" not in args.redo:
        return json.loads(out.read_text())
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--scale",
        args.scale,
        "--cache",
        str(args.cache),
        "--budget-mb",
        str(args.budget_mb),
        "--threads",
        str(args.threads),
        "--profile-rows",
        str(args.profile_rows),
        "--gap-rows",
        str(args.gap_rows),
        *extra,
    ]
    print(f"[{_dt.datetime.now():%H:%M:%S}] {name} (load {os.getloadavg()[0]:.1f})", flush=True)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "DDVAL_PROGRESS": "off"})
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="full")
    ap.add_argument("--cache", type=Path, default=None, help="default: .cache/paper_scale/<scale> in the checkout")
    ap.add_argument("--budget-mb", type=int, default=2560, help="valuation.memory_budget_mb (engine working memory)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile-rows", type=int, default=128, help="test points of the profiled chunk")
    ap.add_argument("--gap-rows", type=int, default=16, help="test points whose neighbour gaps are measured")
    ap.add_argument("--redo", default="", help="comma-separated steps to run again (or 'all')")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out (e.g. densenet)")
    ap.add_argument(
        "--steps",
        default="",
        help="comma-separated steps to run, in this order (default: all; e.g. "
        "profile,unsharded,check); the table reports every step with a result and says what is missing",
    )
    ap.add_argument("--note", default="", help="free text for the table header (e.g. machine load)")
    ap.add_argument("--out", default=str(HERE / "results" / "paper_scale.md"), help="'-': stdout only")
    ap.add_argument("--delete-features", action="store_true", help="delete the cached feature files at the end")
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--shard", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cache = (args.cache or REPO / ".cache" / "paper_scale" / args.scale).resolve()
    args.redo, args.skip = set(filter(None, args.redo.split(","))), set(filter(None, args.skip.split(",")))
    args.scale_params = SCALES[args.scale]
    if args.scale != "full":  # map the smaller files too, so that every scale runs the full scale's path
        from ddval.valuation import features

        features.MMAP_MIN_BYTES = 0
    if args.worker:
        print(json.dumps(_measured(WORKERS[args.worker], args)))
        return

    from paper_scale_report import crossover_table, write_report

    load0 = os.getloadavg()
    steps = {"generate": _timed(generate, args)}
    default = [
        "unsharded",
        *(f"shard-{i}" for i in range(SHARDS)),
        "reduce",
        *(n for n in ("jobrunner", "check", "profile", "densenet") if n not in args.skip),
    ]
    for name in list(filter(None, args.steps.split(","))) or default:
        worker, _, shard = name.partition("-")
        run_step(args, name, worker, *(("--shard", shard) if shard else ()))
    steps |= _finished_steps(args)
    cross = None
    if "densenet" in steps and "unsharded" in steps:
        cross = crossover_table(steps, SCAL_CLIENTS, SCAL_POINTS, SCAL_TEST_POOL)
    write_report(args, steps, cross, load0, os.getloadavg())
    if args.delete_features:
        shutil.rmtree(args.cache / "results")


def _finished_steps(args) -> dict:
    """Every step with a result in ``<cache>/steps/`` (the table reports those, and says which are missing).

    Args:
        args: The parsed command line (``args.cache``).

    Returns:
        Step name (``"shard 3"`` for ``shard-3.json``) to its measurements.
    """
    found = {p.stem: json.loads(p.read_text()) for p in sorted((args.cache / "steps").glob("*.json"))}
    return {name.replace("-", " "): result for name, result in found.items()}


def _timed(fn, args) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(args)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, **result}


if __name__ == "__main__":
    main()
