"""Feature arrays larger than memory: members of feature files mapped in place, and lazy row views.

A feature file (:mod:`ddval.valuation.features`) is an *uncompressed* ``.npz``: a zip archive whose
members are stored, not deflated, so every array is a plain ``.npy`` at a fixed offset inside the
file. :func:`map_npz_array` maps such a member read-only without reading it; a
:class:`MappedArray` hands out rows as ordinary arrays (``x[r0:r1]``, ``x[index_array]``) and then
tells the kernel it no longer needs those pages (``madvise(MADV_DONTNEED)``: the data stays in the
page cache, but leaves the process's resident set), so reading 11 GB of features block by block
keeps the peak RSS at the size of one block. :func:`write_npz_streaming` writes the same format
block by block, for arrays that are generated or extracted in pieces.

:class:`RowConcat` (rows of several arrays, one after the other) and :class:`RowTake` (chosen rows
of an array) are the lazy views the pooled valuation problem is made of: they read only the rows
asked for. The KNN-Shapley engine reads its inputs only through ``shape``, ``dtype`` and row indexing,
so these views go straight in.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddval import store

_LOCAL_HEADER = struct.Struct("<4s5HL2L2H")  # zip local file header (30 bytes)


class _Rows:
    """What the three row sources share: a ``shape`` (rows first) and a ``dtype``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]


