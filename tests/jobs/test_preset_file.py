"""Issue 17, case 1: a preset given as a YAML file (as the README and --help invite) works where a name
works. The figures notebook once built `<results>/<the YAML path>/figures` and skipped every figure."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).parents[2]


@pytest.fixture
def shipped_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped demo tables filed under a custom preset 'nihreal' given as a file elsewhere."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "demo", results / "nihreal", ignore=shutil.ignore_patterns("figures"))
    preset = tmp_path / "elsewhere" / "nihreal.yaml"
    preset.parent.mkdir()
    preset.write_text("extends: demo\n")
    return preset, results


def test_figures_notebook_with_a_preset_file(shipped_copy, tmp_path):
    import papermill

    from ddval.jobs.task import pythonpath_with_this_ddval

    preset, results = shipped_copy
    out = tmp_path / "06.ipynb"
    with pytest.MonkeyPatch.context() as mp:  # the kernel imports this checkout, quietly
        mp.setenv("PYTHONPATH", pythonpath_with_this_ddval(None))
        mp.setenv("DDVAL_PROGRESS", "off")
        papermill.execute_notebook(
            REPO / "notebooks" / "06_figures.ipynb",
            out,
            kernel_name="ddval",
            parameters={"preset": str(preset), "results_root": str(results)},
            cwd=str(REPO / "notebooks"),
            progress_bar=False,
        )
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in nbformat.read(out, as_version=4).cells
        for o in cell.get("outputs", [])
    )
    assert "skipped" not in text, text
    figures = results / "nihreal" / "figures"
    assert len(list(figures.glob("*.png"))) >= 10
    assert not (preset.parent / "nihreal.yaml").is_dir()
