"""Reloading the page of a running notebook restores the Explorer, every time: a stress run in JupyterLab
and headless Chromium (driven by Playwright), `RELOADS` reloads in a row (`XCAM_RELOADS` overrides).

Heavy (`make test-heavy`): each reload costs a widget restore of the Explorer's ~150 widgets; on a loaded
2-core machine the run takes 5-15 minutes. `test_browser.py` reloads once in the ordinary suite. A
reload that shows "Error displaying widget" (or no map) fails with a screenshot in
`test-artifacts/browser/reload/` and the page's console errors. Needs Chromium as `test_browser.py` does.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from browser_helpers import ARTIFACTS, Server, kernel_idle, run_notebook_in_page, screenshot, wait_for
from browser_js import JS_FIND_EXPLORER, JS_HEATMAP, JS_WIDGET_ERRORS

HERE = ARTIFACTS / "reload"
NOTEBOOK = "reload.ipynb"
RELOADS = int(os.environ.get("XCAM_RELOADS", "20"))
RUN_TIMEOUT = 300  # s: kernel start, imports and the Explorer's first capture on a loaded 2-core machine
RELOAD_TIMEOUT = 240  # s: a whole reload (page, kernel connection, widget restore, figures drawn)

# The Explorer as the quick start builds it, then a change of class from code: a second state, so a
# reload that drew the figure as it was created (not as it is now) would show.
CELLS = [
    """\
import torch
torch.set_num_threads(1)
import xcam_widgets as xw

explorer = xw.Explorer()
explorer""",
    """\
explorer.wait()
explorer.target.value = explorer.target.options[1][1]
explorer.wait()
print("TITLE", explorer.overlay.layout.title.text)""",
]

pytestmark = pytest.mark.heavy


def _explorer_map(page) -> dict | None:
    """The Explorer's heatmap once it is drawn; None before (a 1x1 blank or nothing yet)."""
    if not page.evaluate(JS_FIND_EXPLORER):
        return None
    heat = page.evaluate(JS_HEATMAP)
    return heat if heat and heat["rows"] > 1 and heat["title"] and heat["painted"] else None


def _title(page) -> str | None:
    for text in page.locator(".jp-CodeCell .jp-OutputArea-output").all_inner_texts():
        match = re.search(r"^TITLE (.+)$", text.strip(), re.M)
        if match:
            return match.group(1)
    return None


def _restored(page, server: Server, console: list[str], what: str) -> dict:
    """The drawn map, or a failure (with a screenshot and the console's errors) as soon as a widget
    output shows an error."""

    def done():
        errors = page.evaluate(JS_WIDGET_ERRORS)
        if errors:
            screenshot(page, HERE, f"error-{what}")
            pytest.fail(f"{what}: a widget output shows {errors!r}; console errors: {console[-10:]!r}")
        return _explorer_map(page)

    return wait_for(page, done, what, RELOAD_TIMEOUT, server, HERE)


def test_every_reload_restores_the_explorer(notebook_browser, notebook_server):
    base, token, server = notebook_server
    page, errors = run_notebook_in_page(notebook_browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}", server, HERE)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    try:
        title = wait_for(page, lambda: _title(page), "the second cell's title", RUN_TIMEOUT, server, HERE)
        _restored(page, server, console, "the first map")

        def second_state():
            shown = _explorer_map(page)
            return shown if shown and shown["title"] == title else None

        before = wait_for(page, second_state, "the second class's map", RELOAD_TIMEOUT, server, HERE)
        page.locator(".jp-Notebook").first.click()
        page.keyboard.press("Control+s")
        wait_for(page, lambda: page.locator(".jp-mod-dirty").count() == 0, "the save", 60, server, HERE)
        seconds = []
        for i in range(RELOADS):
            start = time.monotonic()
            page.reload(wait_until="domcontentloaded", timeout=120_000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            wait_for(page, lambda: kernel_idle(page), f"the kernel after reload {i + 1}", 120, server, HERE)
            shown = _restored(page, server, console, f"reload {i + 1}")
            seconds.append(time.monotonic() - start)
            assert shown["title"] == before["title"] == title, f"reload {i + 1} shows another state"
            assert shown["z"] == before["z"], f"reload {i + 1} shows a stale map"
        print(f"{RELOADS} reloads restored the Explorer; seconds each: {[round(s, 1) for s in seconds]}")
        assert not [e for e in errors if "pageerror" in e], errors
    finally:
        page.close()