class MappedArray(_Rows):
    """A read-only 2-D array memory-mapped from a file; row reads release their pages afterwards."""

    #: Bytes of rows handed out by all mapped arrays of this process (what a benchmark reports as read).
    bytes_read = 0

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, int], dtype: np.dtype):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        nbytes = self._row_bytes * self.shape[0]
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        self._delta = offset - start
        with open(self.path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < offset + nbytes:
                raise ValueError(f"{self.path}: truncated: an array of {nbytes} bytes at offset {offset} does not fit")
            size = self._delta + nbytes
            self._mmap = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ, offset=start) if nbytes else None
        if self._mmap is None:
            self._array = np.empty(self.shape, self.dtype)
        else:
            count = int(np.prod(self.shape))
            self._array = np.frombuffer(self._mmap, self.dtype, count, self._delta).reshape(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        """Rows (a slice, an integer array or an integer) as a new in-memory array."""
        rows = self._array[key]
        if np.may_share_memory(rows, self._array):  # slices and single rows are views: copy them out
            rows = rows.copy()
        first, last = _row_span(key, self.shape[0])
        if last > first:
            self.release(first, last)
        MappedArray.bytes_read += rows.nbytes
        return rows

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(self._array, dtype=dtype)

    def release(self, r0: int, r1: int) -> None:
        """Drop the pages of rows ``r0:r1`` from the resident set (they are re-read on the next access)."""
        if self._mmap is None:
            return
        page = mmap.PAGESIZE
        begin = (self._delta + r0 * self._row_bytes) // page * page
        end = min(len(self._mmap), -(-(self._delta + r1 * self._row_bytes) // page) * page)
        if end > begin:
            self._mmap.madvise(mmap.MADV_DONTNEED, begin, end - begin)


class RowConcat(_Rows):
    """The rows of several 2-D arrays (same width and dtype), one after the other, read lazily."""

    def __init__(self, parts: Sequence[Any]):
        if not parts:
            raise ValueError("RowConcat needs at least one array")
        widths = {tuple(p.shape[1:]) for p in parts}
        dtypes = {np.dtype(p.dtype) for p in parts}
        if len(widths) != 1 or len(dtypes) != 1:
            raise ValueError(
                f"arrays to concatenate differ in width {sorted(widths)} or dtype {sorted(map(str, dtypes))}"
            )
        self.parts = tuple(parts)
        self.bounds = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.bounds[-1]), *widths.pop())
        self.dtype = dtypes.pop()

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:
                return self._slice(start, max(start, stop))
            key = np.arange(start, stop, step)
        index = np.asarray(key)
        if index.ndim == 0:
            return self[index.reshape(1)][0]
        return self._take(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._slice(0, self.shape[0]).astype(dtype or self.dtype, copy=False)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for part, lo, hi in zip(self.parts, self.bounds[:-1], self.bounds[1:]):
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                pieces.append(part[a - lo : b - lo])
        if not pieces:
            return np.empty((0, *self.shape[1:]), self.dtype)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _take(self, index: np.ndarray) -> np.ndarray:
        if index.dtype == np.bool_:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + self.shape[0], index)
        if index.size and (index.min() < 0 or index.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        part_of = np.searchsorted(self.bounds, index, side="right") - 1
        for p in np.unique(part_of):
            sel = part_of == p
            out[sel] = self.parts[p][index[sel] - self.bounds[p]]
        return out


class RowTake(_Rows):
    """Rows ``index`` of a 2-D array (in that order), read lazily."""

    def __init__(self, base: Any, index: Sequence[int] | np.ndarray):
        self.base = base
        self.index = np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype = np.dtype(base.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = self.index[key]
        if rows.ndim == 0:
            return self.base[rows.reshape(1)][0]
        return self.base[rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.base[self.index].astype(dtype or self.dtype, copy=False)


def _row_span(key: Any, n: int) -> tuple[int, int]:
    """First and one-past-last row touched by ``key`` (a slice, integer array or integer)."""
    if isinstance(key, slice):
        rows = range(*key.indices(n))
        return (min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1) if rows else (0, 0)
    index = np.asarray(key)
    if index.dtype == np.bool_:
        index = np.flatnonzero(index)
    if index.size == 0:
        return 0, 0
    index = np.where(index < 0, index + n, index)
    return int(index.min()), int(index.max()) + 1


# --------------------------------------------------------------------------------------------
# Uncompressed .npz: map a member in place, write members block by block
# --------------------------------------------------------------------------------------------


def npz_member_offset(path: str | os.PathLike, name: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """(byte offset of the data, shape, dtype) of array ``name`` in the uncompressed ``.npz`` ``path``;
    a clear error naming the file when the member is missing, compressed or not a C-ordered array."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise KeyError(f"{path}: no array {name!r}") from None
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a readable feature file (truncated or not an .npz: {exc})") from exc
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{path}: array {name!r} is compressed; only uncompressed .npz members can be memory-mapped")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
        signature, *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raise ValueError(f"{path}: corrupt zip entry for {name!r}")
        fh.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if fortran and len(shape) > 1:
            raise ValueError(f"{path}: array {name!r} is Fortran-ordered; cannot map rows")
        if dtype.hasobject:
            raise ValueError(f"{path}: array {name!r} holds Python objects")
        return fh.tell(), tuple(shape), dtype


def map_npz_array(path: str | os.PathLike, name: str) -> MappedArray:
    """Array ``name`` of the uncompressed ``.npz`` ``path``, memory-mapped read-only (2-D or more)."""
    offset, shape, dtype = npz_member_offset(path, name)
    if len(shape) < 2:
        raise ValueError(f"{path}: array {name!r} has shape {shape}; only arrays of rows are mapped")
    return MappedArray(path, offset, shape, dtype)


class _NpzStream:
    """Open archive of :func:`write_npz_streaming`: add small arrays whole, large ones block by block."""

    def __init__(self, zf: zipfile.ZipFile):
        self._zf = zf

    def add(self, name: str, array: np.ndarray) -> None:
        """Add a whole (small) array."""
        with self._zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)

    @contextlib.contextmanager
    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> Iterator[Any]:
        """Add array ``name`` of ``shape`` and ``dtype`` written in row blocks: yields a writer whose
        ``write(block)`` appends rows; the rows written must add up to ``shape``."""
        dtype = np.dtype(dtype)
        with self._zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(
                fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
            )
            writer = _RowWriter(fh, dtype, tuple(shape[1:]))
            yield writer
            if writer.rows != shape[0]:
                raise ValueError(f"{name}: {writer.rows} rows written, shape says {shape[0]}")


class _RowWriter:
    def __init__(self, fh, dtype: np.dtype, row_shape: tuple[int, ...]):
        self._fh, self._dtype, self._row_shape = fh, dtype, row_shape
        self.rows = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self._dtype)
        if block.shape[1:] != self._row_shape:
            raise ValueError(f"block of shape {block.shape} does not fit rows of shape {self._row_shape}")
        self._fh.write(memoryview(block).cast("B"))
        self.rows += block.shape[0]


@contextlib.contextmanager
def write_npz_streaming(path: str | os.PathLike) -> Iterator[_NpzStream]:
    """Atomically write an uncompressed ``.npz`` (the feature-file format) member by member:
    ``stream.add(name, array)`` for whole arrays, ``with stream.array(name, shape, dtype) as w:
    w.write(block)`` for arrays written in row blocks. ``np.load`` reads the result as usual."""
    with store.atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            yield _NpzStream(zf)
