"""The torch path: the host path's steps as tensor ops on any torch device (a whole chunk at once).

Same packed-key sort, same guard (near-tied rows are fixed on the host) and the same limbs
(``torch.round`` is half-to-even like the host's add-and-subtract rounding), so the values are
bit-identical to the host path on the CPU. The inverse permutation is a second sort, deterministic on
every device (no scatter, no atomics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ddval.valuation.knn_shapley.guard import _resolve_near_ties
from ddval.valuation.knn_shapley.host import _MAXPOS
from ddval.valuation.knn_shapley.limbs import HI_BITS, LO_BITS

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
    hi = torch.zeros((n_labels, n), dtype=torch.float64, device=dev)
    lo = torch.zeros((n_labels, n), dtype=torch.float64, device=dev)
    for lab in range(n_labels):
        match = (ytr[lab][order] == labels[:, lab : lab + 1]).to(torch.int8)
        diff = match.clone()
        diff[:, :-1] -= match[:, 1:]
        s = (diff.to(torch.float64) * weights).flip(1).cumsum(1).flip(1)
        h = torch.round(s * 2.0**HI_BITS)
        low = torch.round((s - h * 2.0**-HI_BITS) * 2.0**LO_BITS)
        if active is not None:
            keep = torch.from_numpy(active[:, lab]).to(dev).to(torch.float64)[:, None]
            h, low = h * keep, low * keep
        hi[lab] = h.gather(1, rank).sum(0)  # integer-valued float64 < 2**53: exact in any order
        lo[lab] = low.gather(1, rank).sum(0)
    return hi.cpu().numpy().astype(np.int64), lo.cpu().numpy().astype(np.int64)
