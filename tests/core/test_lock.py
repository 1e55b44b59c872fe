"""One writer per results folder (issue 17, case 5): a second writer is refused with the holder named;
a lock left by a writer that died is detected and taken over. The holders are real processes."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ddval.lock import HELD_ENV, HOLDER_NAME, ResultsLockedError, results_lock

LIB = str(Path(__file__).parents[2] / "lib")
HOLD = """
import os, sys, time
from ddval.lock import results_lock
with results_lock(sys.argv[1], command="ddval reproduce --preset demo"):
    print("held", flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), 9)  # like kill -9 or a lost node: no clean-up at all
    time.sleep(60)
"""


def holder(folder: Path, how: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=LIB)
    env.pop(HELD_ENV, None)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), how], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, monkeypatch):
    monkeypatch.delenv(HELD_ENV, raising=False)
    proc = holder(tmp_path, "hold")
    try:
        with pytest.raises(ResultsLockedError) as err:
            with results_lock(tmp_path):
                pass
        text = str(err.value)
        assert f"{tmp_path} is in use by pid {proc.pid} on {platform.node()}" in text
        assert "`ddval reproduce --preset demo`, started 20" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    with results_lock(tmp_path):  # released when its holder ended
        note = json.loads((tmp_path / HOLDER_NAME).read_text())
        assert note["pid"] == os.getpid() and os.environ[HELD_ENV] == str(tmp_path.resolve())
    assert not (tmp_path / HOLDER_NAME).exists() and HELD_ENV not in os.environ


def test_a_lock_left_by_a_killed_writer_is_detected_and_taken_over(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(HELD_ENV, raising=False)
    proc = holder(tmp_path, "die")
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert json.loads((tmp_path / HOLDER_NAME).read_text())["pid"] == proc.pid  # its note is still there
    with results_lock(tmp_path):
        pass
    err = capsys.readouterr().err
    assert f"the previous writer of {tmp_path}, pid {proc.pid} on {platform.node()}" in err
    assert "ended without releasing its lock (crashed or killed); taking over" in err


def test_children_of_the_holder_do_not_lock_again(tmp_path, monkeypatch):
    monkeypatch.delenv(HELD_ENV, raising=False)
    code = f"from ddval.lock import results_lock\nwith results_lock({str(tmp_path)!r}):\n    print('ok')"
    with results_lock(tmp_path):
        child = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=LIB),
            timeout=60,
        )  # inherits $DDVAL_LOCK_HELD
        assert child.stdout.strip() == "ok", child.stderr
        stranger_env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
        stranger = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=dict(stranger_env, PYTHONPATH=LIB),
            timeout=60,
        )
        assert stranger.returncode != 0 and f"is in use by pid {os.getpid()}" in stranger.stderr
