"""Where results go: an explicit root, else $DDVAL_RESULTS, else results/ of the checkout the user runs
in, never the checkout the package is installed from (two clones may share one environment)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from ddval import layout
from ddval import summary as S

PACKAGE = Path(layout.__file__).resolve().parents[1]  # the lib/ folder this test imports ddval from
FIXTURES = Path(__file__).resolve().parents[1] / "plots" / "fixtures" / "results"


def _clone(root: Path) -> Path:
    """A second checkout: the two marker folders, notebooks/ and the shipped tables (no package)."""
    for folder in ("configs", "lib/ddval", "notebooks"):
        (root / folder).mkdir(parents=True)
    shutil.copytree(FIXTURES, root / "results")
    return root


def test_the_checkout_of_the_current_directory_wins_over_the_installed_one(tmp_path, monkeypatch):
    other = _clone(tmp_path / "other-clone")
    monkeypatch.delenv("DDVAL_RESULTS", raising=False)
    monkeypatch.chdir(other / "notebooks")
    assert layout.checkout_root() == other
    assert layout.results_root() == other / "results"
    assert S.ResultTables.open(None, "demo").root == other / "results"  # the shipped tables of that clone


def test_ddval_results_wins_over_the_checkout_and_an_explicit_root_over_both(tmp_path, monkeypatch):
    other = _clone(tmp_path / "other-clone")
    monkeypatch.chdir(other)
    monkeypatch.setenv("DDVAL_RESULTS", str(tmp_path / "scratch"))
    assert layout.results_root() == tmp_path / "scratch"
    assert layout.results_root(tmp_path / "given") == tmp_path / "given"


def test_outside_every_checkout_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DDVAL_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not inside a ddval checkout.*DDVAL_RESULTS"):
        layout.results_root()


def test_a_folder_with_only_one_marker_is_not_a_checkout(tmp_path):
    (tmp_path / "configs").mkdir()
    assert layout.checkout_root(tmp_path) is None


def test_a_kernel_in_a_second_clone_writes_into_that_clone(tmp_path):
    """The scenario of issue 13: a second clone shares the environment (its ddval is imported from this
    checkout); a kernel started in the clone's notebooks/ draws a figure from the shipped tables."""
    other = _clone(tmp_path / "other-clone")
    installed = PACKAGE.parent / "results" / "demo" / "figures" / "summary_flip_detection.csv"
    before = installed.stat().st_mtime_ns if installed.exists() else None
    env = {k: v for k, v in os.environ.items() if k != "DDVAL_RESULTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE), env.get("PYTHONPATH", "")])
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(other / "notebooks"), env=env)
    try:
        code = (
            "import ddval, ddval.layout\nfrom ddval import figures, summary\n"
            "t = summary.ResultTables.open(None, 'demo')\nr = figures.render(t, 'flip_detection')\n"
            "print(ddval.__file__); print(ddval.layout.results_root()); print(r.files[0])"
        )
        reply = kc.execute_interactive(code, timeout=120, output_hook=_collect(out := []))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", out
    package, root, written = "".join(out).split()
    assert Path(package).resolve().is_relative_to(PACKAGE)  # the package of this checkout ...
    assert Path(root) == other / "results"  # ... writes into the clone it runs in
    assert Path(written) == other / "results" / "demo" / "figures" / "summary_flip_detection.csv"
    assert Path(written).exists()
    assert (installed.stat().st_mtime_ns if installed.exists() else None) == before  # nothing written there


def _collect(out: list[str]):
    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    return hook
