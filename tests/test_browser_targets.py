"""The Explorer's segmentation and detection modes in a real browser: JupyterLab runs a small notebook,
headless Chromium (driven by Playwright) clicks the photo, and the kernel follows the click.

Two Explorers show one shapes image that holds two shapes: one on the shapes segmentation net, one on
the shapes detector. A click on the second shape makes the segmentation Explorer explain that shape's
connected region; a click inside the box of the detection not selected first makes the detection
Explorer explain it. Where to click and what must follow is computed in the kernel independently of the
widgets (the shape's mask from the dataset, the detector's own output), and the click is placed through
Plotly's own axis transforms, as a user's pointer would be; the photo, not the coarse heatmap over it, must
take the click and report the pixel clicked. Needs Chromium as `test_browser.py` does
(installed when missing and we are root; skips only when it cannot be had). Screenshots and the server
log go to `test-artifacts/browser/targets/`.
"""

from __future__ import annotations

from browser_helpers import (
    ARTIFACTS,
    Server,
    assert_no_error_outputs,
    expected_line,
    run_notebook_in_page,
    screenshot,
    wait_for,
)

HERE = ARTIFACTS / "targets"
NOTEBOOK = "targets.ipynb"
RUN_TIMEOUT = 240  # s: kernel start, imports and both Explorers' first maps on a loaded 2-core machine
CHANGE_TIMEOUT = 90  # s: a click needs one backward pass (and a redraw)
SEG, DET = "seg-explorer", "det-explorer"

# The notebook: two Explorers on one image with two shapes, then (in the kernel, independently of the
# widgets) where to click and what the click must pick, printed as one JSON line. The oracle's forward
# passes hold each model's lock (`evaluation_mode`), as the Explorers' worker threads do.
CELLS = [
    """\
import xcam_widgets as xw
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes

data = make_shapes(4, seed=5, pair_fraction=1.0)  # two shapes per image
x = nets.preprocess(data.images[1])
seg, det = xw.load_model("shapes_seg"), xw.load_model("shapes_det")""",
    """\
seg_explorer = xw.Explorer(seg, x)
seg_explorer""",
    """\
det_explorer = xw.Explorer(det, x)
det_explorer""",
    """\
import json
import torch
from xcam_widgets.model_state import evaluation_mode

label = int(data.labels[1][1])  # the second shape
mask = data.masks[1, label]
rows, cols = mask.nonzero(as_tuple=True)
nearest = int(((rows - rows.float().mean()) ** 2 + (cols - cols.float().mean()) ** 2).argmin())
sx, sy = int(cols[nearest]), int(rows[nearest])  # the mask's pixel nearest its centroid
with evaluation_mode(seg.model), torch.no_grad():
    predicted = int(seg.model(x[None])[0].argmax(0)[sy, sx])
with evaluation_mode(det.model), torch.no_grad():
    found = det.model(x[None])[0]
order = found["scores"].argsort(descending=True, stable=True).tolist()
first, other = order[:2]  # the Explorer selects the best detection first
box = [float(v) for v in found["boxes"][other]]  # x1, y1, x2, y2 in pixel edges
print("EXPECTED " + json.dumps({
    "seg": {"x": sx, "y": sy, "name": seg.categories[label], "predicted": seg.categories[predicted]},
    "det": {"index": other, "name": det.categories[int(found["labels"][other])], "box": box,
            "score": float(found["scores"][other]), "first": first,
            "first_name": det.categories[int(found["labels"][first])],
            "first_box": [float(v) for v in found["boxes"][first]],
            # the display pixel nearest the box's centre (pixel centres are integers, edges half-integers)
            "x": round((box[0] + box[2]) / 2 - 0.5), "y": round((box[1] + box[3]) / 2 - 0.5)}}))""",
]

