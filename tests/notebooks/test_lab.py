"""JupyterLab on the project's environment (`make lab`): it serves /lab at the repository root, offers the
`ddval` kernel and the widget extension, and ddval.progress shows tqdm's notebook widget inside a kernel."""

from __future__ import annotations

import json

from jupyter_client.manager import start_new_kernel


def test_lab_serves_lab_with_ddval_kernel_and_widgets(lab):
    status, body = lab.get("/lab")
    assert status == 200 and b"JupyterLab" in body
    specs = json.loads(lab.get("/api/kernelspecs")[1])["kernelspecs"]
    assert "ddval" in specs, f"kernel `ddval` missing (make env installs it); have {sorted(specs)}"
    assert specs["ddval"]["spec"]["display_name"] == "Python (ddval)"
    extensions = [e["name"] for e in json.loads(lab.get("/lab/api/extensions")[1])]
    assert "jupyter-widgets-jupyterlab-manager" in extensions  # renders tqdm's notebook bars


def test_lab_opens_at_the_repository_root(lab):
    """README, results and docs are reachable from the file browser; the notebooks one click away."""
    names = {c["name"] for c in json.loads(lab.get("/api/contents")[1])["content"]}
    assert {"README.md", "results", "docs", "notebooks"} <= names
    notebooks = {c["name"] for c in json.loads(lab.get("/api/contents/notebooks")[1])["content"]}
    assert "06_figures.ipynb" in notebooks


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
