"""The Gallery's Strategies view in a real browser: JupyterLab runs a small notebook, headless Chromium
(driven by Playwright) selects a cluster with its card's "select" button and clicks a point of the
`Scattergl` scatter with the mouse.

What the page shows is checked against what the kernel computes on its own: the members of the rank-1
cluster of a group from `xw.discover` called directly (same seed), and the photo of the clicked point's
row as the Explorer encodes it (SHA-1 of the bytes the page holds). The click is a real mouse click at
the pixel where Plotly's axes put the point (Scattergl draws on WebGL, but finds the point under the
mouse on the CPU); the point is the one farthest from its neighbours, so no other can take the click.
Needs Chromium as `test_browser.py` does. Screenshots and the server log go to
`test-artifacts/browser/strategies/`. No timing is asserted: `benchmarks/bench_strategies_browser.py`
measures the draw.
"""

from __future__ import annotations

import re

from browser_helpers import ARTIFACTS, Server, assert_no_error_outputs, expected_line, run_notebook_in_page, wait_for
from browser_js import JS_HEATMAP
from test_browser_gallery import JS_EXPLORER, JS_FIND_GALLERY

HERE = ARTIFACTS / "strategies"
NOTEBOOK = "strategies.ipynb"
N_IMAGES = 48
MIN_SIZE = 8  # the smallest group clustered (48 images: some classes have fewer rows, some more)
RUN_TIMEOUT = 300  # s: kernel start, imports, a run, discovery (twice: view and reference) on a loaded 2-core machine
CHANGE_TIMEOUT = 60  # s: a selection redraws the page of tiles; an Explorer needs one forward and backward pass

# The notebook: a Gallery of the shortcut net on watermarked shapes (one page holds every row), its
# Strategies view, then (in the kernel, independently of the view) `xw.discover` on the same run: the
# first clustered group, its rank-1 cluster's members, the point farthest from its neighbours on the
# scatter, its row, and the photo the Explorer must draw for that row, printed as one JSON line.
CELLS = [
    f"""\
import xcam_widgets as xw

gallery = xw.Gallery("shapes_shortcut", "shapes_shortcut:{N_IMAGES}", methods=["xgradcam"],
                     metrics=["energy"], page_size=96)
gallery""",
    f"""\
gallery.wait()
view = gallery.strategies(min_size={MIN_SIZE}, seed=0)
view.wait()
print(view.status.value)""",
    f"""\
import hashlib, json
import numpy as np
from xcam_widgets.shapes import make_shortcut_shapes
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.widgets.figures import png_source

reference = xw.discover(gallery, min_size={MIN_SIZE}, seed=0)
a, c, g = reference.assignments, reference.clusters, reference.groups
group = g[g["status"] == "clustered"].iloc[0]
best = c[(c["group"] == group["group"]) & (c["rank"] == 1)].iloc[0]
members = sorted(int(r) for r in a.loc[a["cluster"] == best["cluster"], "row"])
xy = a[["x", "y"]].to_numpy(float)
xy = (xy - xy.min(0)) / np.ptp(xy, 0)
gap = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 9
point = int(gap.min(1).argmax())
row = int(a["row"].iloc[point])
record = gallery.run.snapshot().table.set_index("row").loc[row]
image = make_shortcut_shapes({N_IMAGES}, seed=HELDOUT_SEED).images[int(record["image"])]
pixels = (image.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
print("EXPECTED " + json.dumps({{
    "rows": len(a), "group_name": str(group["group_name"]), "cluster": int(best["cluster"]),
    "members": members, "point": point, "x": float(a["x"].iloc[point]), "y": float(a["y"].iloc[point]),
    "row": row, "image": int(record["image"]), "class_name": str(record["class_name"]),
    "photo_sha1": hashlib.sha1(png_source(pixels).encode()).hexdigest()}}))""",
]

# The Strategies view's root: the box after the Gallery's grid whose title starts with "Strategies";
# tagged, and so is its scatter (the plot holding a scattergl trace).
JS_FIND_STRATEGIES = r"""
() => {
  const title = [...document.querySelectorAll('[data-test="gallery"] .widget-html-content')]
      .find(e => e.innerText.trim().startsWith('Strategies:'));
  const root = title && title.closest('.widget-vbox');
  const plot = root && [...root.querySelectorAll('.js-plotly-plot')]
      .find(p => (p.data || []).some(t => t.type === 'scattergl'));
  if (!plot || !plot._fullLayout || !plot._fullLayout.xaxis) return null;
  root.setAttribute('data-test', 'strategies');
  plot.setAttribute('data-test', 'scatter');
  return {points: (plot.data[0].x || []).length};
}
"""

# The visible tiles of the Gallery's grid: the row each shows (its "explore #row" button).
JS_TILE_ROWS = r"""
() => {
  const grid = document.querySelector('[data-test="gallery"] .widget-gridbox');
  if (!grid) return null;
  return [...grid.children].filter(t => getComputedStyle(t).display !== 'none')
      .map(t => t.querySelector('button').innerText.trim());
}
"""