# Each Explorer's root: the outermost widget box holding a dropdown labelled "segment" (or "detection"),
# the target menu's label in that mode ("method" is in both, so it cannot tell them apart).
JS_TAG_EXPLORERS = r"""
() => {
  const labelled = (root, text) => [...root.querySelectorAll('.widget-dropdown')]
      .some(d => (d.querySelector('label')?.textContent || '').trim() === text);
  const found = {};
  for (const [text, tag] of [['segment', 'seg-explorer'], ['detection', 'det-explorer']]) {
    const roots = [...document.querySelectorAll('.widget-vbox')].filter(v => labelled(v, text));
    const root = roots.find(r => !roots.some(o => o !== r && o.contains(r)));
    if (root) root.setAttribute('data-test', tag);
    found[tag] = !!root;
  }
  return found['seg-explorer'] && found['det-explorer'];
}
"""

# The overlay of the Explorer tagged `tag`: the first plot holding the photo whose last trace is the
# heatmap "map". Its z (as sent), title, layout shapes and annotations, and whether it is painted.
JS_OVERLAY = r"""
(tag) => {
  const root = document.querySelector(`[data-test="${tag}"]`);
  if (!root) return null;
  for (const plot of root.querySelectorAll('.js-plotly-plot')) {
    const data = plot.data || [];
    const heat = data[data.length - 1];
    if (!heat || heat.type !== 'heatmap' || heat.name !== 'map' || !data.some(t => t.type === 'image')) continue;
    const z = heat.z;
    let flat;
    if (z && z.bdata !== undefined) flat = [z.dtype, String(z.shape), z.bdata];
    else if (ArrayBuffer.isView(z)) flat = Array.from(z);
    else flat = (z || []).map(row => Array.from(row));
    const layout = plot.layout || {};
    const title = layout.title ? (typeof layout.title === 'string' ? layout.title : layout.title.text) : '';
    const shapes = (layout.shapes || []).map(s => ({type: s.type, path: s.path || null, color: (s.line || {}).color,
                                                    x0: s.x0, y0: s.y0, x1: s.x1, y1: s.y1}));
    const notes = (layout.annotations || []).map(a => a.text);
    const painted = plot.querySelectorAll('.heatmaplayer image, .heatmaplayer canvas, .hm').length > 0;
    return {z: JSON.stringify(flat), title: title || '', shapes, notes, painted};
  }
  return null;
}
"""

# Screen coordinates (CSS pixels in the viewport) of image pixel (x, y) on that overlay, through the axes
# the heatmap is drawn on: Plotly's data-to-pixel transform (l2p) plus the plot area's offset, plus the
# graph div's place on the page. `hit` says what element is under that point (it must be Plotly's drag
# layer, not something covering the plot). `listening`: whether Plotly's FigureWidget view has attached its
# event handlers to the graph div (it does so, plotly_restyle first, once its `Plotly.newPlot` has resolved;
# until then no click reaches the kernel).
JS_PIXEL_TO_SCREEN = r"""
([tag, x, y]) => {
  const root = document.querySelector(`[data-test="${tag}"]`);
  const plot = [...root.querySelectorAll('.js-plotly-plot')]
      .find(p => (p.data || []).some(t => t.type === 'image') && p._fullLayout);
  const heat = plot.data[plot.data.length - 1];
  const name = axis => axis.replace(/^([xy])/, '$1axis');
  const xa = plot._fullLayout[name(heat.xaxis || 'x')], ya = plot._fullLayout[name(heat.yaxis || 'y')];
  const rect = plot.getBoundingClientRect();
  const sx = rect.left + xa._offset + xa.l2p(x), sy = rect.top + ya._offset + ya.l2p(y);
  const hit = document.elementFromPoint(sx, sy);
  return {x: sx, y: sy, hit: hit ? (hit.getAttribute('class') || hit.tagName) : null,
          inPlot: !!hit && plot.contains(hit),
          listening: !!plot._ev && plot._ev.listeners('plotly_restyle').length > 0};
}
"""

# Record the `plotly_click` events of the overlay of the Explorer tagged `tag` (the events Plotly's
# FigureWidget forwards to the kernel): which trace took the click, and the point it reported.
JS_RECORD_CLICKS = r"""
(tag) => {
  const root = document.querySelector(`[data-test="${tag}"]`);
  const plot = [...root.querySelectorAll('.js-plotly-plot')].find(p => (p.data || []).some(t => t.type === 'image'));
  window.xcamClicks = window.xcamClicks || {};
  window.xcamClicks[tag] = [];
  plot.on('plotly_click', event => window.xcamClicks[tag].push(event.points.map(
      p => ({trace: p.data.type, curve: p.curveNumber, x: p.x, y: p.y, point: p.pointNumber}))));
}
"""

