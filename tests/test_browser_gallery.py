"""The Gallery in a real browser: JupyterLab runs a small notebook, headless Chromium (driven by
Playwright) sorts the grid and opens an Explorer through the page's own controls.

What the page shows is checked against what the kernel computes on its own: the row that pandas puts
first, the JPEG thumbnail drawn from that row's stored map and the photo as the Explorer encodes it
(SHA-1 of the bytes the page holds). Needs Chromium as `test_browser.py` does (installed when missing and
we are root; skips only when it cannot be had). Screenshots and the server log go to
`test-artifacts/browser/gallery/`; `docs/gallery.png` is written when missing, or refreshed with
XCAM_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re

from browser_helpers import (
    ARTIFACTS,
    DOCS,
    Server,
    assert_no_error_outputs,
    expected_line,
    run_notebook_in_page,
    save_docs_screenshot,
    screenshot,
    wait_for,
)
from browser_js import JS_HEATMAP

HERE = ARTIFACTS / "gallery"
NOTEBOOK = "gallery.ipynb"
N_IMAGES = 24
RUN_TIMEOUT = 240  # s: kernel start, imports, two models' worth of work on a loaded 2-core machine
CHANGE_TIMEOUT = 60  # s: a sort redraws from the table; an Explorer needs one forward and backward pass
UPDATE_DOCS = os.environ.get("XCAM_UPDATE_SCREENSHOTS") == "1"

# The notebook the browser runs: a Gallery of the shortcut net on watermarked shapes, then (in the
# kernel, independently of the widget) the row pandas puts first by energy, the thumbnail that row
# must show and the photo the Explorer must draw, printed as one JSON line.
CELLS = [
    f"""\
import xcam_widgets as xw

gallery = xw.Gallery("shapes_shortcut", "shapes_shortcut:{N_IMAGES}", methods=["xgradcam"],
                     metrics=["pointing", "energy"], metric="energy", page_size=12)
gallery""",
    f"""\
import hashlib, json
from xcam_widgets.gallery import ThumbnailStyle, encode, thumbnail
from xcam_widgets.shapes import make_shortcut_shapes
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.widgets.figures import png_source

