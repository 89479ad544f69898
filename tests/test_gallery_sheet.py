"""xcam_widgets.gallery.sheet and the CSV export: captions, the contact sheet as PNG and HTML."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_gallery_table import frame

from xcam_widgets.gallery import Filter, GalleryTable, Sort, caption_lines, contact_sheet_html, contact_sheet_png


@pytest.mark.parametrize(
    "record, metric, expected",
    [
        (
            dict(row=3, image="cats/a.png", method="gradcam", layer="layer4", label=0, predicted=0, energy=0.51234),
            "energy",
            ("#3 a.png", "gradcam layer4", "label 0 (right)", "energy 0.512"),
        ),
        (
            dict(row=1, image=7, method="cam", layer="l", label=1.0, predicted=0.0, energy=math.nan),
            "energy",
            ("#1 7", "cam l", "label 1 -> pred 0 (wrong)", "energy n/a"),
        ),
        (
            dict(row=2, image="c.png", method="cam", layer="l", label=-1, predicted=4, error=""),
            None,
            ("#2 c.png", "cam l", "pred 4"),
        ),
        (
            dict(
                row=4,
                image="d.png",
                method="cam",
                layer="l",
                label=-1,
                predicted=math.nan,
                class_name=None,
                error="cannot identify image",
            ),
            "energy",
            ("#4 d.png", "cam l", "error: cannot identify image"),
        ),
    ],
)
def test_caption_lines(record, metric, expected):
    assert caption_lines(record, metric) == expected


def tiles(count: int, size: int = 20) -> list[np.ndarray]:
    return [np.full((size, size, 3), 10 * (i + 1), dtype=np.uint8) for i in range(count)]


def test_contact_sheet_png_places_every_tile():
    thumbs = tiles(5)
    png = contact_sheet_png(thumbs, [("a", "b")] * 5, columns=3, padding=4)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    cell_w, cell_h = 20 + 4, 20 + 2 * 12 + 4  # tile + padding; tile + two caption lines + padding
    assert sheet.shape == (4 + 2 * cell_h, 4 + 3 * cell_w, 3)
    for i, thumb in enumerate(thumbs):
        y, x = 4 + (i // 3) * cell_h, 4 + (i % 3) * cell_w
        np.testing.assert_array_equal(sheet[y : y + 20, x : x + 20], thumb)
    assert (sheet[4 + 20 : 4 + 20 + 24, 4:24] < 128).any()  # the caption was drawn under the first tile


def test_contact_sheet_png_of_nothing_and_bad_arguments():
    assert Image.open(io.BytesIO(contact_sheet_png([], []))).size[0] > 0
    with pytest.raises(ValueError, match="2 thumbnails but 1 captions"):
        contact_sheet_png(tiles(2), [("a",)])
    with pytest.raises(ValueError, match="columns must be a positive int"):
        contact_sheet_png(tiles(1), [("a",)], columns=0)


def test_contact_sheet_html_is_self_contained():
    thumbs = tiles(3, size=16)
    page = contact_sheet_html(thumbs, [("#0 a.png", "error: <bad> & worse")] * 3, title="shortcut <net>")
    sources = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(sources) == 3
    assert Image.open(io.BytesIO(base64.b64decode(sources[0]))).size == (16, 16)
    assert "error: &lt;bad&gt; &amp; worse" in page and "<bad>" not in page
    assert "<title>shortcut &lt;net&gt;</title>" in page
    assert "http" not in page and 'src="/' not in page  # nothing to fetch


def test_selection_to_csv_in_display_order(tmp_path):
    table = GalleryTable(frame())
    selection = table.select(Filter(classes=(1,)), Sort("energy", descending=True))
    text = selection.to_csv()
    back = pd.read_csv(io.StringIO(text))
    assert back["row"].tolist() == [5, 2, 6, 1]
    assert list(back.columns) == list(frame().columns)
    path = tmp_path / "selection.csv"
    assert selection.to_csv(str(path)) is None
    assert path.read_text() == text
