"""Measurements of ``bench_paper_scale.py`` beyond wall time: where the engine's time goes (from a
cProfile of one chunk), what a float32 or int8 product would gain and how many neighbouring
distances its rigorous error bound could still order, and DenseNet-121's cost per scan on this CPU."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

_U64, _U32 = 2.0**-53, 2.0**-24


def _gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u)


def phases(stats: dict) -> dict:
    """Seconds per phase of a single-threaded engine call profiled by cProfile (``pstats.Stats.stats``).

    GEMM: the time ``_dots_host`` spends in itself (NumPy's matmul, a ufunc, is not a separate entry);
    conversion: ``_train_block`` (reading the mapped rows and converting them to float64, the norms on
    the first pass); sort: ``_sorted_order`` (packed keys, SIMD sort, near-tie flags); guard:
    ``_resolve_near_ties``; recursion: the rest of ``_host_part`` (finishing the distances, matches,
    integer recursion, limbs, bincount)."""

    def find(name: str, what: int = 3) -> float:
        return sum(v[what] for k, v in stats.items() if k[2] == name)

    def calls(name: str) -> int:
        return int(sum(v[1] for k, v in stats.items() if k[2] == name))

    total = find("knn_sum")
    out = {
        "gemm_s": find("_dots_host", 2),
        "conversion_s": find("_train_block"),
        "sort_s": find("_sorted_order"),
        "guard_s": find("_resolve_near_ties"),
        "recursion_s": find("_host_part") - find("_sorted_order") - find("_resolve_near_ties"),
        "test_rows_s": sum(
            v[4].get(c, (0, 0, 0, 0))[3]
            for k, v in stats.items()
            if k[2] == "_rows_f64"
            for c in v[4]
            if c[2] == "run_chunk"
        ),
        "guard_rows": calls("_resolve_near_ties"),
        "exact_distance_calls": calls("_exact_sq_distances"),
        "chunks": calls("run_chunk"),
        "total_s": total,
    }
    out["other_s"] = total - sum(v for k, v in out.items() if k.endswith("_s") and k != "total_s")
    return out


def gemm_alternatives(pooled, gap_rows: int, block: int = 2048, test_rows: int = 128) -> dict:
    """Single-core rates of the float64, float32 and int8 products on the real operands, and the share
    of neighbouring distances (``gap_rows`` test points against every training point) closer than
    twice each product's rigorous error bound (the engine's guard threshold, less the key truncation)."""
    import torch

    x = np.asarray(pooled.train_x[0:block], dtype=np.float64)
    t = np.asarray(pooled.test_x[0:test_rows], dtype=np.float64)
    dim = x.shape[1]
    flops = 2.0 * len(t) * len(x) * dim
    rates = {}
    with threadpool_limits(1, "blas"):
        for name, dtype in (("float64", np.float64), ("float32", np.float32)):
            a, b = t.astype(dtype), x.astype(dtype)
            np.matmul(a, b.T)
            start = time.process_time()
            np.matmul(a, b.T)
            rates[f"{name}_gflops_per_core"] = flops / (time.process_time() - start) / 1e9
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a8 = torch.randint(-127, 128, (len(t), dim), dtype=torch.int8)
    b8 = torch.randint(-127, 128, (dim, len(x)), dtype=torch.int8)
    try:
        torch._int_mm(a8, b8)
        start = time.process_time()
        torch._int_mm(a8, b8)
        rates["int8_gops_per_core"] = flops / (time.process_time() - start) / 1e9
    except (RuntimeError, AttributeError) as exc:  # not every torch build has a CPU int8 product
        rates["int8_gops_per_core"] = f"unavailable: {exc}"
    torch.set_num_threads(threads)
    return {**rates, **_neighbour_gaps(pooled, gap_rows)}


def _neighbour_gaps(pooled, rows: int) -> dict:
    """Share of adjacent pairs in the distance order of ``rows`` test points within twice the
    float64 and float32 GEMM error bounds gamma_D (|t| + max|x|)^2 (per test point)."""
    t = np.asarray(pooled.test_x[0:rows], dtype=np.float64)
    n, dim = pooled.train_x.shape
    d = np.empty((len(t), n))
    sq = np.empty(n)
    for j0 in range(0, n, 4096):
        x = np.asarray(pooled.train_x[j0 : j0 + 4096], dtype=np.float64)
        sq[j0 : j0 + len(x)] = np.einsum("ij,ij->i", x, x)
        d[:, j0 : j0 + len(x)] = sq[j0 : j0 + len(x)] - 2.0 * t @ x.T
    d += np.einsum("ij,ij->i", t, t)[:, None]
    reach = (np.sqrt(np.einsum("ij,ij->i", t, t)) + np.sqrt(sq.max())) ** 2
    gaps = np.diff(np.sort(d, axis=1), axis=1)
    out = {"gap_test_points": len(t), "median_relative_gap": float(np.median(gaps / d.mean(axis=1, keepdims=True)))}
    for name, u in (("float64", _U64), ("float32", _U32)):
        out[f"share_within_{name}_bound"] = float((gaps <= 2 * _gamma(dim + 9, u) * reach[:, None]).mean())
    return out


def densenet_costs(threads: int, size: int = 256, batch: int = 16) -> dict:
    """Seconds per scan (wall and CPU) of DenseNet-121 (random weights) at ``size`` px on this CPU:
    inference (one utility evaluation scores every test scan) and a training step (SGD, one scan-round)."""
    import torch
    import torchvision

    torch.set_num_threads(threads)
    model = torchvision.models.densenet121(weights=None, num_classes=8)
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 8) < 0.3).float()
    model.eval()
    with torch.no_grad():
        model(x)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(2):
            model(x)
        infer, infer_cpu = (time.perf_counter() - start) / (2 * batch), (time.process_time() - cpu) / (2 * batch)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(2):
        step()
    train, train_cpu = (time.perf_counter() - start) / (2 * batch), (time.process_time() - cpu) / (2 * batch)
    return {
        "infer_s_per_scan": infer,
        "train_s_per_scan": train,
        "infer_cpu_s_per_scan": infer_cpu,
        "train_cpu_s_per_scan": train_cpu,
        "image_px": size,
        "batch": batch,
    }
