"""FedAvg's averaging of state dicts: unweighted / weighted math, integer buffers, properties."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ddval.train.aggregate import average_states, state_sha256


def _state(a: float, b: list[float], n: int) -> dict:
    return {
        "w": torch.tensor([a, 2 * a], dtype=torch.float32),
        "bias": torch.tensor(b, dtype=torch.float32),
        "bn.num_batches_tracked": torch.tensor(n),
    }


def test_unweighted_is_the_plain_mean():
    out = average_states([_state(1.0, [0.0, 3.0], 4), _state(3.0, [6.0, 0.0], 7)])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(out["bias"], torch.tensor([3.0, 1.5]))
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert int(out["bn.num_batches_tracked"]) == 6  # 5.5 rounded half to even


def test_weighted_by_data_size():
    out = average_states([_state(1.0, [0.0, 0.0], 10), _state(4.0, [3.0, 9.0], 40)], weights=[100, 300])
    np.testing.assert_allclose(out["w"].numpy(), [0.25 * 1 + 0.75 * 4, 2 * (0.25 * 1 + 0.75 * 4)], rtol=1e-7)
    np.testing.assert_allclose(out["bias"].numpy(), [2.25, 6.75], rtol=1e-7)
    assert int(out["bn.num_batches_tracked"]) == 32  # 0.25 * 10 + 0.75 * 40 = 32.5 -> 32


def test_dtypes_and_keys_are_kept():
    states = [_state(1.0, [1.0, 1.0], 1), _state(2.0, [2.0, 2.0], 2)]
    out = average_states(states)
    assert list(out) == list(states[0])
    assert all(out[k].dtype == states[0][k].dtype for k in out)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="at least one"):
        average_states([])
    with pytest.raises(ValueError, match="weights"):
        average_states([_state(1.0, [0, 0], 1)] * 2, weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        average_states([_state(1.0, [0, 0], 1)] * 2, weights=[0.0, 0.0])
    other = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="other keys"):
        average_states([_state(1.0, [0, 0], 1), other])


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=5), scale=st.floats(0.1, 100))
def test_properties(values, scale):
    states = [{"x": torch.tensor(v, dtype=torch.float32)} for v in values]
    weights = list(range(1, len(states) + 1))
    mean = average_states(states)["x"].double().numpy()
    stacked = np.array(values, dtype=np.float32).astype(np.float64)
    # the unweighted mean is numpy's mean (to float32 rounding) and lies within the inputs' range
    np.testing.assert_allclose(mean, stacked.mean(axis=0), rtol=1e-6, atol=1e-4)
    assert (mean >= stacked.min(axis=0) - 1e-4).all() and (mean <= stacked.max(axis=0) + 1e-4).all()
    # weights are normalised: scaling them changes nothing
    a = average_states(states, weights)["x"]
    b = average_states(states, [w * scale for w in weights])["x"]
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-4)
    # the average of copies of one state is that state, exactly
    assert torch.equal(average_states([states[0]] * len(states))["x"], states[0]["x"])


def test_state_hash_depends_on_values_not_storage():
    base = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor(3)}
    big = torch.zeros(10)
    big[2:8] = torch.arange(6.0)
    view = {"a": big[2:8].reshape(2, 3), "b": torch.tensor(3)}  # same values, a view into other storage
    assert state_sha256(base) == state_sha256(view)
    assert state_sha256(base) != state_sha256({"a": base["a"] + 1e-6, "b": base["b"]})
    assert state_sha256(base) != state_sha256({"b": base["b"], "a": base["a"]})  # order is part of the state
    assert state_sha256(base) != state_sha256({"a": base["a"].double(), "b": base["b"]})  # dtype too
