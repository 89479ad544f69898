"""The Gallery from code (issue 25, items 15-17): `sort`, `filter`, `page` and `view.set_*` move
the menus and the tiles with the view; `add_column` adds a column to sort and filter by; at a
layer before global average pooling and a linear layer, Grad-CAM = XGrad-CAM shows as one tile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_gallery_widget import GatedShapes, wait_until

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_images, read_table
from xcam_widgets.gallery import Filter
from xcam_widgets.widgets.gallery import Gallery
from xcam_widgets.widgets.grids import method_grid

EARLIER = dict(methods=["gradcam", "xgradcam"], metrics=["energy", "pointing"], batch_size=6, progress=False)


def shown_rows(gallery: Gallery) -> list[int]:
    return [tile.row for tile in gallery.tiles if tile.row is not None]


def by(table: pd.DataFrame, column: str, descending: bool = False) -> list[int]:
    """pandas' order: by `column` (NaN last), ties by `row`."""
    return table.sort_values([column, "row"], ascending=[not descending, True], na_position="last")["row"].tolist()


@pytest.fixture(scope="module")
def bundle() -> xw.ModelBundle:
    return xw.load_model("shapes_gap", device="cpu")


@pytest.fixture(scope="module")
def result(bundle):
    return evaluate(bundle, "shapes:12", **EARLIER)


@pytest.fixture
def gallery(bundle, result):
    gallery = Gallery(bundle, result, page_size=12)
    yield gallery
    gallery.close()


# --- 15: sort, filter and page from code ------------------------------------------------------------
def test_view_set_sort_moves_the_menu_and_the_tiles(gallery, result):
    gallery.controls.sort_by.value = "energy"
    page = gallery.view.set_sort("pointing", descending=True)
    assert gallery.controls.sort_by.value == "pointing" and gallery.controls.descending.value is True
    assert shown_rows(gallery) == page.rows.tolist() == by(result.table, "pointing", True)[:12]
    explorer = gallery.open_row(int(gallery.view.page.rows[0]))  # the README's line: the row on screen
    assert gallery.explorer_row == gallery.tiles[0].row and explorer is gallery.explorer


def test_sort_filter_and_page_drive_the_controls(gallery, result):
    table = result.table
    page = gallery.sort("energy", descending=True)
    assert (gallery.controls.sort_by.value, gallery.controls.descending.value) == ("energy", True)
    assert shown_rows(gallery) == page.rows.tolist() == by(table, "energy", True)[:12]
    gallery.filter(method="xgradcam", range=("energy", 0.3, None))
    kept = table[(table["method"] == "xgradcam") & (table["energy"] >= 0.3)]
    assert 0 < len(kept) < 12 and shown_rows(gallery) == by(kept, "energy", True)
    assert (gallery.controls.methods.value, gallery.controls.range_column.value) == ("xgradcam", "energy")
    assert (gallery.controls.low.value, gallery.controls.high.value) == ("0.3", "")
    gallery.filter()
    assert gallery.controls.methods.value == "(any)" and gallery.controls.range_column.value == "(none)"
    page = gallery.page(1)
    assert page.index == 1 and shown_rows(gallery) == by(table, "energy", True)[12:24]
    assert gallery.controls.page_label.value == "page 2 / 2 · 24 of 24 rows"
    gallery.controls.methods.value = "gradcam"  # the menus still drive the view
    assert gallery.view.filter.methods == ("gradcam",) and gallery.view.page_index == 0
    gallery.view.set_page_size(24)
    assert gallery.controls.page_size.value == 24 and len(shown_rows(gallery)) == 12


def test_what_the_menus_cannot_show_is_refused_and_nothing_changes(gallery):
    gallery.sort("energy")
    before = shown_rows(gallery)
    with pytest.raises(ValueError, match="unknown column 'nope'|sort column 'nope' is not among"):
        gallery.sort("nope")
    with pytest.raises(ValueError, match="shows one method or any"):
        gallery.view.set_filter(Filter(methods=("gradcam", "xgradcam")))
    with pytest.raises(ValueError, match="method 'cam' is not among the Gallery's choices"):
        gallery.filter(method="cam")
    assert shown_rows(gallery) == before and gallery.controls.sort_by.value == "energy"
    assert gallery.controls.methods.value == "(any)"


