"""JupyterLab on the project's environment (`make lab`): it serves /lab, offers the `ddval` kernel and the
widget extension, and ddval.progress shows tqdm's notebook widget inside a kernel."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from ddval.config import repo_root

TOKEN = "ddval-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.fixture
def lab(tmp_path: Path):
    """`jupyter lab` as `make lab` starts it (notebooks/ as root), on a free port; stopped afterwards."""
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        jupyter = Path(shutil.which("jupyter") or "jupyter")
    port = _free_port()
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--allow-root", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
         "--notebook-dir", str(repo_root() / "notebooks")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                if _get(f"{base}/api/status")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within 90 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_lab_serves_lab_with_ddval_kernel_and_widgets(lab):
    status, body = _get(f"{lab}/lab")
    assert status == 200 and b"JupyterLab" in body
    specs = json.loads(_get(f"{lab}/api/kernelspecs")[1])["kernelspecs"]
    assert "ddval" in specs, f"kernel `ddval` missing (make env installs it); have {sorted(specs)}"
    extensions = [e["name"] for e in json.loads(_get(f"{lab}/lab/api/extensions")[1])]
    assert "jupyter-widgets-jupyterlab-manager" in extensions  # renders tqdm's notebook bars
    names = [c["name"] for c in json.loads(_get(f"{lab}/api/contents")[1])["content"]]
    assert "06_figures.ipynb" in names


def test_progress_is_a_widget_in_a_kernel(monkeypatch):
    monkeypatch.delenv("DDVAL_PROGRESS", raising=False)  # the default a JupyterLab user gets
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute("from ddval.progress import progress\nfor _ in progress(range(3), desc='x'):\n    pass")
        outputs = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("display_data", "stream", "error"):
                outputs.append(msg["content"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1, outputs  # not the text fallback ("IProgress not found")
    assert not [o for o in outputs if o.get("name") == "stderr"], outputs