# The page coordinates of the scatter point at data (x, y), through Plotly's own axes.
JS_POINT_PIXEL = r"""
([x, y]) => {
  const gd = document.querySelector('[data-test="scatter"]');
  const fl = gd._fullLayout, box = gd.getBoundingClientRect();
  return {x: box.left + fl._size.l + fl.xaxis.l2p(x), y: box.top + fl._size.t + fl.yaxis.l2p(y),
          inside: fl.xaxis.l2p(x) >= 0 && fl.xaxis.l2p(x) <= fl._size.w && fl.yaxis.l2p(y) >= 0
                  && fl.yaxis.l2p(y) <= fl._size.h};
}
"""

# Records the scatter's `plotly_click` events (those the FigureWidget forwards to the kernel).
JS_RECORD_CLICKS = r"""
() => {
  const gd = document.querySelector('[data-test="scatter"]');
  window.xcamScatterClicks = [];
  gd.on('plotly_click', e => window.xcamScatterClicks.push(e.points.map(p => p.pointNumber)));
}
"""


def _wait(page, predicate, what: str, timeout: float, server: Server, poll: float = 0.5):
    return wait_for(page, predicate, what, timeout, server, HERE, poll)


def test_selecting_a_cluster_and_clicking_a_point_in_jupyterlab(notebook_browser, notebook_server):
    base, token, server = notebook_server
    page, console = run_notebook_in_page(notebook_browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}", server, HERE)
    try:
        expected = _wait(page, lambda: expected_line(page), "the kernel's expected cluster", RUN_TIMEOUT, server)
        members = [f"explore #{r}" for r in expected["members"]]
        assert expected["rows"] == N_IMAGES and 0 < len(members) < N_IMAGES, expected
        _wait(page, lambda: page.evaluate(JS_FIND_GALLERY), "the Gallery", CHANGE_TIMEOUT, server)
        scatter = _wait(page, lambda: page.evaluate(JS_FIND_STRATEGIES), "the Strategies view", CHANGE_TIMEOUT, server)
        assert scatter["points"] == N_IMAGES
        _wait(
            page, lambda: len(page.evaluate(JS_TILE_ROWS) or []) == N_IMAGES, "all rows' tiles", CHANGE_TIMEOUT, server
        )
        assert_no_error_outputs(page)

        # The group menu on the expected group, then that cluster's card's own "select" button.
        view = page.locator('[data-test="strategies"]')
        group = view.locator(".widget-dropdown").filter(has=page.locator("label", has_text=re.compile("^group$")))
        options = [o.replace("\u00a0", " ") for o in group.locator("option").all_inner_texts()]
        index = next(i for i, o in enumerate(options) if o.startswith(expected["group_name"] + " ("))
        group.locator("select").select_option(index=index)
        summary = view.locator(".widget-html-content").filter(
            has_text=re.compile(f"^cluster {expected['cluster']} · rank 1 of")
        )
        _wait(page, lambda: summary.count() == 1, f"cluster {expected['cluster']}'s card", CHANGE_TIMEOUT, server)
        card = summary.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
        card.locator("button", has_text=re.compile("select")).click()
        _wait(
            page,
            lambda: sorted(page.evaluate(JS_TILE_ROWS) or []) == sorted(members),
            f"the thumbnails to be cluster {expected['cluster']}'s members {members}",
            CHANGE_TIMEOUT,
            server,
        )
        page.wait_for_timeout(1000)  # and they stay so
        shown = page.evaluate(JS_TILE_ROWS)
        assert sorted(shown) == sorted(members), f"tiles {shown} are not cluster {expected['cluster']}'s {members}"
        crops = card.locator("img[title^='row ']")
        assert crops.count() > 0, "the card shows no prototype crop"
        assert view.locator(".jupyter-widgets-error-widget").count() == 0, "a widget of the view failed to draw"

        # A real mouse click on the point: the Explorer opens on its row and draws its image.
        page.locator('[data-test="scatter"]').scroll_into_view_if_needed()
        page.evaluate(JS_RECORD_CLICKS)
        at = page.evaluate(JS_POINT_PIXEL, [expected["x"], expected["y"]])
        assert at["inside"], at
        page.mouse.move(at["x"] - 3, at["y"] - 3)
        page.mouse.move(at["x"], at["y"])
        page.wait_for_timeout(300)  # Plotly's hover is throttled: the point is found before the click
        page.mouse.click(at["x"], at["y"])
        clicks = _wait(page, lambda: page.evaluate("() => window.xcamScatterClicks"), "the click event", 30, server)
        assert clicks[0] == [expected["point"]], f"the click took points {clicks}, not {expected['point']}"

        def explorer_drawn():
            shown = page.evaluate(JS_EXPLORER)
            heat = page.evaluate(JS_HEATMAP) if shown else None
            if shown and heat and heat["rows"] > 1 and heat["painted"] and expected["class_name"] in heat["title"]:
                return shown
            return None

        explorer = _wait(page, explorer_drawn, "the Explorer on the clicked row", CHANGE_TIMEOUT, server)
        assert explorer["title"] == f"Explorer on row #{expected['row']}: image {expected['image']}"
        assert explorer["photo_sha1"] == expected["photo_sha1"], "the Explorer shows another image"
        assert_no_error_outputs(page)
        assert not console, console
        page.locator('[data-test="strategies"]').scroll_into_view_if_needed()
        page.screenshot(path=str(HERE / "strategies-final.png"))
    finally:
        page.close()
