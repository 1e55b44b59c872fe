"""Memory-mapped feature files: the format read both ways, pooling on lazy views gives the in-memory
values bit for bit, rows read leave the resident set, bad files give clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddval.config import LABELS
from ddval.valuation import knn_shapley
from ddval.valuation.features import SPLIT_KEYS, InstitutionFeatures, SplitFeatures, read_features, write_features
from ddval.valuation.mapped import MappedArray, RowConcat, RowTake, map_npz_array, write_npz_streaming
from ddval.valuation.pooled import knn_sum, label_test_mask, pool_features, shard_slice


def institution(name: str, n_train: int, n_test: int, d: int, rng: np.random.Generator) -> InstitutionFeatures:
    def split(n: int, kind: str) -> SplitFeatures:
        y = (rng.random((n, len(LABELS))) < 0.3).astype(np.float32)
        x = (rng.normal(size=(n, d)) + 2.0 * y[:, :1]).astype(np.float16)
        ids = np.array([f"{name}-{kind}-{i}" for i in range(n)])
        return SplitFeatures(x=x, y=y, ids=ids, patients=ids, sex=np.full(n, "U"), age=np.full(n, np.nan))

    return InstitutionFeatures(name, split(n_train, "train"), split(n_test, "test"))


@pytest.fixture
def feature_files(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(4)
    sizes = {"a": (120, 40), "b": (90, 35), "c": (150, 50)}
    return {n: write_features(tmp_path / f"{n}.npz", institution(n, *s, d=24, rng=rng)) for n, s in sizes.items()}


def test_a_file_written_block_by_block_is_a_feature_file(tmp_path, feature_files):
    whole = read_features(feature_files["a"])
    path = tmp_path / "streamed.npz"
    with write_npz_streaming(path) as stream:
        for split in ("train", "test"):
            part = getattr(whole, split)
            with stream.array(f"{split}_x", part.x.shape, np.float16) as rows:
                for r0 in range(0, len(part.x), 7):
                    rows.write(part.x[r0 : r0 + 7])
            for key in SPLIT_KEYS[1:]:
                stream.add(f"{split}_{key}", getattr(part, key))
    for mmap in (False, True):
        again = read_features(path, "a", mmap=mmap)
        for split in ("train", "test"):
            for key in SPLIT_KEYS:
                got, expected = getattr(getattr(again, split), key), getattr(getattr(whole, split), key)
                np.testing.assert_array_equal(np.asarray(got), expected)
    mapped = read_features(path, mmap=True).train.x
    assert isinstance(mapped, MappedArray) and mapped.dtype == np.float16
    np.testing.assert_array_equal(mapped[5:17], whole.train.x[5:17])
    np.testing.assert_array_equal(mapped[[99, 0, 42]], whole.train.x[[99, 0, 42]])
    with pytest.raises(ValueError, match="rows written"):
        with write_npz_streaming(tmp_path / "short.npz") as stream:
            with stream.array("x", (10, 3), np.float32) as rows:
                rows.write(np.zeros((4, 3)))
    assert not (tmp_path / "short.npz").exists()  # nothing half-written is left


def test_pooling_memory_mapped_features_gives_the_in_memory_values_bit_for_bit(feature_files):
    in_memory = pool_features({n: read_features(p, n) for n, p in feature_files.items()}, per_class=4)
    mapped = pool_features({n: read_features(p, n, mmap=True) for n, p in feature_files.items()}, per_class=4)
    assert isinstance(mapped.train_x, RowConcat) and isinstance(mapped.test_x, RowTake)
    assert mapped.train_x.dtype == np.float16 and in_memory.train_x.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(mapped.train_x), in_memory.train_x)
    np.testing.assert_array_equal(np.asarray(mapped.test_x), in_memory.test_x)
    np.testing.assert_array_equal(label_test_mask(mapped), label_test_mask(in_memory))
    whole = knn_sum(in_memory, 3)
    m = len(mapped.test_ids)
    parts = [knn_sum(mapped, 3, rows=shard_slice(m, i, 3), chunk=5) for i in range(3)]
    total = parts[0] + parts[1] + parts[2]
    np.testing.assert_array_equal(total.hi, whole.hi)
    np.testing.assert_array_equal(total.lo, whole.lo)


class _NoWholeCopy:
    """Rows on request only: converting the whole array is an error."""

    def __init__(self, x):
        self.x, self.shape, self.dtype = x, x.shape, x.dtype

    def __getitem__(self, key):
        return self.x[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the engine copied the whole array")


def test_the_engine_reads_lazy_inputs_by_rows_only():
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(300, 8)), rng.normal(size=(20, 8))
    y, yt = rng.integers(0, 2, 300), rng.integers(0, 2, 20)
    expected = knn_shapley(X, y, T, yt, 3)
    np.testing.assert_array_equal(knn_shapley(_NoWholeCopy(X), y, _NoWholeCopy(T), yt, 3, chunk=4), expected)


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise KeyError("RssFile")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_rows_read_leave_the_resident_set(tmp_path):
    rows = np.ones((1024, 16384), np.float32)  # 64 MiB
    path = tmp_path / "big.npz"
    np.savez(path, x=rows)
    mapped = map_npz_array(path, "x")
    before = _rss_file_kb()
    for r0 in range(0, 1024, 64):
        assert mapped[r0 : r0 + 64].sum() == 64 * 16384
    assert _rss_file_kb() - before < 16 * 1024  # the pages of rows read were released
    # the control: the same reads from a mapping that keeps its pages grow the resident set by ~64 MiB
    keep = np.frombuffer(mapped._mmap, np.float32, rows.size, mapped._delta)
    before = _rss_file_kb()
    assert keep.sum() == rows.size
    assert _rss_file_kb() - before > 48 * 1024


def test_compressed_truncated_or_missing_arrays_are_clear_errors(tmp_path, feature_files):
    whole = read_features(feature_files["b"])
    arrays = {f"{s}_{k}": getattr(getattr(whole, s), k) for s in ("train", "test") for k in SPLIT_KEYS}
    np.savez_compressed(tmp_path / "z.npz", **arrays)
    assert read_features(tmp_path / "z.npz").train.x.shape == whole.train.x.shape  # read whole: fine
    with pytest.raises(ValueError, match=r"z.npz: array 'train_x' is compressed"):
        read_features(tmp_path / "z.npz", mmap=True)
    with pytest.raises(KeyError, match="no array 'nope'"):
        map_npz_array(feature_files["b"], "nope")
    data = feature_files["b"].read_bytes()
    offset = data.index(b"train_x.npy")
    (tmp_path / "cut.npz").write_bytes(data[: offset + 2000])
    with pytest.raises(ValueError, match="cut.npz: not a readable feature file"):
        map_npz_array(tmp_path / "cut.npz", "train_x")
