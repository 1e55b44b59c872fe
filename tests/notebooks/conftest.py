"""JupyterLab as a reader starts it: `make lab` in this checkout, on a free port with a token, its
settings and workspaces in a scratch folder (a fresh user), stopped after the session."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 90


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token, server log and the results folder its kernels use."""

    url: str
    token: str
    log: Path
    results: Path

    def get(self, path: str) -> tuple[int, bytes]:
        """``GET <url><path>`` with the token; ``(status, body)``."""
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    """`make lab` with LAB_ARGS for port and token. Kernels inherit ``$DDVAL_RESULTS`` (the test session's
    scratch results; a fresh one when unset), so notebooks that run stages never write into the checkout."""
    if not (REPO / ".venv" / ".ddval-installed").exists():
        pytest.fail("no environment: run `make env` first (the test suite installs nothing)")
    scratch = tmp_path_factory.mktemp("lab")
    write_settings(scratch / "settings")
    results = Path(os.environ.get("DDVAL_RESULTS") or scratch / "results")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "DDVAL_RESULTS": str(results),
        "DDVAL_PROGRESS": "off",
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
    }
    log_path = scratch / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                "make",
                "-s",
                "-C",
                str(REPO),
                "lab",
                f"LAB_ARGS=--port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Lab(f"http://127.0.0.1:{port}", token, log_path, results)
    try:
        _wait_until_up(server, proc)
        yield server
    finally:
        _stop(proc)


#: Settings of the fresh user: never save the committed notebooks back (JupyterLab autosaves every 2 min),
#: no news/update toast over the page (the test machine has no internet anyway).
LAB_SETTINGS = {
    "docmanager-extension/plugin": {"autosave": False},
    "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def write_settings(settings: Path) -> None:
    """:data:`LAB_SETTINGS` as JupyterLab user settings under ``settings``."""
    for name, values in LAB_SETTINGS.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_up(server: Lab, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make lab exited with {proc.returncode}: {server.log.read_text()[-2000:]}")
        try:
            if server.get("/api/status")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {STARTUP_S} s: {server.log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop make and JupyterLab (the process group this fixture started; JupyterLab shuts its kernels
    down on SIGTERM), killing what is still there after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.2)
        proc.poll()  # reap make
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