# --- 16: the user's own columns --------------------------------------------------------------------
def test_an_added_column_sorts_filters_and_exports(gallery, result, tmp_path):
    table = result.table
    score = pd.Series((table["row"] * 7 % 24).to_numpy(dtype=float), index=table["row"])  # a permutation
    gallery.add_column("mine", score)
    assert "mine" in [v for _, v in gallery.controls.sort_by.options]
    gallery.controls.sort_by.value = "mine"
    assert shown_rows(gallery) == score.sort_values().index[:12].tolist()
    gallery.add_column("half", [i / 2 for i in range(len(table))])  # table order
    gallery.filter(range=("half", 3, 4.5))
    assert sorted(shown_rows(gallery)) == [6, 7, 8, 9]
    written = read_table(gallery.export_csv(tmp_path / "mine"))
    assert written["mine"].tolist() == score[written["row"]].tolist()


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("energy", [0.0] * 24, "column 'energy' exists already"),
        ("x", [0.0] * 23, "has 23 values for 24 rows"),
        ("x", ["a"] * 24, "must hold numbers; value 0 is 'a'"),
        ("x", pd.Series([1.0], index=[99]), r"rows \[99\] are not in the table"),
        ("", [0.0] * 24, "a column name must be a non-empty str"),
    ],
)
def test_bad_columns_get_clear_errors(gallery, name, values, message):
    with pytest.raises(ValueError, match=message):
        gallery.add_column(name, values)
    assert "x" not in gallery.table.columns


# --- 17: Grad-CAM = XGrad-CAM at a GAP layer -------------------------------------------------------
def test_identical_maps_show_as_one_tile_with_the_default_methods(bundle):
    gallery = Gallery(bundle, "shapes:4", metrics=["energy"], background=False)
    try:
        table = gallery.table.frame
        for image in range(4):
            rows = table[table["image"] == image].set_index("method")["row"]
            np.testing.assert_allclose(gallery.maps[rows["gradcam"]], gallery.maps[rows["xgradcam"]], atol=1e-5)
        assert len(table) == 8 and len(shown_rows(gallery)) == 4  # one tile per image
        assert all("gradcam = xgradcam features.block4" in tile.caption.value for tile in gallery.tiles[:4])
        assert "the maps are identical" in gallery.controls.twins_note.value
        gallery.controls.merge_twins.value = False
        assert shown_rows(gallery) == list(range(8))
        gallery.filter(method="xgradcam", merge_twins=True)  # the kept twin is filtered out: xgradcam shows
        assert shown_rows(gallery) == table[table["method"] == "xgradcam"]["row"].tolist()
    finally:
        gallery.close()


def test_explicit_methods_show_both_and_say_why(gallery):
    assert len(shown_rows(gallery)) == 12 and gallery.controls.merge_twins.value is False
    assert "features.block4" in gallery.controls.twins_note.value


def test_the_method_grid_shows_identical_maps_once(bundle):
    image = open_images("shapes:1", bundle.preprocess).image(0)
    session = xw.Session(bundle, image)
    maps = session.method_maps("features.block4", 0, ["gradcam", "xgradcam", "hirescam"])
    np.testing.assert_allclose(maps["gradcam"], maps["xgradcam"], rtol=1e-4, atol=1e-6)  # the identity
    fig = method_grid(session, layer="features.block4", target=0, methods=["gradcam", "xgradcam", "hirescam"])
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Grad-CAM = XGrad-CAM", "HiResCAM"] and len(fig.data) == 4  # two panels: photo + map each


def test_an_added_column_follows_rows_that_arrive_later(bundle):
    data = GatedShapes(8, gate_at=4)
    gallery = Gallery(bundle, data, methods=["gradcam"], metrics=["average_drop"], batch_size=4)
    try:
        wait_until(lambda: gallery.progress.value == 4)
        gallery.add_column("mine", pd.Series([3.0, 1.0, 2.0, 0.0], index=[0, 1, 2, 3]))
        gallery.sort("mine")
        assert shown_rows(gallery) == [3, 1, 2, 0]
        data.gate.set()
        gallery.wait()
        wait_until(lambda: len(gallery.table) == 8)
        assert gallery.controls.sort_by.value == "mine" and shown_rows(gallery) == [3, 1, 2, 0, 4, 5, 6, 7]
        assert gallery.table.frame["mine"].isna().tolist() == [False] * 4 + [True] * 4  # NaN: no value given
    finally:
        data.gate.set()
        gallery.close()
