"""Stage completion records (resume), over the atomic writes of :mod:`ddval.atomic` (re-exported here).
Where things live: :mod:`ddval.layout`.

A stage writes its outputs, then a completion record ``.<stage>.done.json`` holding the hash of its
parameters (:mod:`ddval.hashing`, re-exported here) and the size and SHA-256 of every output it vouches
for. :func:`run_stage` skips a stage only when its record has the same parameter hash and every output
still holds what the record says (:mod:`ddval.verify`); otherwise it says why (naming the file), removes
the outputs of the old record and runs the stage again. Every write goes to a temporary file in the same
folder and is renamed into place, so a killed process never leaves a half-written file under the final name.

``ddval run --force`` redoes the stages inside the forced tasks too: ``$DDVAL_FORCE`` names a folder,
and every stage whose folder lies inside it runs again (once per process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddval import verify
from ddval.atomic import (
    atomic_path,
    read_json,
    read_table,
    write_bytes,
    write_json,
    write_npz,
    write_table,
    write_table_and_report,
    write_text,
)
from ddval.hashing import OMIT_DEFAULT, param_hash, plain_data
from ddval.verify import file_sha256


__all__ = [
    "FORCE_ENV",
    "OMIT_DEFAULT",
    "StageResult",
    "StaleOutputError",
    "atomic_path",
    "file_sha256",
    "is_complete",
    "mark_complete",
    "param_hash",
    "plain_data",
    "read_json",
    "read_table",
    "record_outputs",
    "record_path",
    "require_record",
    "run_stage",
    "stage_check",
    "stage_status",
    "verify_file",
    "verify_outputs",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_table",
    "write_table_and_report",
    "write_text",
]

log = logging.getLogger(__name__)

#: Environment variable naming the folder whose stages a forced run redoes (set for forced tasks).
FORCE_ENV = "DDVAL_FORCE"


# --------------------------------------------------------------------------------------------
# Stage completion records
# --------------------------------------------------------------------------------------------


class StaleOutputError(RuntimeError):
    """An output does not hold what its completion record vouches for (or no record vouches for it);
    the message names the file."""


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


def _stamps_path(stage_dir: str | os.PathLike, name: str) -> Path:
    """The ``DDVAL_VERIFY=fast`` cache beside a record (not a record: task records never list it)."""
    return Path(stage_dir) / f".{name}.verified.json"


def record_outputs(record: dict) -> list[str]:
    """The outputs a record vouches for (paths relative to its folder)."""
    outputs = record.get("outputs", {})
    return sorted(outputs) if isinstance(outputs, dict) else list(outputs)


def require_record(stage_dir: str | os.PathLike, name: str, what_to_run: str) -> dict:
    """The completion record of an earlier stage ``name``; ``FileNotFoundError`` naming the record and
    ``what_to_run`` (e.g. "run notebook 03 first") when that stage has not finished."""
    record = record_path(stage_dir, name)
    if not record.exists():
        raise FileNotFoundError(f"{record} not found: {what_to_run}")
    return read_json(record)


def stage_check(stage_dir: str | os.PathLike, name: str, params: Any) -> tuple[str, str]:
    """``(status, why)``: ``"complete"``; ``"missing"`` (never finished); ``"stale"`` (other parameters,
    an output that differs from its record, or a record without checksums); ``"incomplete"`` (an
    output has disappeared). ``why`` names the file."""
    rec = record_path(stage_dir, name)
    if not rec.exists():
        return "missing", f"{rec.name} not found"
    try:
        data = read_json(rec)
    except (OSError, ValueError) as exc:
        return "stale", f"{rec} unreadable ({exc})"
    if data.get("params_hash") != param_hash(params):
        return "stale", f"{rec} was written with other parameters"
    outputs = data.get("outputs", {})
    if not isinstance(outputs, dict):
        return "stale", f"{rec} has no checksums (written by an older ddval)"
    seen = verify.read_stamps(_stamps_path(stage_dir, name))
    for rel, expected in sorted(outputs.items()):
        problem = verify.difference(_joined(stage_dir, rel), expected, seen)
        if problem is not None:
            return ("incomplete" if problem.endswith(" is missing") else "stale"), problem
    return "complete", "every output matches its record"


def stage_status(stage_dir: str | os.PathLike, name: str, params: Any) -> str:
    """The status of :func:`stage_check` (``complete``, ``missing``, ``stale`` or ``incomplete``)."""
    return stage_check(stage_dir, name, params)[0]


def is_complete(stage_dir: str | os.PathLike, name: str, params: Any) -> bool:
    """True when stage ``name`` finished with these parameters and its outputs hold what it recorded."""
    return stage_status(stage_dir, name, params) == "complete"


def verify_outputs(stage_dir: str | os.PathLike, name: str, paths: Iterable[str | os.PathLike] | None = None) -> None:
    """Raise :class:`StaleOutputError` naming the file unless every output of stage ``name`` (or each of
    ``paths``, which the record must list) holds exactly what its completion record vouches for.
    Call it before publishing an output (e.g. pinning it to IPFS)."""
    rec = record_path(stage_dir, name)
    if not rec.exists():
        raise StaleOutputError(f"{rec} not found: stage {name!r} in {stage_dir} has not finished")
    outputs = read_json(rec).get("outputs", {})
    if not isinstance(outputs, dict):
        raise StaleOutputError(f"{rec} has no checksums (written by an older ddval); run the stage again")
    wanted = record_outputs({"outputs": outputs}) if paths is None else [_relative(stage_dir, p) for p in paths]
    seen = verify.read_stamps(_stamps_path(stage_dir, name))
    for rel in wanted:
        if rel not in outputs:
            raise StaleOutputError(f"{Path(stage_dir) / rel} is not an output of {rec}")
        problem = verify.difference(_joined(stage_dir, rel), outputs[rel], seen)
        if problem is not None:
            raise StaleOutputError(problem)


def verify_file(path: str | os.PathLike, levels: int = 4) -> Path:
    """Raise :class:`StaleOutputError` unless a completion record in ``path``'s folder or one of the
    ``levels`` folders above it vouches for ``path`` and it matches; returns that record."""
    path = Path(path).resolve()
    for folder in list(path.parents)[: levels + 1]:
        for rec in sorted(folder.glob(".*.done.json")):
            outputs = read_json(rec).get("outputs", {})
            rel = os.path.relpath(path, folder)
            if isinstance(outputs, dict) and rel in outputs:
                verify_outputs(folder, rec.name[1 : -len(".done.json")], [rel])
                return rec
    raise StaleOutputError(f"{path}: no completion record vouches for it (in its folder or {levels} above)")


def _joined(stage_dir: str | os.PathLike, rel: str) -> Path:
    """``stage_dir / rel`` without ``..`` (a task record lists stage records of sibling folders)."""
    return Path(os.path.normpath(Path(stage_dir) / rel))


def _relative(stage_dir: str | os.PathLike, path: str | os.PathLike) -> str:
    p = Path(path)
    return str(p.relative_to(stage_dir) if p.is_absolute() else p)


def mark_complete(stage_dir: str | os.PathLike, name: str, params: Any, outputs: Iterable[str | os.PathLike]) -> Path:
    """Write the completion record: the parameter hash and the size and SHA-256 of every output
    (stored relative to ``stage_dir``)."""
    stage_dir = Path(stage_dir)
    rel = {}
    for o in outputs:
        r = _relative(stage_dir, o)
        if not (stage_dir / r).exists():
            raise FileNotFoundError(f"stage {name}: declared output {stage_dir / r} does not exist")
        rel[r] = verify.fingerprint(stage_dir / r)
    from ddval import __version__

    write_json(_stamps_path(stage_dir, name), verify.stamps([stage_dir / r for r in rel]))
    return write_json(
        record_path(stage_dir, name),
        {"stage": name, "params_hash": param_hash(params), "outputs": rel, "ddval": __version__},
    )


_forced_here: set[tuple[str, str]] = set()


def _forced(stage_dir: Path, name: str) -> bool:
    """Whether ``$DDVAL_FORCE`` asks to redo this stage and this process has not redone it yet."""
    scope = os.environ.get(FORCE_ENV)
    if not scope:
        return False
    key = (str(stage_dir.resolve()), name)
    inside = stage_dir.resolve().is_relative_to(Path(scope).resolve())
    if not inside or key in _forced_here:
        return False
    _forced_here.add(key)
    return True


def run_stage(
    stage_dir: str | os.PathLike,
    name: str,
    params: Any,
    compute: Callable[[], Iterable[str | os.PathLike]],
    *,
    force: bool = False,
    resumable: Callable[[str], bool] | None = None,
) -> StageResult:
    """Run ``compute`` unless stage ``name`` is complete with ``params``; record completion.

    ``compute`` returns the paths it wrote (absolute or relative to ``stage_dir``). A stale,
    incomplete or forced stage is re-run with a log message saying why (naming the file). The
    previous record is removed first, so a crash in between never leaves outputs that look complete;
    when ``compute`` fails, the outputs of the previous record that it did not rewrite are removed
    too, so no reader takes them for this run's result.

    ``resumable`` (a test on paths relative to ``stage_dir``) marks outputs that ``compute`` resumes
    from instead of rewriting, such as the resized scans: those of the previous record that no longer
    hold what it vouched for are removed before ``compute`` runs (nothing resumes from a damaged
    file), and a failed run keeps the intact ones for the next run to resume from.
    """
    stage_dir = Path(stage_dir)
    status, why = ("forced", "forced") if force or _forced(stage_dir, name) else stage_check(stage_dir, name, params)
    h = param_hash(params)
    record = record_path(stage_dir, name)
    if status == "complete":
        outputs = tuple(stage_dir / o for o in record_outputs(read_json(record)))
        log.info("stage %s: complete (params %s), skipped", name, h)
        return StageResult(name, True, outputs, h)
    if status != "missing":
        log.warning("stage %s in %s is %s (%s); recomputing", name, stage_dir, status, why)
    previous = _recorded_outputs(record)
    record.unlink(missing_ok=True)
    kept = {rel: fp for rel, fp in previous.items() if resumable is not None and resumable(rel)}
    _remove_damaged(stage_dir, kept)
    stage_dir.mkdir(parents=True, exist_ok=True)
    try:
        outputs = [Path(o) if Path(o).is_absolute() else stage_dir / o for o in compute()]
    except BaseException:
        _remove_unchanged(stage_dir, {rel: fp for rel, fp in previous.items() if rel not in kept})
        raise
    mark_complete(stage_dir, name, params, outputs)
    return StageResult(name, False, tuple(outputs), h)


def _recorded_outputs(record: Path) -> dict[str, Any]:
    """What a (possibly outdated) record vouched for: ``{relative path: fingerprint}``."""
    try:
        outputs = read_json(record).get("outputs", {}) if record.exists() else {}
    except (OSError, ValueError):
        return {}
    return outputs if isinstance(outputs, dict) else {}


def _remove_damaged(stage_dir: Path, previous: dict[str, Any]) -> None:
    """Delete the outputs of an outdated record that exist but no longer hold what it vouched for."""
    for rel, expected in previous.items():
        path = _joined(stage_dir, rel)
        problem = verify.difference(path, expected) if path.exists() else None
        if problem is not None:
            log.warning("%s; removed, so that the stage writes it again", problem)
            path.unlink()


def _remove_unchanged(stage_dir: Path, previous: dict[str, Any]) -> None:
    """Delete the outputs of an outdated record that still hold exactly the old content."""
    for rel, expected in previous.items():
        path = _joined(stage_dir, rel)
        if verify.difference(path, expected) is None:
            path.unlink()
