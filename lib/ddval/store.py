"""Atomic writes and stage completion records (resume). Where things live: :mod:`ddval.layout`.

A stage writes its outputs, then a completion record ``.<stage>.done.json`` holding the hash of
its parameters and the list of its outputs. :func:`run_stage` skips a stage whose record has the
same hash and whose outputs all exist; a changed hash or a missing output re-runs it, and says so.
Every write goes to a temporary file in the same folder and is renamed into place, so a killed
process never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_canonical(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj.is_integer():
        return obj  # json keeps 1.0 distinct from 1; that is fine and stable
    return obj


def param_hash(params: Any) -> str:
    """Stable short hash (16 hex digits) of plain data / dataclasses."""
    blob = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask, e.g.
    0644), not ``mkstemp``'s private 0600: figures and tables are read by other users and tools.
    On an exception the temporary file is removed and ``path`` is left untouched.
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
    return write_text(path, json.dumps(_canonical(obj), indent=2, sort_keys=True, default=str) + "\n")


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


# --------------------------------------------------------------------------------------------
# Stage completion records
# --------------------------------------------------------------------------------------------


class StaleOutputError(RuntimeError):
    """An output exists but was written with other parameters, and overwriting was not allowed."""


@dataclass(frozen=True)
class StageResult:
    """What :func:`run_stage` did: ``skipped`` is True when the stage was already complete."""

    name: str
    skipped: bool
    outputs: tuple[Path, ...]
    params_hash: str


def record_path(stage_dir: str | os.PathLike, name: str) -> Path:
    """Completion record of stage ``name`` in ``stage_dir``."""
    return Path(stage_dir) / f".{name}.done.json"


def require_record(stage_dir: str | os.PathLike, name: str, what_to_run: str) -> dict:
    """The completion record of an earlier stage ``name``; ``FileNotFoundError`` naming the record and
    ``what_to_run`` (e.g. "run notebook 03 first") when that stage has not finished."""
    record = record_path(stage_dir, name)
    if not record.exists():
        raise FileNotFoundError(f"{record} not found: {what_to_run}")
    return read_json(record)


def write_table_and_report(path: str | os.PathLike, table: "Any", report_path: str | os.PathLike, report: "Any") -> list[Path]:
    """Write ``table`` and, only when it has rows, ``report`` (skipped or quarantined rows); a report
    left by an earlier run is removed, so its presence always describes this table. Returns the paths."""
    outputs = [write_table(path, table)]
    Path(report_path).unlink(missing_ok=True)
    if len(report):
        outputs.append(write_table(report_path, report))
    return outputs


def stage_status(stage_dir: str | os.PathLike, name: str, params: Any) -> str:
    """``"complete"``, ``"missing"`` (never finished), ``"stale"`` (other parameters) or ``"incomplete"``
    (finished, but an output has since disappeared)."""
    rec = record_path(stage_dir, name)
    if not rec.exists():
        return "missing"
    data = read_json(rec)
    if data.get("params_hash") != param_hash(params):
        return "stale"
    if not all((Path(stage_dir) / o).exists() for o in data.get("outputs", [])):
        return "incomplete"
    return "complete"


def is_complete(stage_dir: str | os.PathLike, name: str, params: Any) -> bool:
    """True when stage ``name`` finished with these parameters and its outputs exist."""
    return stage_status(stage_dir, name, params) == "complete"


def mark_complete(stage_dir: str | os.PathLike, name: str, params: Any, outputs: Iterable[str | os.PathLike]) -> Path:
    """Write the completion record (outputs are stored relative to ``stage_dir``)."""
    stage_dir = Path(stage_dir)
    rel = []
    for o in outputs:
        p = Path(o)
        p = p if not p.is_absolute() else p.relative_to(stage_dir)
        if not (stage_dir / p).exists():
            raise FileNotFoundError(f"stage {name}: declared output {stage_dir / p} does not exist")
        rel.append(str(p))
    from ddval import __version__

    return write_json(
        record_path(stage_dir, name),
        {"stage": name, "params_hash": param_hash(params), "outputs": sorted(rel), "ddval": __version__},
    )


def run_stage(
    stage_dir: str | os.PathLike,
    name: str,
    params: Any,
    compute: Callable[[], Iterable[str | os.PathLike]],
    *,
    force: bool = False,
) -> StageResult:
    """Run ``compute`` unless stage ``name`` is complete with ``params``; record completion.

    ``compute`` returns the paths it wrote (absolute or relative to ``stage_dir``). A stale or
    incomplete stage is re-run with a log message saying why; the previous record is removed
    first, so a crash in between never leaves outputs that look complete.
    """
    stage_dir = Path(stage_dir)
    status = "missing" if force else stage_status(stage_dir, name, params)
    h = param_hash(params)
    if status == "complete":
        outputs = tuple(stage_dir / o for o in read_json(record_path(stage_dir, name))["outputs"])
        log.info("stage %s: complete (params %s), skipped", name, h)
        return StageResult(name, True, outputs, h)
    if status in {"stale", "incomplete"}:
        log.warning("stage %s in %s is %s; recomputing", name, stage_dir, status)
    record_path(stage_dir, name).unlink(missing_ok=True)
    stage_dir.mkdir(parents=True, exist_ok=True)
    outputs = [Path(o) if Path(o).is_absolute() else stage_dir / o for o in compute()]
    mark_complete(stage_dir, name, params, outputs)
    return StageResult(name, False, tuple(outputs), h)