# The target menu (labelled `label`) of the Explorer tagged `tag`: its options and the selected one.
JS_SELECTED = r"""
([tag, label]) => {
  const root = document.querySelector(`[data-test="${tag}"]`);
  const box = [...root.querySelectorAll('.widget-dropdown')]
      .find(d => (d.querySelector('label')?.textContent || '').trim() === label);
  const select = box.querySelector('select');
  const text = o => o ? o.textContent.replace(/\u00a0/g, ' ') : null;  // ipywidgets shows spaces as NBSP
  return {options: [...select.options].map(text), selected: text(select.options[select.selectedIndex])};
}
"""

# The Explorer's last row holds the status HTML (errors) and the progress bar.
JS_STATUS_OF = r"""
(tag) => {
  const root = document.querySelector(`[data-test="${tag}"]`);
  const rows = root ? [...root.children].filter(c => c.classList.contains('widget-hbox')) : [];
  const last = rows[rows.length - 1];
  const html = last ? last.querySelector('.widget-html-content') : null;
  return html ? html.innerText.trim() : null;
}
"""


def _shot(page, name: str) -> bytes:
    return screenshot(page, HERE, name)


def _wait(page, predicate, what: str, timeout: float, server: Server, poll: float = 0.5):
    return wait_for(page, predicate, what, timeout, server, HERE, poll)


def _drawn(page, tag: str) -> dict | None:
    """The overlay once its first map is drawn (painted, titled with what it explains)."""
    overlay = page.evaluate(JS_OVERLAY, tag)
    if overlay and overlay["painted"] and overlay["title"] not in ("", "computing…"):
        return overlay
    return None


def _click_pixel(page, server: Server, tag: str, x: int, y: int, name: str) -> dict:
    """Click image pixel (x, y) of the overlay of Explorer `tag` with the mouse, as a user would; the
    photo, not the heatmap, must take the click and report that pixel."""
    page.locator(f'[data-test="{tag}"] .js-plotly-plot').first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    point = page.evaluate(JS_PIXEL_TO_SCREEN, [tag, x, y])
    assert point["inPlot"], f"pixel ({x}, {y}) lands on {point['hit']}, outside the plot: {point}"
    page.evaluate(JS_RECORD_CLICKS, tag)
    page.mouse.click(point["x"], point["y"])
    _shot(page, name)
    clicks = _wait(
        page, lambda: page.evaluate("tag => window.xcamClicks[tag]", tag), f"{tag}'s click event", 10, server
    )
    taken = clicks[0][0]
    assert (taken["trace"], taken["x"], taken["y"]) == ("image", x, y), (
        f"the click on pixel ({x}, {y}) went to the {taken['trace']} trace at ({taken['x']}, {taken['y']}), "
        f"not to the photo: {clicks}"
    )
    return {**point, "clicks": clicks}