gallery.wait()
table = gallery.run.snapshot().table
first = table.sort_values(["energy", "row"], kind="stable").iloc[0]
image = make_shortcut_shapes({N_IMAGES}, seed=HELDOUT_SEED).images[int(first["image"])]
pixels = (image.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
thumb = encode(thumbnail(pixels, gallery.maps[int(first["row"])], ThumbnailStyle()))
print("EXPECTED " + json.dumps({{
    "rows": len(table), "initial_row": int(table["row"].iloc[0]), "row": int(first["row"]),
    "image": int(first["image"]), "class_name": str(first["class_name"]), "layer": str(first["layer"]),
    "thumb_sha1": hashlib.sha1(thumb).hexdigest(),
    "photo_sha1": hashlib.sha1(png_source(pixels).encode()).hexdigest()}}))""",
]

# The Gallery's root: the outermost widget box holding a dropdown labelled "sort by".
JS_FIND_GALLERY = r"""
() => {
  const labelled = root => [...root.querySelectorAll('.widget-dropdown')]
      .some(d => (d.querySelector('label')?.textContent || '').trim() === 'sort by');
  const roots = [...document.querySelectorAll('.widget-vbox')].filter(labelled);
  const root = roots.find(r => !roots.some(o => o !== r && o.contains(r)));
  if (root) root.setAttribute('data-test', 'gallery');
  return !!root;
}
"""

# The first visible tile of the grid: its explore button's text, its caption and the SHA-1 of its
# JPEG (the bytes behind the <img>'s blob URL).
JS_FIRST_TILE = r"""
async () => {
  const grid = document.querySelector('[data-test="gallery"] .widget-gridbox');
  const tile = grid && [...grid.children].find(t => getComputedStyle(t).display !== 'none');
  const img = tile && tile.querySelector('img');
  if (!img || !img.src) return null;
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
  return {button: tile.querySelector('button').innerText.trim(),
          caption: tile.querySelector('.widget-html-content').innerText.trim(),
          sha1: [...digest].map(b => b.toString(16).padStart(2, '0')).join('')};
}
"""

JS_PROGRESS = r"""
() => [...document.querySelectorAll('[data-test="gallery"] .widget-html-content')]
  .map(e => e.innerText.trim()).find(t => / images · /.test(t)) || null
"""

# The Explorer the Gallery opened: the box after the title "Explorer on row #…"; it is tagged for
# `JS_HEATMAP`. Returns the title and the SHA-1 of the overlay's photo (its PNG data URI).
JS_EXPLORER = r"""
async () => {
  const title = [...document.querySelectorAll('[data-test="gallery"] .widget-html-content')]
      .find(e => e.innerText.trim().startsWith('Explorer on row #'));
  const box = title && title.closest('.widget-html');
  const root = box && box.nextElementSibling;
  if (!root) return null;
  root.setAttribute('data-test', 'explorer');
  const plot = [...root.querySelectorAll('.js-plotly-plot')].find(p => (p.data || []).some(t => t.type === 'image'));
  const photo = plot && plot.data.find(t => t.type === 'image').source;
  if (!photo) return null;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-1', new TextEncoder().encode(photo)));
  return {title: title.innerText.trim(), photo_sha1: [...digest].map(b => b.toString(16).padStart(2, '0')).join('')};
}
"""


def _shot(page, name: str) -> bytes:
    return screenshot(page, HERE, name)


def _wait(page, predicate, what: str, timeout: float, server: Server, poll: float = 0.5):
    return wait_for(page, predicate, what, timeout, server, HERE, poll)


def test_sorting_and_exploring_the_gallery_in_jupyterlab(notebook_browser, notebook_server):
    base, token, server = notebook_server
    page, console = run_notebook_in_page(notebook_browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}", server, HERE)
    try:
        expected = _wait(page, lambda: expected_line(page), "the kernel's expected first row", RUN_TIMEOUT, server)
        assert expected["rows"] == N_IMAGES
        assert expected["row"] != expected["initial_row"], "the sort must move another row to the front"
        _wait(page, lambda: page.evaluate(JS_FIND_GALLERY), "the Gallery", CHANGE_TIMEOUT, server)
        _wait(
            page,
            lambda: page.evaluate(JS_PROGRESS) == f"{N_IMAGES} / {N_IMAGES} images · done",
            "the Gallery's progress to show the finished run",
            CHANGE_TIMEOUT,
            server,
        )
        before = _wait(page, lambda: page.evaluate(JS_FIRST_TILE), "the first thumbnail", CHANGE_TIMEOUT, server)
        assert before["button"] == f"explore #{expected['initial_row']}"
        assert_no_error_outputs(page)

        # Sort by energy through the page's own menu: the row pandas puts first comes to the front.
        sort_by = (
            page.locator('[data-test="gallery"] .widget-dropdown')
            .filter(has=page.locator("label", has_text=re.compile("^sort by$")))
            .first.locator("select")
        )
        sort_by.scroll_into_view_if_needed()
        sort_by.select_option(label="energy")
        wanted = f"explore #{expected['row']}"

        def sorted_tile():
            tile = page.evaluate(JS_FIRST_TILE)
            return tile if tile and tile["button"] == wanted and tile["sha1"] != before["sha1"] else None

        after = _wait(page, sorted_tile, "the first thumbnail to become the lowest-energy row", CHANGE_TIMEOUT, server)
        assert after["caption"].startswith(f"#{expected['row']} {expected['image']}"), after["caption"]
        assert expected["class_name"] in after["caption"] and "energy" in after["caption"]
        assert after["sha1"] == expected["thumb_sha1"], "the first thumbnail is not the expected image and map"

        # Open that row in the Explorer with the tile's own button.
        page.locator('[data-test="gallery"] .widget-gridbox button', has_text=re.compile(f"^{wanted}$")).click()
        title = f"Explorer on row #{expected['row']}: image {expected['image']}"

        def explorer_drawn():
            shown = page.evaluate(JS_EXPLORER)
            heat = page.evaluate(JS_HEATMAP) if shown else None
            if shown and heat and heat["rows"] > 1 and heat["painted"] and expected["class_name"] in heat["title"]:
                return shown, heat
            return None

        shown, heat = _wait(page, explorer_drawn, "the Explorer's map of the row", CHANGE_TIMEOUT, server)
        assert shown["title"] == title
        assert shown["photo_sha1"] == expected["photo_sha1"], "the Explorer shows another image"
        assert expected["layer"] in heat["title"] and heat["image"], heat
        assert_no_error_outputs(page)
        assert not console, console

        # The screenshot: the file browser folded away (clicking its open tab), the Gallery's cell on top.
        open_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if open_tab.count():
            open_tab.first.click()
        page.locator('[data-test="gallery"]').evaluate("e => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1000)
        png = _shot(page, "gallery-final")
        if UPDATE_DOCS or not (DOCS / "gallery.png").exists():
            save_docs_screenshot(png, "gallery.png")
    finally:
        page.close()
