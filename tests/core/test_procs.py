"""Workers die with their parent (issue 17, case 8): a pool worker of a process killed with kill -9
is killed by the kernel instead of writing on into the results folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LIB = str(Path(__file__).parents[2] / "lib")
PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from ddval.procs import die_with_parent

def work(path):
    while True:  # writes on for as long as it lives
        with open(path, "a") as fh:
            fh.write(".")
        time.sleep(0.05)

if __name__ == "__main__":
    guard = sys.argv[2] == "guarded"
    kw = {"initializer": die_with_parent, "initargs": (os.getpid(),)} if guard else {}
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(sys.argv[3]), **kw)
    pool.submit(work, sys.argv[1])
    print("started", flush=True)
    time.sleep(600)
"""


def _orphan_writes(tmp_path: Path, guarded: str, method: str) -> bool:
    """Kill -9 a process whose pool worker appends to a file; True when the file still grows after."""
    out = tmp_path / f"{guarded}-{method}.txt"
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), guarded, method],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=LIB, DDVAL_TEST_TAG=str(out)),
    )
    assert proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while not out.exists() or out.stat().st_size < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    size = out.stat().st_size
    time.sleep(1.0)
    grows = out.stat().st_size > size
    for pid in tagged(f"DDVAL_TEST_TAG={out}"):  # clean up an orphan we provoked
        os.kill(pid, signal.SIGKILL)
    return grows


def tagged(tag: str) -> list[int]:
    """Processes whose environment holds ``tag`` (every descendant inherits it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if tag.encode() + b"\0" in Path(f"/proc/{pid}/environ").read_bytes() + b"\0":
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_pool_workers_die_with_their_parent(tmp_path):
    for method in ("spawn", "fork"):  # the training pool spawns, the resize pool forks
        assert not _orphan_writes(tmp_path, "guarded", method), method


def test_without_the_guard_a_worker_outlives_its_parent(tmp_path):
    """The premise: an unguarded worker does keep writing (so the test above can fail)."""
    assert _orphan_writes(tmp_path, "unguarded", "fork")