def test_clicks_on_the_photo_pick_a_region_and_a_detection_in_jupyterlab(notebook_browser, notebook_server):
    base, token, server = notebook_server
    page, console = run_notebook_in_page(notebook_browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}", server, HERE)
    try:
        expected = _wait(page, lambda: expected_line(page), "the kernel's expected targets", RUN_TIMEOUT, server)
        want_seg, want_det = expected["seg"], expected["det"]
        assert want_seg["predicted"] == want_seg["name"], (
            f"the net does not predict the shape it is clicked on: {want_seg}"
        )
        _wait(page, lambda: page.evaluate(JS_TAG_EXPLORERS), "both Explorers", RUN_TIMEOUT, server)
        seg_before = _wait(page, lambda: _drawn(page, SEG), "the segmentation map", RUN_TIMEOUT, server)
        det_before = _wait(page, lambda: _drawn(page, DET), "the detection map", RUN_TIMEOUT, server)
        _shot(page, "drawn")
        assert_no_error_outputs(page)

        # Segmentation: the first view outlines the largest predicted shape, not the one to be clicked.
        assert "region" not in seg_before["title"] and want_seg["name"] not in seg_before["title"], seg_before["title"]
        assert [s["type"] for s in seg_before["shapes"]] == ["path", "path"], seg_before["shapes"]
        assert [s["color"] for s in seg_before["shapes"]] == ["black", "white"]
        menu = page.evaluate(JS_SELECTED, [SEG, "segment"])
        assert any(option.startswith(want_seg["name"] + " (") for option in menu["options"]), menu

        # Click the second shape's centre: its connected region becomes the target.
        seg_click = _click_pixel(page, server, SEG, want_seg["x"], want_seg["y"], "seg-clicked")

        def region_shown():
            overlay = page.evaluate(JS_OVERLAY, SEG)
            selected = page.evaluate(JS_SELECTED, [SEG, "segment"])["selected"] or ""
            if (
                overlay
                and "region" in overlay["title"]
                and want_seg["name"] in overlay["title"]
                and selected.startswith(want_seg["name"])
                and overlay["z"] != seg_before["z"]
                and [s["type"] for s in overlay["shapes"]] == ["path", "path"]
            ):
                return overlay, selected
            return None

        seg_after, selected = _wait(
            page, region_shown, f"the clicked region's map after {seg_click}", CHANGE_TIMEOUT, server
        )
        assert "region" in selected, selected
        paths = [s["path"] for s in seg_after["shapes"]]
        assert paths[0] == paths[1] and paths[0] != seg_before["shapes"][0]["path"], "the outline did not move"
        assert page.evaluate(JS_STATUS_OF, SEG) == ""
        _shot(page, "seg-region")

        # Detection: the boxes are drawn, the best detection (in red) is selected first.
        rects = [s for s in det_before["shapes"] if s["type"] == "rect"]
        assert len(rects) == len(det_before["notes"]) >= 2, det_before
        assert sum(r["color"] == "#ff2020" for r in rects) == 1
        assert f"#{want_det['first']} {want_det['first_name']}" in det_before["title"], det_before["title"]
        x1, y1, x2, y2 = want_det["box"]
        assert want_det["score"] >= 0.05, f"the detector finds only one shape here: {want_det}"  # listed at >= 0.05
        fx1, fy1, fx2, fy2 = want_det["first_box"]
        assert not (fx1 <= want_det["x"] + 0.5 <= fx2 and fy1 <= want_det["y"] + 0.5 <= fy2), "the boxes overlap there"

        def red_is_the_other_box(overlay) -> bool:
            red = [s for s in overlay["shapes"] if s["type"] == "rect" and s["color"] == "#ff2020"]
            corners = (x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5)
            return len(red) == 1 and all(  # the menus round boxes to 0.1 pixel
                abs(a - b) <= 0.051 for a, b in zip((red[0]["x0"], red[0]["y0"], red[0]["x1"], red[0]["y1"]), corners)
            )

        assert not red_is_the_other_box(det_before)
        det_click = _click_pixel(page, server, DET, want_det["x"], want_det["y"], "det-clicked")
        named = f"#{want_det['index']} {want_det['name']}"

        def detection_shown():
            overlay = page.evaluate(JS_OVERLAY, DET)
            selected = page.evaluate(JS_SELECTED, [DET, "detection"])["selected"] or ""
            if overlay and red_is_the_other_box(overlay) and named in overlay["title"] and selected.startswith(named):
                return overlay
            return None

        det_after = _wait(
            page, detection_shown, f"the clicked detection's map after {det_click}", CHANGE_TIMEOUT, server
        )
        assert det_after["z"] != det_before["z"], "the map did not change with the detection"
        assert page.evaluate(JS_STATUS_OF, DET) == ""
        assert page.evaluate(JS_STATUS_OF, SEG) == ""
        assert_no_error_outputs(page)
        assert not console, console
        _shot(page, "det-detection")
    finally:
        page.close()
