"""knn_shapley: golden tests against brute force and the original loop, exactness guard, backends,
chunking, shards, inputs and errors. (Axioms as Hypothesis properties: test_knn_properties.py.)"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
import torch
from valuation_oracles import (
    brute_force_knn_shapley,
    exact_order,
    exact_knn_shapley_fractions,
    exact_order_knn_shapley,
    full_utility,
    marginals_equal,
    rounded_weight_knn_shapley_units,
)

from ddval.valuation import KnnShapleySum, knn_shapley, knn_shapley_loop, knn_shapley_sum

from ddval.valuation.knn_shapley import engine, guard, host, limbs, validation


def grid_data(rng, n, m, d=2, levels=3, classes=2):
    """Integer coordinates on a small grid: many exact distance ties."""
    return (
        rng.integers(0, levels, (n, d)).astype(np.float64),
        rng.integers(0, classes, n),
        rng.integers(0, levels, (m, d)).astype(np.float64),
        rng.integers(0, classes, m),
    )


# -- golden: brute force ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_equals_brute_force_with_ties_and_fewer_points_than_k(n, k):
    rng = np.random.default_rng(100 * n + k)
    X, y, T, yt = grid_data(rng, n, 4)
    expected = brute_force_knn_shapley(X, y, T, yt, k)
    assert np.abs(knn_shapley(X, y, T, yt, k) - expected).max() <= 1e-12


def test_equals_brute_force_multiclass_and_continuous():
    rng = np.random.default_rng(7)
    X, T = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    y, yt = rng.integers(0, 4, 7), rng.integers(0, 4, 5)
    assert np.abs(knn_shapley(X, y, T, yt, 3) - brute_force_knn_shapley(X, y, T, yt, 3)).max() <= 1e-12


def test_the_textbook_start_is_wrong_below_k():
    # N = 2 < K = 3, both points match: u({a}) = u({b}) = 1/3, u({a, b}) = 2/3 -> 1/3 each.
    X, y = np.array([[0.0], [1.0]]), np.array([1, 1])
    T, yt = np.array([[0.0]]), np.array([1])
    np.testing.assert_allclose(knn_shapley(X, y, T, yt, 3), [1 / 3, 1 / 3], rtol=0, atol=1e-15)
    # the textbook start s_N = m_N / N would give the farthest point 1/2 and break efficiency
    textbook = knn_shapley_loop(X, y, T, yt, 3)
    assert textbook[1] == pytest.approx(0.5) and textbook.sum() != pytest.approx(2 / 3)
    # N = 1: the single point is worth u({j}) = m / K
    np.testing.assert_allclose(knn_shapley(X[:1], y[:1], T, yt, 3), [1 / 3], rtol=0, atol=1e-15)


def test_tie_rule_is_train_index_order():
    # two points at the same place, labels 1 and 0, test label 1, K = 1: the lower index is nearer.
    X, y = np.array([[1.0], [1.0]]), np.array([1, 0])
    T, yt = np.array([[0.0]]), np.array([1])
    # order (0, 1): s_1 = 0 * 1/2 = 0, s_0 = 0 + (1 - 0) * 1 = 1: all the value goes to point 0
    np.testing.assert_array_equal(knn_shapley(X, y, T, yt, 1), [1.0, 0.0])
    # reversed, the mismatching point is nearer and blocks the matching one in {0, 1}:
    # phi_0 = (u({0}) + u({0, 1}) - u({1})) / 2 = (0 + 0 - 1) / 2, phi_1 = (1 + 0) / 2
    np.testing.assert_array_equal(knn_shapley(X[::-1], y[::-1], T, yt, 1), [-0.5, 0.5])


# -- golden: the original per-test-point loop (N >= K) -------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_equals_the_original_loop_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n, m, d, k = int(rng.integers(3, 300)), int(rng.integers(1, 25)), int(rng.integers(1, 40)), int(rng.integers(1, 4))
    X, T = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    y, yt = rng.integers(0, 2, n), rng.integers(0, 2, m)
    assert np.abs(knn_shapley(X, y, T, yt, k) - knn_shapley_loop(X, y, T, yt, k)).max() <= 1e-12


def test_multilabel_is_one_game_per_label():
    rng = np.random.default_rng(3)
    X, T = rng.standard_normal((120, 6)), rng.standard_normal((15, 6))
    Y, Yt = rng.integers(0, 2, (120, 4)), rng.integers(0, 2, (15, 4))
    values = knn_shapley(X, Y, T, Yt, 3)
    assert values.shape == (120, 4)
    for lab in range(4):
        np.testing.assert_array_equal(values[:, lab], knn_shapley(X, Y[:, lab], T, Yt[:, lab], 3))
        assert np.abs(values[:, lab] - knn_shapley_loop(X, Y[:, lab], T, Yt[:, lab], 3)).max() <= 1e-12


def test_test_mask_values_each_label_over_its_own_test_points():
    rng = np.random.default_rng(4)
    X, T = rng.standard_normal((80, 5)), rng.standard_normal((20, 5))
    Y, Yt = rng.integers(0, 2, (80, 3)), rng.integers(0, 2, (20, 3))
    mask = rng.random((20, 3)) < 0.6
    mask[:, 2] = False  # a label without test points
    values = knn_shapley(X, Y, T, Yt, 3, test_mask=mask)
    for lab in range(2):
        rows = mask[:, lab]
        np.testing.assert_array_equal(values[:, lab], knn_shapley(X, Y[:, lab], T[rows], Yt[rows, lab], 3))
    assert np.isnan(values[:, 2]).all()
    np.testing.assert_array_equal(values, knn_shapley(X, Y, T, Yt, 3, test_mask=mask, device="cpu"))


# -- the exactness guard ---------------------------------------------------------------------------


def near_tie_data(rng, n_base=6, d=48):
    """Permutations of one vector (exact ties for a constant test point), and the same with one
    coordinate moved by an ulp (exact distances a hair apart): float64 GEMM rounding orders these
    at random, only exact arithmetic gets them right."""
    base = rng.standard_normal(d) * 3.0
    rows = []
    for _ in range(n_base):
        p = rng.permutation(base)
        rows.append(p)
        q = p.copy()
        j = rng.integers(d)
        q[j] = np.nextafter(q[j], np.inf)
        rows.append(q)
    X = np.array(rows)
    T = np.vstack([np.full(d, c) for c in (0.0, 0.25, -0.5)] + [base[:1].repeat(d)])
    return X, rng.integers(0, 2, len(X)), T, rng.integers(0, 2, len(T))


def test_guard_resolves_float64_near_ties_exactly():
    rng = np.random.default_rng(11)
    X, y, T, yt = near_tie_data(rng)
    # the data really are near ties for float64: the plain float64 GEMM order gets some wrong
    gemm = [list(np.argsort((X * X).sum(1) - 2 * X @ t + t @ t, kind="stable")) for t in T]
    assert gemm != [exact_order(X, t) for t in T]
    expected = exact_order_knn_shapley(X, y, T, yt, 3)
    for device in (None, "cpu"):
        assert np.abs(knn_shapley(X, y, T, yt, 3, device=device) - expected).max() <= 1e-12


def test_guard_against_the_exact_order_at_scale_with_duplicates():
    # many exact duplicates with different labels plus continuous points; the guard must put each
    # duplicate group in index order and leave the rest alone.
    rng = np.random.default_rng(12)
    core = rng.integers(-2, 3, (40, 6)).astype(np.float64)
    X = np.vstack([core, core[rng.integers(0, 40, 40)], rng.standard_normal((40, 6))])
    y = rng.integers(0, 2, len(X))
    T, yt = rng.integers(-2, 3, (12, 6)).astype(np.float64), rng.integers(0, 2, 12)
    expected = exact_order_knn_shapley(X, y, T, yt, 3)
    assert np.abs(knn_shapley(X, y, T, yt, 3) - expected).max() <= 1e-12


@pytest.mark.parametrize("with_negative", [False, True])
def test_packed_sort_orders_by_distance_then_index(with_negative):
    """The host sort (distance bits + index in one int64 key) equals a lexsort by (distance, index),
    also for rows with negative computed distances (rounding near zero). -0.0 sorts before +0.0;
    the pair is flagged as near (gap 0), so the guard puts it in index order."""
    rng = np.random.default_rng(13)
    n = 300
    d = np.round(rng.random((4, n)) * 50) / 8 + 1.0  # many exact ties
    if with_negative:
        d[:, ::7] = -np.round(rng.random((4, len(range(0, n, 7)))) * 4) / 1024  # -0.0 among them
        d[:, 5:20:2] = 0.0
    low_bits = (n - 1).bit_length()
    buf = host._HostBuffers.allocate(len(d), n, np.dtype(np.int8))
    order, near = host._sorted_order(d.copy(), np.full(len(d), 1e-9), low_bits, buf)
    for row in range(len(d)):
        expected = np.lexsort((np.arange(n), ~np.signbit(d[row]), d[row]))
        np.testing.assert_array_equal(order[row], expected)
        np.testing.assert_array_equal(near[row], np.diff(d[row][expected]) <= 1e-9)
    if with_negative:
        zero = d == 0
        assert (zero & np.signbit(d)).any() and (zero & ~np.signbit(d)).any() and (d < 0).any()


@given(st.lists(st.floats(-1e290, 1e290, allow_nan=False, allow_infinity=False), max_size=40), st.integers(0, 3))
def test_the_guards_exact_sum_rounds_like_fsum(values, cancel):
    """The vectorised exact sum of the guard gives math.fsum's bits: huge and subnormal terms,
    exact cancellations, ties of the final rounding."""
    terms = np.array(values + [-v for v in values[:cancel]] + [2.0**-1074, 1.0, 2.0**-53] * (cancel == 3))
    assert guard._exact_sum(terms) == math.fsum(terms.tolist())


def test_guard_skips_runs_whose_matches_agree():
    X = np.zeros((50, 3))  # all at one place: one run of ties
    T = np.ones((2, 3))
    calls = []
    original = guard._exact_sq_distances
    guard._exact_sq_distances = lambda *a: calls.append(1) or original(*a)
    try:
        same = knn_shapley(X, np.ones(50, int), T, np.ones(2, int), 3)
        assert not calls  # equal matches: any order gives the same values, nothing recomputed
        mixed = knn_shapley(X, np.arange(50) % 2, T, np.ones(2, int), 3)
        assert calls
    finally:
        guard._exact_sq_distances = original
    np.testing.assert_allclose(same, np.full(50, 1 / 50), atol=1e-15)
    np.testing.assert_allclose(mixed, exact_order_knn_shapley(X, np.arange(50) % 2, T, np.ones(2, int), 3), atol=1e-12)


# -- backends, chunks, threads, shards --------------------------------------------------------------


@pytest.fixture(scope="module")
def medium():
    rng = np.random.default_rng(21)
    X, T = rng.standard_normal((700, 16)), rng.standard_normal((45, 16))
    X[100:110] = X[0]  # duplicates
    return X, rng.integers(0, 3, (700, 2)), T, rng.integers(0, 3, (45, 2))


def test_results_are_bit_identical_across_backends_chunks_threads_and_budgets(medium):
    X, Y, T, Yt = medium
    ref = knn_shapley(X, Y, T, Yt, 3)
    for kwargs in (
        dict(device="cpu"),
        dict(chunk=1),
        dict(chunk=7, threads=2),
        dict(threads=1),
        dict(memory_budget_mb=1.0),
        dict(device="cpu", chunk=4),
    ):
        np.testing.assert_array_equal(knn_shapley(X, Y, T, Yt, 3, **kwargs), ref, err_msg=str(kwargs))


def test_memory_budget_bounds_the_chunk(medium):
    X, Y, T, Yt = medium
    ytr, yte, _ = validation._label_codes(Y, Yt, 700, 45)
    ctx = engine._EngineCall.build(X, T, ytr, yte, None, 3, None, None, 1.0, 2, 45)
    assert ctx.chunk * 8 * 700 <= 0.5 * 2**20  # the chunk's distances fit half of a 1 MB budget
    with pytest.raises(ValueError, match="too small"):
        knn_shapley(X, Y, T, Yt, 3, memory_budget_mb=0.01)


def test_shards_sum_exactly_to_the_full_result(medium, tmp_path):
    X, Y, T, Yt = medium
    full = knn_shapley_sum(X, Y, T, Yt, 3)
    cuts = [0, 1, 17, 30, 45]
    parts = [knn_shapley_sum(X, Y, T, Yt, 3, test_slice=(a, b), chunk=5) for a, b in zip(cuts[:-1], cuts[1:])]
    total = parts[3] + parts[0] + parts[2] + parts[1]  # any order
    np.testing.assert_array_equal(total.hi, full.hi)
    np.testing.assert_array_equal(total.lo, full.lo)
    np.testing.assert_array_equal(total.values(), knn_shapley(X, Y, T, Yt, 3))
    assert total.n_test.tolist() == [45, 45]
    # a shard survives a round trip through an NPZ file (one per SLURM task)
    np.savez(tmp_path / "shard.npz", **parts[0].as_arrays())
    restored = KnnShapleySum.from_arrays(np.load(tmp_path / "shard.npz"))
    np.testing.assert_array_equal((restored + parts[1] + parts[2] + parts[3]).hi, full.hi)
    with pytest.raises(ValueError, match="missing"):
        KnnShapleySum.from_arrays({"hi": full.hi})
    # the sums are sums: values() * n_test == totals()
    np.testing.assert_allclose(total.totals(), total.values() * 45, rtol=1e-14)


def test_sums_of_different_games_do_not_add(medium):
    X, Y, T, Yt = medium
    with pytest.raises(ValueError, match="different games"):
        knn_shapley_sum(X, Y, T, Yt, 3, test_slice=(0, 2)) + knn_shapley_sum(X, Y, T, Yt, 1, test_slice=(2, 4))


def test_weights_are_rounded_once_to_multiples_of_2_to_the_minus_62():
    for k in (1, 2, 3, 5, 7):
        units = limbs.weight_units(300, k)
        # w_i = min(K, i) / (i K), i = 1..N, rounded to the nearest multiple of 2**-62 (ties up)
        expected = [math.floor(Fraction(min(k, i), i * k) * 2**62 + Fraction(1, 2)) for i in range(1, 301)]
        assert units.tolist() == expected


@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30))
def test_the_split_into_limbs_is_exact(values):
    s = np.array(values, np.int64)
    hi, lo = limbs.split_units(s.copy(), np.empty_like(s))
    assert [int(h) * 2**31 + int(low) for h, low in zip(hi, lo)] == values
    assert np.abs(hi).max() <= 2**31 and lo.min() >= -(2**30) and lo.max() < 2**30


@pytest.mark.parametrize("device", [None, "cpu"])
def test_each_test_points_values_are_exact_for_the_rounded_weights(device):
    """Golden, bit for bit: one test point's sums equal the recursion in exact integers on the exact
    order (independent oracle), and are within N * 2**-63 of the exact Shapley values."""
    rng = np.random.default_rng(3)
    X, y, T, yt = grid_data(rng, 40, 6, classes=3)  # ties between labels: the guard's exact order
    for k in (1, 3, 50):
        for t in range(len(T)):
            total = knn_shapley_sum(X, y, T[t : t + 1], yt[t : t + 1], k, device=device)
            got = [int(h) * 2**31 + int(low) // 2 for h, low in zip(total.hi[0], total.lo[0])]
            assert all(int(low) % 2 == 0 for low in total.lo[0])
            assert got == rounded_weight_knn_shapley_units(X, y, T[t], yt[t], k)
            exact = exact_knn_shapley_fractions(X, y, T[t], yt[t], k)
            assert max(abs(Fraction(g, 2**62) - e) for g, e in zip(got, exact)) <= Fraction(len(X), 2**63)


def test_copies_separated_by_a_tie_of_another_label_get_the_same_bits():
    """Found by the explore profile (issue 17, item 10): player 1 and its copy 5 are symmetric, but
    point 2 (another label, same distance) lies between them. The float64 recursion added and
    subtracted the same weight 1/K around it, and the values came out one ulp apart."""
    X = np.array([[0.0], [1.0], [1.0], [0.0], [0.0], [1.0]])
    y, T, yt = np.array([0, 0, 1, 0, 0, 0]), np.array([[1.0]]), np.array([0])
    assert marginals_equal(X, y, T, yt, 2, 1, 5)
    for device in (None, "cpu"):
        values = knn_shapley(X, y, T, yt, 2, device=device)
        assert values[1] == values[5]


# -- inputs -------------------------------------------------------------------------------------------


def test_float16_memmap_torch_and_image_shaped_inputs(tmp_path, medium):
    X, Y, T, Yt = medium
    X16, T16 = X.astype(np.float16), T.astype(np.float16)
    ref = knn_shapley(X16.astype(np.float64), Y, T16.astype(np.float64), Yt, 3)
    np.testing.assert_array_equal(knn_shapley(X16, Y, T16, Yt, 3), ref)
    path = tmp_path / "train.npy"
    np.save(path, X16.reshape(700, 4, 2, 2))  # (N, C, H, W) features are flattened
    mm = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(knn_shapley(mm, Y, T16.reshape(45, 4, 2, 2), Yt, 3, memory_budget_mb=1.0), ref)
    np.testing.assert_array_equal(knn_shapley(torch.from_numpy(X16), torch.from_numpy(Y), T16, Yt, 3), ref)


def test_labels_may_be_floats_bools_or_strings_of_ints():
    rng = np.random.default_rng(5)
    X, T = rng.standard_normal((30, 3)), rng.standard_normal((6, 3))
    y, yt = rng.integers(0, 2, 30), rng.integers(0, 2, 6)
    ref = knn_shapley(X, y, T, yt)
    np.testing.assert_array_equal(knn_shapley(X, y.astype(float), T, yt.astype(float)), ref)
    np.testing.assert_array_equal(knn_shapley(X, y.astype(bool), T, yt.astype(bool)), ref)


def test_efficiency_on_a_larger_instance(medium):
    X, Y, T, Yt = medium
    values = knn_shapley(X[:60], Y[:60, 0], T[:9], Yt[:9, 0], 3)
    assert values.sum() == pytest.approx(full_utility(X[:60], Y[:60, 0], T[:9], Yt[:9, 0], 3), abs=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=0), "k must be an integer >= 1"),
        (dict(train_x=np.zeros(5)), "train_x must have shape"),
        (dict(test_x=np.zeros((2, 4))), "3 features per row but test_x has 4"),
        (dict(train_y=np.zeros(4)), "train_y has 4 rows but train_x has 5"),
        (dict(test_y=np.zeros((2, 2))), "both"),
        (dict(train_y=np.array([0, 1, 0.5, 1, 0])), "row 2, label 0: 0.5 is not an integer-valued label"),
        (dict(train_x=np.array([[0, 0, 0], [0, 0, 0], [0, np.nan, 0], [0, 0, 0], [0, 0, 0]])), "train_x row 2"),
        (dict(test_x=np.array([[0, 0, 0], [np.inf, 0, 0]])), "test_x row 1"),
        (dict(test_mask=np.ones((2, 2), bool)), "test_mask must have shape"),
        (dict(test_x=np.zeros((0, 3)), test_y=np.zeros(0)), "no test points"),
        (dict(train_x=np.array([["a"] * 3] * 5)), "real numbers"),
    ],
)
def test_bad_input_gives_a_clear_error(kwargs, message):
    args = dict(train_x=np.zeros((5, 3)), train_y=np.zeros(5), test_x=np.zeros((2, 3)), test_y=np.zeros(2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        knn_shapley(**args)


def test_no_training_points_and_empty_shards():
    out = knn_shapley(np.zeros((0, 3)), np.zeros(0), np.zeros((2, 3)), np.zeros(2))
    assert out.shape == (0,)
    empty = knn_shapley_sum(np.zeros((4, 3)), np.zeros(4), np.zeros((2, 3)), np.zeros(2), test_slice=(1, 1))
    assert isinstance(empty, KnnShapleySum) and empty.n_test.tolist() == [0] and not empty.hi.any()


def test_deterministic_torch_mode_and_device_names(medium):
    X, Y, T, Yt = medium
    ref = knn_shapley(X[:200], Y[:200], T[:10], Yt[:10], 3)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # as ddval.repro.seed_everything sets it
    try:
        for device in ("cpu", torch.device("cpu"), "host", "auto" if not torch.cuda.is_available() else "cpu"):
            np.testing.assert_array_equal(knn_shapley(X[:200], Y[:200], T[:10], Yt[:10], 3, device=device), ref)
    finally:
        torch.use_deterministic_algorithms(was)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            knn_shapley(X[:20], Y[:20], T[:2], Yt[:2], 3, device="cuda")


def test_valuation_config_carries_the_engine_settings():
    from ddval.config import load_config

    cfg = load_config("demo").valuation
    assert (cfg.k, cfg.memory_budget_mb, cfg.device, cfg.chunk, cfg.threads) == (3, 512, "auto", None, 0)
    cfg = load_config("demo", {"valuation": {"chunk": 64, "device": "host"}}).valuation
    assert (cfg.chunk, cfg.device) == (64, "host")
