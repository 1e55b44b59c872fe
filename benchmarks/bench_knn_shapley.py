"""Benchmark: exact KNN-Shapley of ddval against its peers and the floor, on identical data.

    .venv/bin/python benchmarks/bench_knn_shapley.py            # full table (tens of minutes)
    .venv/bin/python benchmarks/bench_knn_shapley.py --sizes 2000 --out -   # quick look

Data: N training / M = 600 test points, D = 1024 float32 features (standard normal), binary labels
(sign of the sum of the first 8 features plus noise), K = 3; the largest N is generated once and
every size uses its first N rows. Every method runs in its own subprocess (so peak RSS is per
method, and includes the input arrays: N x 1024 float32 = 0.8 GB at N = 200k) and reports wall
time, CPU time (user + sys, less sensitive to other load on the machine) and peak RSS; the parent
compares its values with a float64 reference (float64 distances, stable sort, the recursion).

Methods:
  ddval         ddval.valuation.knn_shapley (this tree's lib/), default memory budget 512 MB
  floor-numpy   float32 distances by one matmul (NumPy/OpenBLAS) + np.argsort of the M x N matrix
  floor-torch   the same with torch.addmm + torch.argsort
  loop          ddval.valuation.knn_shapley_loop: transcription of the original per-test-point loop
  pydvl         pyDVL 0.10 KNNShapleyValuation (sklearn KNeighborsClassifier), joblib n_jobs = cores
  opendataval   OpenDataVal 1.3 KNNShapley (torch.cdist + stable argsort + loop over N), defaults

pyDVL and OpenDataVal pin numpy < 2, so they live in their own virtual environments:
    python3.11 -m venv $V/pydvl && $V/pydvl/bin/pip install pydvl==0.10.0
    python3.11 -m venv $V/opendataval && $V/opendataval/bin/pip install opendataval==1.3.0 transformers==4.35.2
(transformers: OpenDataVal's `~=4.35` pin resolves to a 4.5x release that no longer imports with
its torch 2.1). $V is $DDVAL_BENCH_VENVS (default: ../venvs next to the checkout); the
interpreters can also be given as $DDVAL_BENCH_PYDVL_PYTHON / $DDVAL_BENCH_OPENDATAVAL_PYTHON.
A peer that is not installed gets a "not installed" row.

Slow peers are capped (see CAPS): above a size they run on the first M' test points and their time
is scaled by M / M' (their cost is linear in M: one independent pass per test point), marked in
the table; above a second size they are not run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEED = 20240501
LABEL_FEATURES = 8

#: method -> list of (max N, test points used): None = all M; sizes above the last entry are skipped.
CAPS: dict[str, list[tuple[int, int | None]]] = {
    "ddval": [(10**9, None)],
    "floor-numpy": [(10**9, None)],
    "floor-torch": [(10**9, None)],
    "loop": [(10_000, None), (50_000, 60)],
    "pydvl": [(10_000, None), (50_000, 120)],
    "opendataval": [(50_000, None)],
}
METHODS = list(CAPS)
#: Methods whose first run is faster than this are run ``--repeats`` times (median reported).
REPEAT_BELOW_S = 60.0


# ---------------------------------------------------------------------------------------------
# Workers (run in a subprocess; peers' workers import only NumPy and the peer)
# ---------------------------------------------------------------------------------------------


def load(data_dir: Path, n: int, m: int):
    """The first n / m rows, read into memory (not memory-mapped: mapped file pages would count in
    the peak RSS of every method)."""
    return (
        _head(data_dir / "train_x.npy", n),
        _head(data_dir / "train_y.npy", n),
        _head(data_dir / "test_x.npy", m),
        _head(data_dir / "test_y.npy", m),
    )


def _head(path: Path, rows: int) -> np.ndarray:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        assert not fortran
        rows = min(rows, shape[0])
        count = rows * int(np.prod(shape[1:], dtype=np.int64))
        return np.fromfile(f, dtype=dtype, count=count).reshape((rows, *shape[1:]))


# Each factory imports what its method needs and returns the call to time (imports are not timed).


def ddval_factory():
    sys.path.insert(0, str(REPO / "lib"))
    from ddval.valuation import knn_shapley

    return lambda X, y, T, yt, k: knn_shapley(X, y, T, yt, k)


def loop_factory():
    sys.path.insert(0, str(REPO / "lib"))
    from ddval.valuation import knn_shapley_loop

    return lambda X, y, T, yt, k: knn_shapley_loop(X, y, T, yt, k)


def floor_numpy_factory():
    def run(X, y, T, yt, k):
        d = T @ X.T
        d *= -2.0
        d += np.einsum("ij,ij->i", X, X)[None, :]
        np.argsort(d, axis=1)

    return run


def floor_torch_factory():
    import torch

    def run(X, y, T, yt, k):
        Xt, Tt = torch.from_numpy(X), torch.from_numpy(T)
        d = torch.addmm((Xt * Xt).sum(1), Tt, Xt.T, beta=1.0, alpha=-2.0)
        torch.argsort(d, dim=1)

    return run


def pydvl_factory():
    from joblib import parallel_config
    from pydvl.valuation.dataset import Dataset
    from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation
    from sklearn.neighbors import KNeighborsClassifier

    def run(X, y, T, yt, k):
        valuation = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=k), test_data=Dataset(T, yt), progress=False)
        with parallel_config(n_jobs=os.cpu_count()):
            valuation.fit(Dataset(X, y))
        return np.asarray(valuation.result.values, dtype=np.float64)

    return run


def opendataval_factory():
    import torch
    from opendataval.dataval.knnshap import KNNShapley

    def run(X, y, T, yt, k):
        evaluator = KNNShapley(k_neighbors=k)
        evaluator.input_data(
            torch.from_numpy(X),
            torch.from_numpy(y.astype(np.float32)[:, None]),
            torch.from_numpy(T),
            torch.from_numpy(yt.astype(np.float32)[:, None]),
        )
        evaluator.train_data_values()
        return np.asarray(evaluator.evaluate_data_values(), dtype=np.float64)

    return run


def reference_factory():
    def run(X, y, T, yt, k):
        """float64 distances (GEMM), stable argsort, the recursion with the N < K-safe start."""
        X64 = X.astype(np.float64)
        sq = np.einsum("ij,ij->i", X64, X64)
        n = len(X)
        pos = np.arange(1, n + 1, dtype=np.float64)
        w = np.minimum(k, pos) / (pos * k)
        total = np.zeros(n)
        for c0 in range(0, len(T), 25):
            t = T[c0 : c0 + 25].astype(np.float64)
            d = sq[None, :] - 2.0 * (t @ X64.T) + np.einsum("ij,ij->i", t, t)[:, None]
            order = np.argsort(d, axis=1, kind="stable")
            m = (y[order] == yt[c0 : c0 + 25, None]).astype(np.float64)
            nxt = np.zeros_like(m)
            nxt[:, :-1] = m[:, 1:]
            s = np.cumsum(((m - nxt) * w)[:, ::-1], axis=1)[:, ::-1]
            total += np.bincount(order.ravel(), weights=s.ravel(), minlength=n)
        return total / len(T)

    return run


RUNNERS = {
    "ddval": ddval_factory,
    "floor-numpy": floor_numpy_factory,
    "floor-torch": floor_torch_factory,
    "loop": loop_factory,
    "pydvl": pydvl_factory,
    "opendataval": opendataval_factory,
    "reference": reference_factory,
}


def worker(args) -> None:
    X, y, T, yt = load(Path(args.data), args.n, args.m)
    run = RUNNERS[args.worker]()
    cpu0 = os.times()
    t0 = time.perf_counter()
    values = run(X, y, T, yt, args.k)
    wall = time.perf_counter() - t0
    # Peak RSS from VmHWM: ru_maxrss would also count the forking parent's memory (Linux keeps the
    # pre-exec high-water mark). Live worker processes (pyDVL's joblib pool) are read, then reaped
    # so that their CPU time counts as children's.
    rss = _vm_hwm_mb(os.getpid())
    rss_children = sum(_vm_hwm_mb(pid) for pid in _descendants(os.getpid()))
    _reap_joblib_workers()
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    cpu += (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    if values is not None and args.values:
        np.save(args.values, values)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_mb": rss, "rss_children_mb": rss_children}))


def _vm_hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((ln for ln in status.splitlines() if ln.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *_descendants(child)]
    return out


def _reap_joblib_workers() -> None:
    try:
        from joblib.externals.loky import get_reusable_executor
    except ImportError:
        return
    get_reusable_executor().shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# Parent: data, subprocesses, table
# ---------------------------------------------------------------------------------------------


def make_data(data_dir: Path, n_max: int, m: int, d: int) -> None:
    meta = {"n": n_max, "m": m, "d": d, "seed": SEED}
    stamp = data_dir / "meta.json"
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    def labels(x):
        return (x[:, :LABEL_FEATURES].sum(1) + rng.standard_normal(len(x)) * 2.0 > 0).astype(np.int64)

    train = np.lib.format.open_memmap(data_dir / "train_x.npy", mode="w+", dtype=np.float32, shape=(n_max, d))
    for r0 in range(0, n_max, 10_000):
        train[r0 : r0 + 10_000] = rng.standard_normal((min(10_000, n_max - r0), d), dtype=np.float32)
    train.flush()
    np.save(data_dir / "train_y.npy", labels(np.asarray(train)))
    test = rng.standard_normal((m, d), dtype=np.float32)
    np.save(data_dir / "test_x.npy", test)
    np.save(data_dir / "test_y.npy", labels(test))
    del train
    stamp.write_text(json.dumps(meta))


def interpreter(method: str) -> str | None:
    if method not in ("pydvl", "opendataval"):
        return sys.executable
    env = f"DDVAL_BENCH_{method.upper()}_PYTHON"
    if os.environ.get(env):
        return os.environ[env]
    venvs = Path(os.environ.get("DDVAL_BENCH_VENVS", REPO.parent / "venvs"))
    python = venvs / method / "bin" / "python"
    return str(python) if python.exists() else None


def run_worker(method: str, data_dir: Path, n: int, m: int, k: int, values: Path | None, timeout: float):
    python = interpreter(method)
    if python is None:
        return {"status": "not installed"}
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        method,
        "--data",
        str(data_dir),
        "--n",
        str(n),
        "--m",
        str(m),
        "--k",
        str(k),
    ]
    if values is not None:
        cmd += ["--values", str(values)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", DDVAL_PROGRESS="off", TQDM_DISABLE="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"status": f"failed: {tail[0][:120]}"}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def median_run(runs: list[dict]) -> dict:
    """One row from repeated runs: median wall and CPU time (the machine's noise is one-sided but
    not rare on a shared VM), the largest peak RSS, and every wall time for the notes."""
    walls = sorted(r["wall_s"] for r in runs)
    return {
        "status": "ok",
        "wall_s": float(np.median(walls)),
        "cpu_s": float(np.median([r["cpu_s"] for r in runs])),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "rss_children_mb": max(r["rss_children_mb"] for r in runs),
        "walls": walls,
    }


def plan(method: str, n: int, m: int) -> int | None:
    for max_n, used in CAPS[method]:
        if n <= max_n:
            return m if used is None else min(used, m)
    return None


def versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as md, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = md.version(p)\n"
        "    except md.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    out = {}
    for method in ("pydvl", "opendataval"):
        python = interpreter(method)
        if python is None:
            out[method] = "not installed"
            continue
        proc = subprocess.run(
            [python, "-c", code, method, "numpy", "scikit-learn", "torch"], capture_output=True, text=True
        )
        out[method] = ", ".join(f"{k} {v}" for k, v in json.loads(proc.stdout or "{}").items())
    import torch

    out["ddval"] = f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
    return out


def hardware() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.machine()}"


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,10000,50000,200000")
    ap.add_argument("--m", type=int, default=600)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--data", default=os.environ.get("DDVAL_BENCH_DATA", str(Path(tempfile.gettempdir()) / "ddval-bench"))
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "knn_shapley.md"), help="'-': stdout only")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per method and size")
    ap.add_argument("--note", default="", help="free text for the table header (e.g. machine load)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help=f"runs of each method whose first run takes < {REPEAT_BELOW_S:.0f} s; the table gives the median",
    )
    ap.add_argument("--worker", choices=list(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--values", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    sizes = [int(s) for s in args.sizes.split(",")]
    methods = [s for s in args.methods.split(",") if s]
    data_dir = Path(args.data)
    print(f"data in {data_dir} (N <= {max(sizes)}, M = {args.m}, D = {args.d})", flush=True)
    make_data(data_dir, max(sizes), args.m, args.d)
    load_before = os.getloadavg()
    started = _dt.datetime.now().astimezone()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in sizes:
            rows += measure_size(n, methods, args, data_dir, tmp)
    load_after = os.getloadavg()
    table = render(rows, args, started, load_before, load_after)
    print(table)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
        print(f"written to {args.out}")


def measure_size(n: int, methods: list[str], args, data_dir: Path, tmp: Path) -> list[dict]:
    """One row per method at size n. Each method runs once; then the fast ones (first run below
    REPEAT_BELOW_S) run ``--repeats - 1`` more rounds, interleaved method after method, so that a
    slow spell of the machine falls on all of them alike; their row gives the median."""
    runs: dict[str, list[dict]] = {}
    used = {method: plan(method, n, args.m) for method in methods}
    for method in methods:
        if used[method] is not None:
            runs[method] = [
                run_worker(method, data_dir, n, used[method], args.k, tmp / f"{method}-{n}.npy", args.timeout)
            ]
    fast = [m for m, r in runs.items() if r[0]["status"] == "ok" and r[0]["wall_s"] < REPEAT_BELOW_S]
    for _ in range(args.repeats - 1):
        for method in fast:
            again = run_worker(method, data_dir, n, used[method], args.k, None, args.timeout)
            if again["status"] == "ok":
                runs[method].append(again)
    refs: dict[int, np.ndarray] = {}
    rows = []
    for method in methods:
        if used[method] is None:
            rows.append(dict(n=n, method=method, status="not run (cap)"))
            print(f"N={n:>7} {method:12s} not run (cap)", flush=True)
            continue
        res = median_run(runs[method]) if method in fast and len(runs[method]) > 1 else runs[method][0]
        row = dict(n=n, method=method, m_used=used[method], **res)
        if res["status"] == "ok":
            scale = args.m / used[method]
            row["wall_full"] = res["wall_s"] * scale
            row["cpu_full"] = res["cpu_s"] * scale
            row["walls"] = [w * scale for w in res.get("walls", [])]
            out = tmp / f"{method}-{n}.npy"
            if out.exists():
                if used[method] not in refs:
                    refs[used[method]] = reference_values(n, used[method], args, data_dir, tmp)
                row["max_diff"] = float(np.abs(np.load(out) - refs[used[method]]).max())
        rows.append(row)
        print(
            f"N={n:>7} {method:12s} {row.get('status')} wall={fmt(row.get('wall_full'))} s "
            f"rss={fmt(row.get('rss_mb'), 0)} MB diff={row.get('max_diff', '–')}",
            flush=True,
        )
    return rows


def reference_values(n: int, m: int, args, data_dir: Path, tmp: Path) -> np.ndarray:
    ref_path = tmp / f"ref-{n}-{m}.npy"
    ref = run_worker("reference", data_dir, n, m, args.k, ref_path, args.timeout)
    if ref["status"] != "ok":
        raise RuntimeError(f"reference failed at N={n}: {ref['status']}")
    return np.load(ref_path)


def render(rows, args, started, load_before, load_after) -> str:
    by = {(r["n"], r["method"]): r for r in rows}
    lines = [
        "# KNN-Shapley benchmark",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/bench_knn_shapley.py'] + (sys.argv[1:] if sys.argv[1:] else []))}`",
        "",
        f"- measured {started:%Y-%m-%d %H:%M %Z} on {hardware()}",
        f"- load average (1/5/15 min) before {'/'.join(f'{x:.1f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.1f}' for x in load_after)}" + (f"; {args.note}" if args.note else ""),
        f"- data: M = {args.m} test points, D = {args.d} float32 features, K = {args.k}, binary labels, seed {SEED}",
        "- wall/CPU time: the valuation call only (data loaded before); CPU = user + sys of the process and "
        "its children; peak RSS (VmHWM) includes the input arrays (N x D float32) and any worker processes",
        "- max |diff|: largest absolute difference to a float64 reference (float64 distances, stable sort)",
        "- `~`: run on the first M' test points, time scaled by M / M' (cost linear in M)",
        f"- methods faster than {REPEAT_BELOW_S:.0f} s: median of {args.repeats} runs, each in a fresh process, "
        "in rounds over the methods (a slow spell of the machine hits all alike; range in the notes); slower ones: one run",
        f"- versions: {json.dumps(versions())}",
        "",
        "| N | method | wall s | CPU s | peak RSS MB | max abs diff | ddval faster by | notes |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ours = by.get((r["n"], "ddval"), {})
        if r.get("status") != "ok":
            lines.append(f"| {r['n']} | {r['method']} | | | | | | {r.get('status')} |")
            continue
        approx = "~" if r["m_used"] != args.m else ""
        rss = r["rss_mb"] + r["rss_children_mb"]
        speed = ours.get("wall_full") and r["wall_full"] / ours["wall_full"]
        diff = f"{r['max_diff']:.1e}" if "max_diff" in r else "–"
        note = f"M' = {r['m_used']}" if approx else ""
        if r.get("walls"):
            runs = f"median of {len(r['walls'])} ({approx}{r['walls'][0]:.2f}-{r['walls'][-1]:.2f})"
            note = f"{note}; {runs}" if note else runs
        if r["rss_children_mb"]:
            note = (note + "; " if note else "") + f"RSS self {r['rss_mb']:.0f} + workers {r['rss_children_mb']:.0f}"
        lines.append(
            f"| {r['n']} | {r['method']} | {approx}{r['wall_full']:.2f} | {approx}{r['cpu_full']:.2f} | {rss:.0f} | "
            f"{diff} | {'' if r['method'] == 'ddval' or not speed else f'{speed:.1f}x'} | {note} |"
        )
    lines += ["", "## Targets at N = 50,000 (M = 600)", ""]
    lines += targets(by, args)
    return "\n".join(lines) + "\n"


def targets(by, args) -> list[str]:
    out = []
    ours = by.get((50_000, "ddval"), {})
    if ours.get("status") != "ok":
        return ["ddval was not measured at N = 50,000."]

    def ratio(method):
        r = by.get((50_000, method), {})
        return r["wall_full"] / ours["wall_full"] if r.get("status") == "ok" else None

    for method, need in (("pydvl", 20), ("opendataval", 10), ("loop", 40)):
        x = ratio(method)
        out.append(
            f"- vs {method}: {'not measured' if x is None else f'{x:.1f}x faster'} (target >= {need}x): "
            f"{'–' if x is None else ('met' if x >= need else 'NOT met')}"
        )
    for floor in ("floor-numpy", "floor-torch"):
        x = ratio(floor)
        out.append(
            f"- vs {floor}: ddval takes {'–' if x is None else f'{1 / x:.2f}x'} the floor's time "
            f"(target <= 1.5x): {'–' if x is None else ('met' if 1 / x <= 1.5 else 'NOT met')}"
        )
    diff = ours.get("max_diff")
    out.append(
        f"- exact: max |diff| to the float64 reference {diff:.1e} (target <= 1e-10): "
        f"{'met' if diff is not None and diff <= 1e-10 else 'NOT met'}"
    )
    big = by.get((200_000, "ddval"), {})
    if big.get("status") == "ok":
        out.append(
            f"- peak RSS at N = 200,000: {big['rss_mb']:.0f} MB, of which {200_000 * args.d * 4 / 2**20:.0f} MB "
            f"are the input features (target < 2048 MB): {'met' if big['rss_mb'] < 2048 else 'NOT met'}"
        )
    return out


if __name__ == "__main__":
    main()
