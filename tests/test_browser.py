"""The whole thing in a real browser: JupyterLab and Voilà serve the notebooks, headless Chromium
(driven by Playwright) runs them, and the Explorer is used through its own controls.

Needs Chromium: when it is missing and we are root, the tests install Debian's package
(`make browser-deps` does the same); they skip only when it cannot be had. Screenshots go to
`test-artifacts/browser/`; `docs/explorer-*.png` are written when missing, or refreshed with
XCAM_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import pytest
from browser_helpers import (
    ARTIFACTS,
    BIN,
    DOCS,
    REPO,
    Server,
    chromium_context,
    free_port,
    kernel_idle,
    lab_command,
    lab_settings,
    save_docs_screenshot,
    screenshot,
    server_env,
    wait_for,
)
from browser_js import JS_ERROR_OUTPUTS, JS_FIND_EXPLORER, JS_HEATMAP, JS_SELECT, JS_STATUS, JS_WIDGET_ERRORS

NOTEBOOK = "01_quickstart.ipynb"
EXPLORER_TIMEOUT = 240  # s: the first Explorer captures ~200 layers; a loaded 2-core machine is slow
CHANGE_TIMEOUT = 90  # s: a new class needs one forward and backward pass
# As in `make app`. Progressive rendering runs the cells through the page's own kernel connection, so
# the Explorer's first map (drawn by a background thread after the cell ends) reaches the page live.
VOILA_FLAGS = ["--progressive_rendering=True"]
UPDATE_DOCS = os.environ.get("XCAM_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """This run's screenshots and server logs only."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser(chromium, artifacts, tmp_path_factory):
    with chromium_context(chromium, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def lab(artifacts, tmp_path_factory):
    """JupyterLab on a free loopback port with a random token, serving a copy of `notebooks/`
    (so nothing the browser does can touch the committed notebooks)."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    lab_settings(home / "settings")
    port, token = free_port(), secrets.token_hex(16)
    command = lab_command(port, token, root, home)
    server = Server(command, ARTIFACTS / "jupyterlab.log", cwd=root, env=server_env(home))
    try:
        server.wait_until_up(f"http://127.0.0.1:{port}/api/status?token={token}")
        yield f"http://127.0.0.1:{port}", token, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def voila(artifacts, tmp_path_factory):
    """Voilà serving `notebooks/app.ipynb`, as `make app` does."""
    home = tmp_path_factory.mktemp("voila")
    port, token = free_port(), secrets.token_hex(16)
    command = [
        str(BIN / "voila"),
        str(REPO / "notebooks" / "app.ipynb"),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        f"--token={token}",
        "--show_tracebacks=True",
        *VOILA_FLAGS,
    ]
    server = Server(command, ARTIFACTS / "voila.log", cwd=REPO / "notebooks", env=server_env(home))
    try:
        server.wait_until_up(f"http://127.0.0.1:{port}/voila/static/index.css")
        yield f"http://127.0.0.1:{port}", token, server
    finally:
        server.stop()


# --- helpers ------------------------------------------------------------------------------------
def _shot(page, name: str) -> bytes:
    return screenshot(page, ARTIFACTS, name)


def _wait(page, predicate, what: str, timeout: float, server: Server | None = None, poll: float = 0.5):
    return wait_for(page, predicate, what, timeout, server, ARTIFACTS, poll)


def _heatmap(page) -> dict | None:
    page.evaluate(JS_FIND_EXPLORER)
    return page.evaluate(JS_HEATMAP)


def _drawn_heatmap(page) -> dict | None:
    """The Explorer's heatmap once it shows a computed map (the blank placeholder is 1x1 zeros)."""
    heat = _heatmap(page)
    return heat if heat and heat["rows"] > 1 and heat["title"] and heat["painted"] else None


def _select(page, label: str, option_text: str | None = None, index: int | None = None) -> str:
    """Choose an option of the Explorer's dropdown labelled `label`, as a user does: through its
    <select>. Returns the chosen option's text."""
    box = (
        page.locator('[data-test="explorer"] .widget-dropdown')
        .filter(has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$")))
        .first
    )
    select = box.locator("select")
    select.scroll_into_view_if_needed()
    if option_text is not None:
        select.select_option(label=option_text)
        return option_text
    text = select.locator("option").nth(index).text_content()
    select.select_option(index=index)
    return text


def _settled(page, before: dict, expect_in_title: str):
    """The heatmap after a change: a new z and a title that names the new state."""
    heat = _drawn_heatmap(page)
    if heat and heat["z"] != before["z"] and expect_in_title in heat["title"]:
        return heat
    return None


def _no_errors(page) -> None:
    errors = page.evaluate(JS_ERROR_OUTPUTS)
    bad = [e for e in errors if "Traceback" in e or "Error" in e]
    assert not bad, "error output in the page:\n" + "\n---\n".join(bad)
    status = page.evaluate(JS_STATUS)
    assert status == "", f"the Explorer's status shows an error: {status!r}"


def _text(value: str | None) -> str:
    """ipywidgets writes option labels with non-breaking spaces."""
    return (value or "").replace("\xa0", " ")


def _open(browser, url: str):
    page = browser.new_page()
    messages = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    return page, messages


def _change_method_and_class(page, server: Server, tag: str) -> list[dict]:
    """Change the method, then the class, through the dropdowns; each must redraw the heatmap."""
    before = _wait(page, lambda: _drawn_heatmap(page), "the heatmap", EXPLORER_TIMEOUT, server)
    assert before["image"], "the overlay has no photo under the heatmap"
    assert before["max"] is None or before["max"] > 0, "the first map is all zero"
    _no_errors(page)
    states = [before]

    current = _text(page.evaluate(JS_SELECT, "method")["selected"])
    method = "LayerCAM" if current != "LayerCAM" else "Grad-CAM++"
    _select(page, "method", option_text=method)
    after_method = _wait(page, lambda: _settled(page, before, method), f"the {method} map", CHANGE_TIMEOUT, server)
    states.append(after_method)
    _shot(page, f"{tag}-method")

    classes = page.evaluate(JS_SELECT, "class")
    index = next(i for i, text in enumerate(classes["options"]) if text != classes["selected"] and i >= 1)
    chosen = _text(_select(page, "class", index=index))
    class_name = chosen.rsplit(" (", 1)[0]  # "tabby (16.8%)" -> "tabby"
    after_class = _wait(
        page, lambda: _settled(page, after_method, class_name), f"the map for {class_name}", CHANGE_TIMEOUT, server
    )
    states.append(after_class)
    _no_errors(page)
    return states


# --- the tests ----------------------------------------------------------------------------------
def test_quickstart_runs_in_jupyterlab_and_the_explorer_responds(browser, lab):
    base, token, server = lab
    page, console = _open(browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}")
    try:
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        _wait(page, lambda: kernel_idle(page), "the kernel to start", 120, server)

        # Run > Run All Cells, through the menu bar
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()

        def all_done():
            prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
            return prompts and all(p.strip().startswith("[") and p.strip()[1:-2].isdigit() for p in prompts)

        _wait(page, all_done, "every cell to finish", EXPLORER_TIMEOUT + 120, server, poll=1)
        page.evaluate(JS_FIND_EXPLORER)
        page.locator('[data-test="explorer"]').scroll_into_view_if_needed()
        states = _change_method_and_class(page, server, "jupyterlab")
        # the notebook as a user sees it: the Explorer's cell at the top of the window
        page.locator('[data-test="explorer"]').evaluate("e => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        png = _shot(page, "jupyterlab-final")
        if UPDATE_DOCS or not (DOCS / "explorer-jupyterlab.png").exists():
            save_docs_screenshot(png, "explorer-jupyterlab.png")
        assert len({s["z"] for s in states}) == 3, "method and class changes must each change the map"
        assert not [m for m in console if "pageerror" in m], console
        _reload_shows_the_current_map(page, server, states[-1])
    finally:
        page.close()


def _reload_shows_the_current_map(page, server: Server, current: dict) -> None:
    """A page that connects late (here: the same notebook reloaded, its kernel still running) must
    draw the map the controls show now, not the one the figure was created with. `test_browser_reload.py`
    (heavy) reloads 20 times: JupyterLab's widget manager can give up on a model whose restore is slow."""
    page.locator(".jp-Notebook").first.click()
    page.keyboard.press("Control+s")
    _wait(page, lambda: page.locator(".jp-mod-dirty").count() == 0, "the notebook to be saved", 60, server)
    page.reload(wait_until="domcontentloaded", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    _wait(page, lambda: kernel_idle(page), "the kernel to reconnect", 120, server)

    def restored():
        errors = page.evaluate(JS_WIDGET_ERRORS)  # permanent once shown: fail now, not after the timeout
        assert not errors, f"the reloaded page shows {errors!r} (see test_browser_reload.py)"
        return _drawn_heatmap(page)

    reloaded = _wait(page, restored, "the heatmap after the reload", EXPLORER_TIMEOUT, server)
    _shot(page, "jupyterlab-reloaded")
    assert reloaded["title"] == current["title"], "the reloaded page shows another state's title"
    assert reloaded["z"] == current["z"], "the reloaded page shows a stale map"


def test_app_mode_renders_the_explorer_in_voila(browser, voila):
    base, token, server = voila
    page, console = _open(browser, f"{base}/?token={token}")
    try:
        _wait(page, lambda: page.evaluate(JS_FIND_EXPLORER), "the Explorer", EXPLORER_TIMEOUT, server, poll=1)
        states = _change_method_and_class(page, server, "voila")
        assert len({s["z"] for s in states}) == 3
        assert page.locator(".jp-CodeCell .jp-InputArea-editor, .cm-editor").count() == 0, "app mode must not show code"
        assert "import xcam_widgets" not in page.inner_text("body"), "app mode must not show code"
        page.wait_for_timeout(500)
        box = page.locator('[data-test="explorer"]').bounding_box()
        png = page.screenshot(
            path=str(ARTIFACTS / "voila-final.png"),
            clip={"x": 0, "y": 0, "width": page.viewport_size["width"], "height": box["y"] + box["height"] + 16},
        )
        if UPDATE_DOCS or not (DOCS / "explorer-app.png").exists():
            save_docs_screenshot(png, "explorer-app.png")
        assert not [m for m in console if "pageerror" in m], console
    finally:
        page.close()
