"""Issue 25, items 18 and 19: the contact sheet shows each photo beside its overlay, and the conservation
chart plots each method's relative error |Σ M − S_c| / |S_c| on a log axis, S_c named, with honest bars
for an exact 0 and for S_c = 0."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TinyGAPNet
from PIL import Image

import xcam_widgets as xw
from xcam_widgets.gallery import GalleryTable, ThumbnailStyle, contact_sheet_png, thumbnail, write_sheet
from xcam_widgets.gallery.sheet import BACKGROUND, CELL_GAP, photo_beside_overlay, sheet_cells
from xcam_widgets.gallery.thumbnails import PLACEHOLDER_GREY
from xcam_widgets.widgets.controls import descendants
from xcam_widgets.widgets.explorer import Explorer
from xcam_widgets.widgets.figures import conservation_bars, conservation_figure


# --- item 18: photo | overlay --------------------------------------------------------------------------
def photos() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {0: rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), 1: rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)}


def test_each_sheet_cell_is_the_photo_then_its_overlay():
    images = photos()
    table = GalleryTable(pd.DataFrame({"row": [0, 1, 2, 3], "image": [0, 1, 0, 9]}))
    hot = np.zeros((3, 4), dtype=np.float16)
    hot[1, 2] = 2.0
    maps = {0: hot, 1: hot, 3: hot}  # row 2 has no map (an error row); image 9 cannot be shown
    style = ThumbnailStyle(side=24)
    cells = sheet_cells(table.select().page(0, 4), images.get, maps, style)

    # the photo half: the source image resized by PIL (box filter, longer side 24), untouched by the map
    resized = [np.asarray(Image.fromarray(images[0]).resize((24, 16), Image.Resampling.BOX))]
    resized.append(np.asarray(Image.fromarray(images[1]).resize((24, 24), Image.Resampling.BOX)))
    assert cells[0].shape == (16, 24 + CELL_GAP + 24, 3) and cells[1].shape == (24, 24 + CELL_GAP + 24, 3)
    for cell, photo in zip(cells[:2], resized):
        np.testing.assert_array_equal(cell[:, :24], photo)
        assert (cell[:, 24 : 24 + CELL_GAP] == BACKGROUND).all()
        overlay = cell[:, 24 + CELL_GAP :]
        assert (overlay != photo).any(axis=2).mean() > 0.9  # the heatmap paints (nearly) every pixel at 0.5
        np.testing.assert_array_equal(overlay, thumbnail(images[0 if photo is resized[0] else 1], hot, style))
    # a row without a map: both halves are the bare photo; an image that cannot be shown: grey, then its map
    np.testing.assert_array_equal(cells[2][:, :24], resized[0])
    np.testing.assert_array_equal(cells[2][:, 24 + CELL_GAP :], resized[0])
    assert (cells[3][:, :24] == PLACEHOLDER_GREY).all() and (cells[3][:, 24 + CELL_GAP :] != PLACEHOLDER_GREY).any()


def test_the_png_sheet_shows_the_photo_beside_the_overlay():
    images = photos()
    table = GalleryTable(pd.DataFrame({"row": [0], "image": [0]}))
    hot = np.eye(3, 4, dtype=np.float16)
    cells = sheet_cells(table.select().page(0, 1), images.get, {0: hot}, ThumbnailStyle(side=30))
    sheet = np.asarray(Image.open(io.BytesIO(contact_sheet_png(cells, [("#0 a.png",)], padding=4))).convert("RGB"))
    photo = np.asarray(Image.fromarray(images[0]).resize((30, 20), Image.Resampling.BOX))
    np.testing.assert_array_equal(sheet[4:24, 4:34], photo)
    assert (sheet[4:24, 34 + CELL_GAP : 64 + CELL_GAP] != photo).any()


def test_an_exported_sheet_shows_the_photo_beside_the_overlay(tmp_path):
    """`write_sheet` (the Gallery's export) draws `sheet_cells`: oracle, the same cells drawn directly."""
    images = photos()
    table = GalleryTable(pd.DataFrame({"row": [0], "image": [0]}))
    maps, style = {0: np.eye(3, 4, dtype=np.float16)}, ThumbnailStyle(side=30)
    path, drawn = write_sheet(table.select(), tmp_path / "sheet", images.get, maps, style=style)
    cells = sheet_cells(table.select().page(0, 1), images.get, maps, style)
    assert drawn == 1 and path == tmp_path / "sheet.png"
    exported = np.asarray(Image.open(path).convert("RGB"))
    drawn_directly = np.asarray(Image.open(io.BytesIO(contact_sheet_png(cells, [("#0",)]))).convert("RGB"))
    assert exported.shape[1] == drawn_directly.shape[1]  # one photo | overlay cell wide; captions differ below
    np.testing.assert_array_equal(exported[:24], drawn_directly[:24])  # the cells' band, above the captions


def test_a_photo_and_an_overlay_of_other_sizes_are_refused():
    with pytest.raises(ValueError, match=r"photo \(4, 4, 3\) and its overlay \(4, 5, 3\)"):
        photo_beside_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


# --- item 19: the conservation chart -----------------------------------------------------------------------
def test_conservation_bars_are_relative_errors_by_hand():
    bars = conservation_bars(["gradcam", "xgradcam", "gradcam++", "layercam"], [9.5, 9.0, 230.0, math.nan], 9.0)
    # by hand: |9.5 - 9| / 9 = 0.0556, exact, |230 - 9| / 9 = 24.56, and no bar for a NaN sum
    assert bars["y"][0] == pytest.approx(0.5 / 9) and bars["y"][2] == pytest.approx(221 / 9)
    assert bars["floor"] == pytest.approx(1e-3)  # a decade below 0.0556's decade (1e-2)
    assert bars["y"][1] == bars["floor"] and bars["y"][3] is None
    assert bars["text"] == ["0.0556", "exact", "24.6", "n/a"]
    assert bars["customdata"][2] == [230.0, pytest.approx(221 / 9)]
    assert "S_c = 9" in bars["title"] and bars["yaxis_title"] == "|Σ M − S_c| / |S_c|"
    assert bars["range"][0] < math.log10(bars["floor"]) and bars["range"][1] > math.log10(221 / 9)

    fig = conservation_figure(["gradcam", "xgradcam", "gradcam++", "layercam"], [9.5, 9.0, 230.0, math.nan], 9.0)
    assert fig.layout.yaxis.type == "log"
    assert list(fig.data[0].y) == bars["y"] and fig.layout.title.text == bars["title"]


def test_with_a_zero_score_the_bars_are_absolute_errors_and_say_so():
    bars = conservation_bars(["a", "b", "c"], [0.5, -2.0, 0.0], 0.0)
    assert bars["y"][:2] == [0.5, 2.0] and bars["y"][2] == bars["floor"] == pytest.approx(0.01)
    assert bars["text"] == ["0.5", "2", "exact"]
    assert "S_c = 0" in bars["title"] and "no relative error" in bars["yaxis_title"]


def test_all_exact_gives_bars_at_the_floor():
    bars = conservation_bars(["a", "b"], [3.0, 3.0], 3.0)
    assert bars["y"] == [1e-12, 1e-12] and bars["text"] == ["exact", "exact"]


def test_the_explorer_plots_the_errors_of_explain():
    torch.manual_seed(0)
    net = TinyGAPNet().eval()
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(3))
    explorer = Explorer(net, x, background=False)
    try:
        state = explorer.state
        trace = explorer.axioms.conservation.data[0]
        assert len(trace.x) >= 3
        for method, height in zip(trace.x, trace.y):
            res = xw.explain(net, x, state.layer, method=method, target=state.target)
            error = abs(float(res.raw.sum()) - float(res.score[0])) / abs(float(res.score[0]))
            assert height == pytest.approx(error, rel=1e-3, abs=1e-6)  # float32 round-off: an exact 0 may be 1e-8
        assert explorer.axioms.conservation.figure.layout.yaxis.type == "log"
        assert f"S_c = {float(xw.explain(net, x, state.layer, target=state.target).score[0]):.4g}" in (
            explorer.axioms.conservation.figure.layout.title.text
        )
    finally:
        explorer.close()


