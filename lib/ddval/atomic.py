"""Atomic writes and plain reads of result files (JSON, tables, arrays, text).

Every write goes to a temporary file in the same folder and is renamed into place, so a killed process
never leaves a half-written file under the final name. Completion records built on these writes:
:mod:`ddval.store` (which re-exports every name here).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ddval.hashing import canonical

__all__ = [
    "atomic_path",
    "read_json",
    "read_table",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_table",
    "write_table_and_report",
    "write_text",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask, e.g.
    0644), not ``mkstemp``'s private 0600: figures and tables are read by other users and tools.
    On an exception the temporary file is removed and ``path`` is left untouched; an ``OSError``
    with an error number but no file (a full disk reports none) is raised again naming ``path``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # a full disk names no file: name it
            raise type(exc)(exc.errno, exc.strerror, str(final)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process's umask. Linux reports it in /proc (reading it elsewhere means setting it, briefly)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    return write_text(path, json.dumps(canonical(obj), indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_table(path: str | os.PathLike, frame: "Any") -> Path:
    """Atomically write a pandas DataFrame as ``.parquet`` or ``.csv`` (by suffix; CSV without index)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: tables are .parquet or .csv")
    return path


def read_table(path: str | os.PathLike) -> "Any":
    """Read a table written by :func:`write_table`."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: table not found (has the stage that writes it run?)")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomically write arrays to an uncompressed ``.npz``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def write_table_and_report(
    path: str | os.PathLike, table: "Any", report_path: str | os.PathLike, report: "Any"
) -> list[Path]:
    """Write ``table`` and, only when it has rows, ``report`` (skipped or quarantined rows); a report
    left by an earlier run is removed, so its presence always describes this table. Returns the paths."""
    outputs = [write_table(path, table)]
    Path(report_path).unlink(missing_ok=True)
    if len(report):
        outputs.append(write_table(report_path, report))
    return outputs
