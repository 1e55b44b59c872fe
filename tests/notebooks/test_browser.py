"""The notebooks as a reader meets them: JupyterLab (`make lab`) driven by Debian's Chromium through
Playwright. Opens 06_figures and 01_index, runs all cells from the menu, waits for the kernel to be idle and
checks what the page shows: no stderr or traceback, every figure drawn at a readable size, tables rounded,
the kernel "Python (ddval)". Screenshots go to ``<results>/screenshots`` (CI keeps them as artifacts).

Needs ``/usr/bin/chromium`` (`.ci/run` installs Debian's ``chromium``) and the ``playwright`` package
(requirements.txt); no browser is downloaded. Without them the test is skipped, unless
``DDVAL_REQUIRE_BROWSER=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DDVAL_CHROMIUM", "/usr/bin/chromium")
#: Headless Chromium as root in a container: no sandbox, no GPU, /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1500, "height": 1000}
RUN_TIMEOUT_S = 120
REPO = Path(__file__).resolve().parents[2]
#: A number printed with more decimals than any table of the notebooks shows (4).
UNROUNDED = re.compile(r"(?<![\d.])-?\d+\.\d{5,}(?![\d.])")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    missing = [] if Path(CHROMIUM).exists() else [f"no Chromium at {CHROMIUM} (apt-get install chromium)"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("no playwright package (pip install -r requirements.txt)")
    if missing:
        if os.environ.get("DDVAL_REQUIRE_BROWSER") == "1":
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(lab) -> Path:
    folder = lab.results / "screenshots"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _open_and_run(browser, lab, notebook: str):
    """A fresh page with ``notebook`` open (layout reset), every cell run from the Run menu, kernel idle."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{lab.url}/lab/tree/{notebook}?reset&token={lab.token}")
    n_code = sum(c["cell_type"] == "code" for c in json.loads((REPO / notebook).read_text())["cells"])
    # every cell loaded and the kernel connected: the indicator says idle before the kernel is attached
    page.wait_for_function(_READY_JS, arg=n_code, timeout=90_000, polling=500)
    # the committed outputs first go, so that what is checked below is what this run drew
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(_NONE_RUN_JS, timeout=10_000)
    _menu(page, "Run", "Run All Cells")
    page.wait_for_function(_ALL_RUN_JS, timeout=RUN_TIMEOUT_S * 1000, polling=500)
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()
    return page


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


_PROMPTS_JS = "[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]"
#: True when every code cell has an execution count and the kernel is idle (JupyterLab keeps every
#: cell in the DOM, also the ones scrolled out of view, in its default windowing mode).
_ALL_RUN_JS = f"""() => {{
  const prompts = {_PROMPTS_JS};
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)) && status === 'idle';
}}"""
#: True when all ``n`` code cells are on the page and the status bar shows the kernel connected and idle.
_READY_JS = f"""n => {{
  const items = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.textContent.trim());
  return {_PROMPTS_JS}.length === n && items.some(t => / \\| Idle$/.test(t));
}}"""
#: True when no code cell shows an execution count (outputs cleared).
_NONE_RUN_JS = f"() => {{ const p = {_PROMPTS_JS}; return p.length > 0 && !p.some(x => /\\d/.test(x.textContent)); }}"


def _check_outputs(page) -> dict:
    """What the notebook shows: stderr/error outputs, figure sizes, table text, kernel name."""
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    images = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img")
    sizes = []
    for i in range(images.count()):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        box = img.bounding_box()
        natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.complete]")
        sizes.append((box["width"], box["height"], *natural))
    # textContent, not innerText: cells scrolled out of view are not laid out (content-visibility)
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output table").evaluate_all(
        "ts => ts.flatMap(t => [...t.querySelectorAll('td, th')].map(c => c.textContent))"
    )
    return {
        "n_outputs": outputs.count(),
        "errors": [errors.nth(i).text_content() for i in range(errors.count())],
        "text": "\n".join(outputs.nth(i).text_content() for i in range(outputs.count())),
        "sizes": sizes,
        "table_cells": cells,
        "kernel": page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName").first.inner_text(),
    }


def _assert_reads_well(seen: dict, n_figures: int) -> None:
    assert seen["errors"] == [], f"stderr/error outputs: {seen['errors']}"
    assert "Traceback" not in seen["text"]
    assert seen["kernel"] == "Python (ddval)"
    assert len(seen["sizes"]) == n_figures, seen["sizes"]
    for width, height, natural_w, natural_h, complete in seen["sizes"]:
        assert complete and natural_w >= 300 and natural_h >= 200  # decoded, a real figure
        assert width >= 300 and height >= 150  # drawn at a readable size on the page
    unrounded = [c for c in seen["table_cells"] if UNROUNDED.search(c)]
    assert not unrounded, f"unrounded numbers in tables: {unrounded[:5]}"


def _scroll_to_output(page, text: str):
    """The output cell that follows the markdown cell starting with ``text``, scrolled into view."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell", has_text=text).first
    cell.scroll_into_view_if_needed()
    cell.evaluate("c => c.scrollIntoView({block: 'start'})")
    time.sleep(0.5)  # let the scroll settle before the screenshot
    return cell


def test_figures_notebook_in_the_browser(browser, lab, shots):
    page = _open_and_run(browser, lab, "notebooks/06_figures.ipynb")
    try:
        seen = _check_outputs(page)
        _assert_reads_well(seen, n_figures=12)  # the demo's 10 and the benchmark's 2
        assert "extrapolated" in seen["text"] and "≈" in seen["text"]  # the scalability table says so
        assert "(relative to the repository root)" in seen["text"]  # the last cell says where figures are
        page.screenshot(path=shots / "06_figures_top.png")
        _scroll_to_output(page, "Wall time and number of coalition-utility evaluations")
        page.screenshot(path=shots / "06_figures_scalability.png")
        _scroll_to_output(page, "Paying many recipients")
        page.screenshot(path=shots / "06_figures_payout.png")
        _scroll_to_output(page, "Mean ± 95 % t-CI over seeds, in percentage points")
        page.screenshot(path=shots / "06_figures_institution_values.png")
    finally:
        page.close()


def test_index_notebook_in_the_browser(browser, lab, shots):
    page = _open_and_run(browser, lab, "notebooks/01_index.ipynb")
    try:
        seen = _check_outputs(page)
        _assert_reads_well(seen, n_figures=0)
        assert re.search(r"data: \d+ scans of \d+ patients", seen["text"])
        assert (lab.results / "demo" / "data" / "index.parquet").exists()  # in the scratch results, not the checkout
        page.screenshot(path=shots / "01_index.png")
    finally:
        page.close()
