"""notebooks/06_figures.ipynb: thin and parameterised, draws every figure from the fixture tables, and
re-executes to the same outputs under nbval with notebooks/sanitize.cfg."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill

from ddval.config import repo_root

NOTEBOOK = repo_root() / "notebooks" / "06_figures.ipynb"
SANITIZE = repo_root() / "notebooks" / "sanitize.cfg"


def test_notebook_is_thin_and_parameterised():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    params = {}
    exec(code[0].source, {}, params)  # plain assignments only
    assert params == {"preset": "demo", "results_root": None}
    assert nb.metadata["kernelspec"]["name"] == "ddval"
    assert sum(len(c.source.splitlines()) for c in code) <= 40


def _copy_tidy_tables(src: Path, dst: Path) -> None:
    """The result tables of a run (``seed-*/<setting>/<stage>/*.csv|parquet``, what results/ ships of it)."""
    for path in src.glob("seed-*/*/*/*"):
        if path.is_file() and path.suffix in {".csv", ".parquet"}:
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def test_notebook_draws_every_figure_and_passes_nbval(copied_root: Path, tmp_path: Path, monkeypatch):
    """The demo's 10 figures from the fixture tables and the benchmark's 2 (similarity, institution values)
    from the shipped results/benchmark tables, nothing skipped, no stderr, and the same outputs under nbval."""
    monkeypatch.setenv("DDVAL_PROGRESS", "off")
    _copy_tidy_tables(repo_root() / "results" / "benchmark", copied_root / "benchmark")
    out = tmp_path / "06_figures.ipynb"
    # python3: the kernel of the running interpreter (the committed notebook names `ddval`, which
    # `make env` installs; this test must not depend on that).
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"results_root": str(copied_root)},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOK.parent),
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs)
    assert len(pngs) == 10 + 2 and "skipped" not in text
    assert not [o for o in outputs if o.get("name") == "stderr"], "stderr in the figures notebook"
    figures = copied_root / "demo" / "figures"
    assert len(list(figures.glob("*.png"))) == len(list(figures.glob("*.pdf"))) == 10
    assert len(list(figures.glob("summary_*.csv"))) == 17  # 10 figures + 7 tables

    # nbval re-executes the papermill output (its injected-parameters cell included) and compares
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
