"""Checking that a file still holds what a completion record vouches for: its size and SHA-256.

A completion record (:mod:`ddval.store`) lists, for every output, ``{"size": bytes, "sha256": hex}``.
Before a stage is skipped (and when ``ddval status`` reports it complete) every output is checked
against it: a missing file makes the stage *incomplete*, a different size or hash makes it *stale*,
and the message names the file. Within one process each file version (path, size, modification
time, inode) is hashed once.

Cost (measured on the 2-core CI machine while five other jobs ran, so an upper bound): a large file
hashes at about 430 MB/s; a demo seed's 5,016 files (58 MB, cohort and resized scans included) take
2.6 s, mostly per-file overhead. At paper scale a seed holds tens of GB (every round state of the
grand coalition's DenseNet-121, 28 MB each, and the deep features of about 10^5 scans, 256 KB each):
one to several minutes per seed for a full check; the resized scans, shared by all seeds, add about 7 x
10^5 files (~40 GB at 256 px; several minutes, estimated from the rates above). ``DDVAL_VERIFY=fast``
trusts a file whose size and modification time still equal those recorded when it was last hashed (kept
beside each record in ``.<stage>.verified.json``) and hashes only the others: a truncated, rewritten or
replaced file changes its size or time and is still caught; only a deliberate edit that restores the old
time passes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Environment variable choosing the check: ``sha256`` (default) or ``fast``.
VERIFY_ENV = "DDVAL_VERIFY"
MODES = ("sha256", "fast")

_memo: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (each file version is read once per process)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """What a record stores about a file: ``{"size": ..., "sha256": ...}``."""
    return {"size": os.stat(path).st_size, "sha256": file_sha256(path)}


def mode() -> str:
    """The check chosen by ``$DDVAL_VERIFY`` (``sha256`` unless set); a bad value is an error."""
    value = os.environ.get(VERIFY_ENV, "") or "sha256"
    if value not in MODES:
        raise ValueError(f"${VERIFY_ENV}={value!r}: expected one of {list(MODES)}")
    return value


def difference(path: Path, expected: dict[str, Any], seen: dict[str, list[int]] | None = None) -> str | None:
    """Why ``path`` does not hold what ``expected`` (a record entry) vouches for, or None when it does.

    ``seen`` (the ``fast`` mode's cache: ``[size, mtime_ns]`` last hashed) lets a file whose size and
    time are unchanged pass without hashing.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} is missing"
    if st.st_size != expected.get("size"):
        return f"{path} has {st.st_size} bytes, its record says {expected.get('size')}"
    if seen is not None and seen.get(str(path)) == [st.st_size, st.st_mtime_ns] and mode() == "fast":
        return None
    if file_sha256(path) != expected.get("sha256"):
        return f"{path} changed since its record was written (SHA-256 differs)"
    return None


def stamps(paths: list[Path]) -> dict[str, list[int]]:
    """``[size, mtime_ns]`` of files just hashed (the ``fast`` mode's cache)."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def read_stamps(path: Path) -> dict[str, list[int]]:
    """The ``fast`` mode's cache file (empty when absent or unreadable: everything is hashed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
