"""State arithmetic shared by FedAvg, swarm learning, the OR / λ-MR / GTG reconstructions and the
Flower app: averaging, differences, weighted combination, hashing (the role of Flower's
``server/strategy/aggregate.py``).

A state is a model's ``state_dict`` (BatchNorm running statistics and counters included). All
arithmetic is float64, cast back to each entry's dtype; integer buffers are rounded to the nearest
integer. Nothing here knows about clients, rounds or files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


def average_states(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> State:
    """Weighted mean of state dicts, key by key (all keys, BatchNorm buffers included).

    ``weights`` default to equal (the paper's unweighted FedAvg) and are normalised to sum to 1.
    The mean is accumulated in float64 and cast back to each entry's dtype; integer buffers such as
    BatchNorm's ``num_batches_tracked`` get the weighted mean rounded to the nearest integer.
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    w = np.ones(len(states)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(states),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(states)} non-negative numbers with a positive sum, got {weights}")
    w = w / w.sum()
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys:
            raise ValueError(f"state {i} has other keys than state 0")
    out: State = {}
    for key in keys:
        ref = states[0][key]
        acc = sum(float(wi) * s[key].detach().to("cpu", torch.float64) for wi, s in zip(w, states))
        out[key] = (acc.round() if not ref.is_floating_point() else acc).to(ref.dtype)
    return out


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's canonical serialisation: for every entry, in state-dict order, the
    UTF-8 key, the dtype name, the shape and the tensor's contiguous little-endian bytes.

    Unlike the bytes of ``torch.save`` (which depend on storage sharing) this depends on the values
    only, so every peer computes the same hash for the same model."""
    h = hashlib.sha256()
    for key, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def _cast(acc: torch.Tensor, ref: torch.Tensor, key: str) -> torch.Tensor:
    if not ref.is_floating_point():
        return acc.round().to(ref.dtype)
    if key.endswith("running_var"):
        negative = int((acc < 0).sum())
        if negative:
            log.info("%s: %d reconstructed running-variance entries < 0 clamped at 0", key, negative)
            acc = acc.clamp_min(0.0)
    return acc.to(ref.dtype)


def combine(base: State, updates: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> State:
    """``base + Σ_i weights[i] · updates[i]`` entry by entry (float64), in ``base``'s dtypes."""
    if len(updates) != len(weights):
        raise ValueError(f"{len(updates)} updates but {len(weights)} weights")
    out: State = {}
    for key, ref in base.items():
        acc = ref.detach().to(torch.float64).clone()
        for w, u in zip(weights, updates):
            acc += float(w) * u[key]
        out[key] = _cast(acc, ref, key)
    return out


def difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``a − b`` per entry, in float64."""
    if list(a) != list(b):
        raise ValueError("states have different keys")
    return {k: a[k].detach().to(torch.float64) - b[k].detach().to(torch.float64) for k in a}
