"""One writer per results folder: a lock every writing command takes on ``<results>/<preset>/``.

``ddval reproduce``, ``submit``, ``manifest`` and ``run-task`` hold :func:`results_lock` while they
write. A second command on the same folder stops at once with an error naming the holder (process
id, host, command, start time) instead of writing the same files: two runs sharing the cohort's
temporary folder once deleted each other's files and recorded a cohort with 313 of 2,252 images.

The lock is an operating-system file lock (``filelock``), so the kernel releases it when its holder
dies, however it dies. Beside it, ``.ddval.lock.json`` names the holder; a run that finds that note
while the lock itself is free knows its writer ended without cleaning up (crash, ``kill -9``, a lost
node), says so, and takes over. Processes a holder starts (the runner's task subprocesses and
notebook kernels) inherit ``$DDVAL_LOCK_HELD`` and do not lock again; SLURM array tasks, which run
side by side under one submission, lock only their own task (``<executed notebook>.lock``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from ddval.store import write_json

log = logging.getLogger(__name__)

#: Lock file and holder note in the locked folder.
LOCK_NAME = ".ddval.lock"
HOLDER_NAME = ".ddval.lock.json"
#: Set for the children of a lock holder: the folder whose lock their parent holds.
HELD_ENV = "DDVAL_LOCK_HELD"


class ResultsLockedError(RuntimeError):
    """Another ddval command holds the lock of this results folder; the message names it."""


def describe_holder(holder: dict) -> str:
    """``pid 123 on node7 (`ddval reproduce --preset demo`, started 2026-01-02T03:04:05+0000)``."""
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (`{holder.get('command', '?')}`, "
        f"started {holder.get('started', '?')})"
    )


def held_by_parent(folder: str | os.PathLike) -> bool:
    """True when this process runs under a command that holds the lock of ``folder``."""
    held = os.environ.get(HELD_ENV)
    return bool(held) and Path(held).resolve() == Path(folder).resolve()


@contextlib.contextmanager
def results_lock(folder: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold the lock of ``folder`` (created when missing) for the duration of the block.

    Raises :class:`ResultsLockedError` naming the holder when another process has it. A holder note
    left by a writer that died is reported and replaced. Re-entrant for the holder's children
    (``$DDVAL_LOCK_HELD``).
    """
    folder = Path(folder).resolve()
    if held_by_parent(folder):
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(folder / LOCK_NAME, timeout=0)
    note = folder / HOLDER_NAME
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = _read_note(note)
        who = describe_holder(holder) if holder else "another process (no holder note)"
        raise ResultsLockedError(
            f"{folder} is in use by {who}; wait for it to finish, stop it, or use another --results folder"
        ) from None
    try:
        stale = _read_note(note)
        if stale:
            print(
                f"ddval: note: the previous writer of {folder}, {describe_holder(stale)}, ended without releasing "
                "its lock (crashed or killed); taking over",
                file=sys.stderr,
                flush=True,
            )
        write_json(note, _me(command))
        previous, os.environ[HELD_ENV] = os.environ.get(HELD_ENV), str(folder)
        try:
            yield
        finally:
            _restore(previous)
            note.unlink(missing_ok=True)
    finally:
        lock.release()


@contextlib.contextmanager
def task_lock(output: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of one task (next to its executed notebook): the same manifest row never runs
    twice at once, e.g. a SLURM task and a re-submitted copy of it."""
    path = Path(str(output) + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ResultsLockedError(f"task {output} is already running (lock {path})") from None
    try:
        yield
    finally:
        lock.release()


def _me(command: str | None) -> dict:
    return {
        "pid": os.getpid(),
        "host": platform.node(),
        "command": command or shlex.join(["ddval", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _read_note(note: Path) -> dict:
    try:
        return json.loads(note.read_text())
    except (OSError, ValueError):
        return {}


def _restore(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(HELD_ENV, None)
    else:
        os.environ[HELD_ENV] = previous
