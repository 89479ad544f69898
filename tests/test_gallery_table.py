"""xcam_widgets.gallery.table, query and view: sort, filter and page a small hand-made table.

Every expected order below is written out by hand from the table in `frame()`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xcam_widgets.gallery import Filter, GalleryTable, GalleryView, Range, Sort, page_bounds

NAN = math.nan


def frame() -> pd.DataFrame:
    """8 rows (given in reverse `row` order, so the table must reorder them). Row 4 failed to load."""
    rows = [
        # row image   method      layer     class name   label pred correct error            energy pointing
        (0, "a.png", "gradcam", "layer4", 0.0, "cat", 0, 0.0, True, "", 0.5, 1.0),
        (1, "b.png", "gradcam", "layer4", 1.0, "dog", 1, 0.0, False, "", NAN, NAN),
        (2, "c.png", "gradcam", "layer4", 1.0, "dog", -1, 1.0, NAN, "", 0.2, NAN),
        (3, "a.png", "xgradcam", "layer4", 0.0, "cat", 0, 0.0, True, "", 0.5, 0.0),
        (4, "d.png", "xgradcam", "layer4", NAN, None, -1, NAN, NAN, "cannot identify image", NAN, NAN),
        (5, "b.png", "xgradcam", "layer3", 1.0, "dog", 1, 0.0, False, "", 0.9, 0.0),
        (6, "c.png", "cam", "layer3", 1.0, "dog", -1, 1.0, NAN, "", 0.2, 1.0),
        (7, "e.png", "cam", "layer3", 0.0, "cat", 0, 2.0, False, "", 0.1, 0.0),
    ]
    columns = [
        "row",
        "image",
        "method",
        "layer",
        "class",
        "class_name",
        "label",
        "predicted",
        "correct",
        "error",
        "energy",
        "pointing",
    ]
    return pd.DataFrame(rows[::-1], columns=columns)


def rows_of(selection) -> list[int]:
    return selection.frame()["row"].tolist()


@pytest.fixture
def table() -> GalleryTable:
    return GalleryTable(frame())


def test_no_sort_keeps_row_order(table):
    assert rows_of(table.select()) == list(range(8))


@pytest.mark.parametrize(
    "descending, expected",
    [
        (False, [7, 2, 6, 0, 3, 5, 1, 4]),  # 0.1, 0.2 0.2 (ties by row), 0.5 0.5, 0.9, NaN NaN last
        (True, [5, 0, 3, 2, 6, 7, 1, 4]),  # 0.9, 0.5 0.5, 0.2 0.2, 0.1, NaN NaN still last
    ],
)
def test_sort_numeric_nan_last_ties_by_row(table, descending, expected):
    assert rows_of(table.select(sort=Sort("energy", descending))) == expected


def test_sort_text_and_boolean_columns(table):
    assert rows_of(table.select(sort=Sort("method"))) == [6, 7, 0, 1, 2, 3, 4, 5]  # cam < gradcam < xgradcam
    assert rows_of(table.select(sort=Sort("image", True))) == [7, 4, 2, 6, 1, 5, 0, 3]
    # correct: False (1, 5, 7), True (0, 3), then the unlabelled NaN (2, 4, 6)
    assert rows_of(table.select(sort=Sort("correct"))) == [1, 5, 7, 0, 3, 2, 4, 6]
    assert rows_of(table.select(sort=Sort("correct", True))) == [0, 3, 1, 5, 7, 2, 4, 6]


@pytest.mark.parametrize(
    "query, expected",
    [
        (Filter(classes=(1,)), [1, 2, 5, 6]),
        (Filter(classes=[0, 1]), [0, 1, 2, 3, 5, 6, 7]),  # type: ignore[arg-type]  # row 4 has no class
        (Filter(methods="gradcam"), [0, 1, 2]),  # type: ignore[arg-type]
        (Filter(methods=("nope",)), []),
        (Filter(layers=("layer3",)), [5, 6, 7]),
        (Filter(outcome="correct"), [0, 3]),
        (Filter(outcome="misclassified"), [1, 5, 7]),
        (Filter(outcome="unlabelled"), [2, 4, 6]),
        (Filter(errors="only"), [4]),
        (Filter(errors="none"), [0, 1, 2, 3, 5, 6, 7]),
        (Filter(ranges=(Range("energy", 0.2, 0.5),)), [0, 2, 3, 6]),  # both ends inclusive, NaN out
        (Filter(ranges=(Range("energy", low=0.6),)), [5]),
        (Filter(classes=(1,), outcome="misclassified"), [1, 5]),
    ],
)
def test_filters(table, query, expected):
    assert rows_of(table.select(query)) == expected


def test_filter_then_sort(table):
    selection = table.select(Filter(classes=(1,)), Sort("energy", True))
    assert rows_of(selection) == [5, 2, 6, 1]


def test_error_column_from_csv_reads_nan_as_no_error():
    data = frame()
    data["error"] = data["error"].replace("", np.nan)  # what read_csv gives back for ""
    assert rows_of(GalleryTable(data).select(Filter(errors="only"))) == [4]


def test_missing_correct_and_error_columns_mean_unknown():
    table = GalleryTable(frame().drop(columns=["correct", "error"]))
    assert rows_of(table.select(Filter(outcome="correct"))) == []
    assert len(table.select(Filter(outcome="unlabelled"))) == 8
    assert len(table.select(Filter(errors="none"))) == 8


def test_selections_are_cached_and_read_only(table):
    first = table.select(Filter(classes=(1,)), Sort("energy"))
    assert table.select(Filter(classes=[1]), Sort("energy")) is first  # equal filters are one key
    with pytest.raises(ValueError):
        first.positions[0] = 3


@pytest.mark.parametrize(
    "total, size, index, expected",
    [
        (0, 24, 0, (0, 1, 0, 0)),  # an empty table has one empty page
        (50, 24, 2, (2, 3, 48, 50)),  # the last page is partial
        (48, 24, 5, (1, 2, 24, 48)),  # past the end: the last page
        (48, 24, -3, (0, 2, 0, 24)),  # below 0: the first page
        (24, 24, 1, (0, 1, 0, 24)),
    ],
)
def test_page_bounds(total, size, index, expected):
    assert page_bounds(total, size, index) == expected


def test_pages_of_a_selection(table):
    selection = table.select()
    last = selection.page(2, 3)
    assert (last.index, last.count, last.start, last.total) == (2, 3, 6, 8)
    assert last.rows.tolist() == [6, 7]
    assert selection.page(99, 3).rows.tolist() == [6, 7]
    assert selection.page(-1, 3).rows.tolist() == [0, 1, 2]


def test_empty_table():
    table = GalleryTable(frame().iloc[:0])
    page = table.select(Filter(classes=(1,)), Sort("energy")).page(3, 24)
    assert (page.index, page.count, page.total, len(page)) == (0, 1, 0, 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.select(sort=Sort("nope")), "unknown column 'nope'"),
        (lambda t: t.select(Filter(ranges=(Range("method", 0, 1),))), "column 'method' is not numeric"),
        (lambda t: t.select().page(0, 0), "page size must be a positive int"),
        (lambda t: t.select().page("1", 24), "page index must be an int"),
        (lambda t: t.select(Filter(outcome="wrong")), "outcome must be one of"),  # type: ignore[arg-type]
        (lambda t: t.select(Filter(errors="yes")), "errors must be one of"),  # type: ignore[arg-type]
        (lambda t: t.select(Filter(classes=("cat",))), "classes must hold int values"),  # type: ignore[arg-type]
        (lambda t: Range("energy", 1.0, 0.0), "range on 'energy' is empty"),
        (lambda t: Range("energy", math.nan), "range low on 'energy' must be a number"),
        (lambda t: Sort("energy", descending="yes"), "descending must be a bool"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_name_the_problem(table, call, message):
    with pytest.raises(ValueError, match=message):
        call(table)


@pytest.mark.parametrize(
    "data, message",
    [
        (frame().drop(columns=["row"]), "needs a 'row' column"),
        (frame().assign(row=[0, 1, 2, 3, 3, 5, 6, 7]), "'row' column must be unique"),
        (frame().assign(row=np.arange(8) + 0.5), "'row' column must hold integers"),
        (frame().to_dict(), "as a DataFrame, got dict"),
    ],
)
def test_bad_tables(data, message):
    with pytest.raises(ValueError, match=message):
        GalleryTable(data)


def test_view_resets_the_page_on_a_new_sort_or_filter(table):
    view = GalleryView(table, page_size=3)
    assert view.set_page(2).rows.tolist() == [6, 7]
    assert view.set_sort("energy", descending=True).rows.tolist() == [5, 0, 3]
    view.set_page(1)
    assert view.set_filter(Filter(classes=(1,))).rows.tolist() == [5, 2, 6]
    assert view.page_index == 0
    assert view.next_page().rows.tolist() == [1]
    assert view.next_page().index == 1  # clamped at the last page
    assert view.previous_page().index == 0


def test_view_page_size_keeps_the_first_row_on_screen(table):
    view = GalleryView(table, page_size=2)
    view.set_page(2)  # rows 4, 5: offset 4
    page = view.set_page_size(3)
    assert (page.index, page.rows.tolist()) == (1, [3, 4, 5])  # offset 4 is on page 4 // 3 = 1


def test_view_bad_change_leaves_the_state_alone(table):
    view = GalleryView(table, page_size=3)
    view.set_sort("energy")
    view.set_page(1)
    for bad in (
        lambda: view.set_sort("nope"),
        lambda: view.set_page_size(0),
        lambda: view.set_filter(Filter(ranges=(Range("image", 0, 1),))),
    ):
        with pytest.raises(ValueError):
            bad()
    assert (view.sort, view.filter, view.page_size, view.page_index) == (Sort("energy"), Filter(), 3, 1)


def test_view_keeps_its_place_when_the_table_grows_or_shrinks(table):
    view = GalleryView(GalleryTable(frame().iloc[4:]), page_size=3)  # rows 0..3 only (reversed frame)
    view.set_sort("energy")
    assert view.page.rows.tolist() == [2, 0, 3]
    view.set_page(1)
    assert view.set_table(table).rows.tolist() == [0, 3, 5]  # the full table, same sort, same page
    view.set_page(2)
    assert view.set_table(GalleryTable(frame().iloc[6:])).index == 0  # 2 rows: clamped to page 0
    assert view.page_index == 0
