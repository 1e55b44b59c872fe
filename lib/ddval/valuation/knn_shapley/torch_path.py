"""The torch path: the host path's steps as tensor ops on any torch device (a whole chunk at once).

Same packed-key sort, same guard (near-tied rows are fixed on the host), the same integer
recursion and the same exact split into limbs (:mod:`.limbs`), so the values are bit-identical to
the host path (tested on the CPU; on CUDA the guard gives the same exact order, and everything after
the sort is integer arithmetic). The inverse permutation is a second sort, deterministic on every
device (no scatter, no atomics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ddval.valuation.knn_shapley.guard import _resolve_near_ties
from ddval.valuation.knn_shapley.host import _MAXPOS
from ddval.valuation.knn_shapley.limbs import _HALF_HI, _LOW_MASK, HI_BITS, LO_SCALE, UNIT_BITS

if TYPE_CHECKING:
    import torch

    from ddval.valuation.knn_shapley.engine import _ChunkRows


def _torch_chunk(dist: torch.Tensor, rows: _ChunkRows) -> tuple[np.ndarray, np.ndarray]:
    import torch

    ctx = rows.ctx
    dev = dist.device
    n, n_labels = ctx.n, ctx.n_labels
    low_mask = (1 << ctx.low_bits) - 1
    index = torch.arange(n, device=dev, dtype=torch.int64)
    bits = dist.view(torch.int64)
    key = bits ^ ((bits >> 63) & int(_MAXPOS))
    key = (key & ~low_mask) | index
    key = torch.sort(key, dim=1).values
    order = key & low_mask
    trunc = key & ~low_mask
    trunc = (trunc ^ ((trunc >> 63) & int(_MAXPOS))).view(torch.float64)
    thr1 = torch.from_numpy(rows.thr1).to(dev)
    near = (trunc[:, 1:] - trunc[:, :-1]) <= thr1[:, None]
    fix = torch.nonzero(near.any(dim=1)).flatten().tolist()
    if fix:
        order_np = order[fix].cpu().numpy()
        d_np, near_np = dist[fix].cpu().numpy(), near[fix].cpu().numpy()
        for j, i in enumerate(fix):
            _resolve_near_ties(order_np[j], d_np[j], near_np[j], rows, i)
        order[fix] = torch.from_numpy(order_np).to(dev)
    # Inverse permutation by a second sort: deterministic on every device (no scatter/atomics).
    rank = torch.argsort(order, dim=1)
    weights = torch.from_numpy(ctx.weights).to(dev)
    ytr = torch.from_numpy(ctx.ytr).to(dev)
    labels = torch.from_numpy(rows.labels()).to(dev)
    active = rows.active()
    hi = torch.zeros((n_labels, n), dtype=torch.int64, device=dev)
    lo = torch.zeros((n_labels, n), dtype=torch.int64, device=dev)
    for lab in range(n_labels):
        match = (ytr[lab][order] == labels[:, lab : lab + 1]).to(torch.int64)
        diff = match.clone()
        diff[:, :-1] -= match[:, 1:]
        s = (diff * weights).flip(1).cumsum(1).flip(1)  # int64, units 2**-62: exact in any order
        s += int(_HALF_HI)  # the exact split of limbs.split_units
        h = s >> (UNIT_BITS - HI_BITS)
        low = (s & int(_LOW_MASK)) - int(_HALF_HI)
        if active is not None:
            keep = torch.from_numpy(active[:, lab]).to(dev).to(torch.int64)[:, None]
            h, low = h * keep, low * keep
        hi[lab] = h.gather(1, rank).sum(0)
        lo[lab] = low.gather(1, rank).sum(0)
    return hi.cpu().numpy(), lo.cpu().numpy() * LO_SCALE