# --- item 20: what a reloading page restores ------------------------------------------------------------------
def restore_state() -> dict:
    """What ipywidgets' `request_states` reply holds: every live widget's whole state."""
    from ipywidgets.widgets.widget import _instances

    return {w.model_id: w.get_state() for w in list(_instances.values())}


def test_drawing_creates_no_widget_and_the_restore_carries_one_plotly_js():
    torch.manual_seed(0)
    net = TinyGAPNet().eval()
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(3))
    explorer = Explorer(net, x, background=False)
    try:
        before = set(restore_state())
        for tab in (1, 2, 3, 0):  # layer sweep, method grid, class compare: each draws its figure
            explorer.tabs.selected_index = tab
        explorer.method.value = "gradcam++"
        after = restore_state()
        assert set(after) == before, "a draw created (or closed) widgets after the display"
        sweep = explorer.sweep_box.outputs[0]["data"]["application/vnd.plotly.v1+json"]
        assert len(sweep["data"]) == 2 * len(explorer.session.sweep_layers())  # photo and map per layer
        # plotly.js (5 MB, a FigureWidget's `_esm`) travels once: in the overlay, the one figure that takes clicks
        mine = {explorer.model_id} | {w.model_id for w in descendants(explorer)}  # other tests' widgets may live on
        esm = [state for key, state in after.items() if key in mine and len(state.get("_esm", "")) > 1_000_000]
        assert len(esm) == 1 and after[explorer.overlay.model_id] is esm[0]
        assert explorer.predictions.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]["type"] == "bar"
    finally:
        explorer.close()
