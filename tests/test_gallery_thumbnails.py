"""xcam_widgets.gallery.thumbnails and colormaps: maps from the table to small RGB thumbnails.

Oracles: hand computations, torch's bilinear interpolation and Plotly's colour scales."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale

from xcam_widgets.gallery import (
    COLORMAPS,
    GalleryTable,
    Sort,
    ThumbnailStyle,
    colormap_lut,
    encode,
    encode_all,
    page_thumbnails,
    thumbnail,
    unit_map,
    upsample,
)
from xcam_widgets.gallery.thumbnails import PLACEHOLDER_GREY, downsized


def test_unit_map_relu_then_min_max():
    raw = np.array([[-1.0, 0.0], [2.0, 4.0]], dtype=np.float16)
    np.testing.assert_allclose(unit_map(raw), [[0.0, 0.0], [0.5, 1.0]])
    # all positive: the minimum goes to 0, not ReLU's zero
    np.testing.assert_allclose(unit_map(np.array([[2.0, 3.0, 4.0]])), [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize(
    "raw",
    [
        np.full((4, 4), 3.0, dtype=np.float16),  # constant
        -np.ones((4, 4), dtype=np.float16),  # all negative: ReLU leaves zeros
        np.array([[1.0, 1.0 + 2.0**-10]], dtype=np.float16),  # one float16 step apart: round-off
        np.array([[np.nan, np.inf], [-np.inf, 0.0]], dtype=np.float16),  # nothing finite and positive
    ],
)
def test_flat_maps_stay_zero(raw):
    assert not unit_map(raw).any()


def test_two_float16_steps_are_not_flat():
    unit = unit_map(np.array([[1.0, 1.0 + 2.0**-9]], dtype=np.float16))
    np.testing.assert_allclose(unit, [[0.0, 1.0]])


def test_unit_map_rejects_non_2d():
    with pytest.raises(ValueError, match=r"must be a non-empty 2-D array \[h, w\], got shape \(4,\)"):
        unit_map(np.zeros(4))


@pytest.mark.parametrize(
    "shape, size", [((7, 5), (96, 40)), ((32, 32), (96, 96)), ((3, 4), (3, 4)), ((1, 6), (10, 50))]
)
def test_upsample_matches_torch_bilinear(shape, size):
    low = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(low)[None, None], size=size, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(upsample(low, size), expected[0, 0].numpy(), atol=1e-5)  # float32 round-off


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormap_matches_plotly(name):
    levels = list(np.arange(256) / 255)
    plotly = np.array(
        [
            [float(v) for v in re.findall(r"[\d.]+", colour)[:3]]
            for colour in sample_colorscale(get_colorscale(name), levels)
        ]
    )
    assert np.abs(colormap_lut(name).astype(float) - plotly).max() <= 1.0  # our LUT rounds to integers


def test_single_hot_cell_lands_in_its_place():
    raw = np.zeros((4, 4), dtype=np.float16)
    raw[1, 2] = 5.0
    black = np.zeros((64, 64, 3), dtype=np.uint8)
    thumb = thumbnail(black, raw, ThumbnailStyle(side=64, colormap="Hot", opacity=1.0))
    brightness = thumb.astype(float).sum(axis=2)
    peak = np.unravel_index(np.argmax(brightness), brightness.shape)
    assert 16 <= peak[0] < 32 and 32 <= peak[1] < 48  # cell (1, 2) covers rows 16..31, columns 32..47
    ys, xs = np.mgrid[:64, :64]
    # the bilinear bump is symmetric about the cell's centre (23.5, 39.5), and so is any colour of it
    assert (ys * brightness).sum() / brightness.sum() == pytest.approx(23.5)
    assert (xs * brightness).sum() / brightness.sum() == pytest.approx(39.5)


def test_blend_by_hand():
    raw = np.zeros((4, 4), dtype=np.float32)
    raw[1, 2] = 1.0
    grey = np.full((60, 60, 3), 100, dtype=np.uint8)
    thumb = thumbnail(grey, raw, ThumbnailStyle(side=60, colormap="Jet", opacity=0.5, threshold=0.0))
    # pixel (22, 37) samples cell (1, 2) exactly, (22.5·4/60 - 0.5, 37.5·4/60 - 0.5) = (1, 2): Jet(1) = (128, 0, 0)
    assert thumb[22, 37].tolist() == [114, 50, 50]
    # far from the hot cell the map is 0: Jet(0) = (0, 0, 131)
    assert thumb[59, 0].tolist() == [50, 50, 116]
    thresholded = thumbnail(grey, raw, ThumbnailStyle(side=60, opacity=0.5, threshold=0.5))
    assert thresholded[59, 0].tolist() == [100, 100, 100]  # below the threshold: the image itself
    assert thresholded[22, 37].tolist() == [114, 50, 50]


def test_flat_map_draws_no_overlay():
    image = np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    style = ThumbnailStyle(side=40)
    bare = downsized(image, 40)
    assert bare.shape == (25, 40, 3)  # the aspect ratio is kept
    np.testing.assert_array_equal(thumbnail(image, np.full((7, 7), 0.25, dtype=np.float16), style), bare)
    np.testing.assert_array_equal(thumbnail(image, None, style), bare)


def test_grey_image_and_bad_images():
    assert thumbnail(np.zeros((10, 10), dtype=np.uint8), None, ThumbnailStyle(side=5)).shape == (5, 5, 3)
    with pytest.raises(ValueError, match="display image must be uint8"):
        thumbnail(np.zeros((10, 10, 3), dtype=np.float32), None)
    with pytest.raises(ValueError, match="display image must be uint8"):
        thumbnail(np.zeros((10, 10, 4), dtype=np.uint8), None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(side=0), "thumbnail side must be a positive int"),
        (dict(colormap="Rainbow"), "unknown colormap 'Rainbow'"),
        (dict(opacity=1.5), r"opacity must be a number in \[0, 1\]"),
        (dict(threshold=-0.1), r"threshold must be a number in \[0, 1\]"),
    ],
)
def test_bad_styles(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ThumbnailStyle(**kwargs)


class CountingMaps(Mapping):
    """A map store that records which rows were read (membership, as in the runner's MapStore, is no read)."""

    def __init__(self, maps: dict[int, np.ndarray]):
        self.maps = maps
        self.read: list[int] = []

    def __getitem__(self, row: int) -> np.ndarray:
        self.read.append(row)
        return self.maps[row]

    def __contains__(self, row: object) -> bool:
        return row in self.maps

    def __iter__(self):
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)


def test_page_thumbnails_read_only_the_page():
    table = GalleryTable(pd.DataFrame({"row": range(6), "image": [0, 0, 1, 1, 2, 2], "energy": [5, 4, 3, 2, 1, 0]}))
    hot = np.zeros((2, 2), dtype=np.float16)
    hot[0, 0] = 1.0
    maps = CountingMaps({row: hot for row in range(6) if row not in (3, 5)})  # rows without a map (errors)
    loaded = []

    def display(image_id):
        loaded.append(image_id)
        return None if image_id == 2 else np.full((8, 8, 3), 60 * image_id, dtype=np.uint8)

    page = table.select(sort=Sort("energy")).page(0, 4)  # rows 5, 4, 3, 2
    assert page.rows.tolist() == [5, 4, 3, 2]
    thumbs = page_thumbnails(page, display, maps, ThumbnailStyle(side=8))
    assert sorted(maps.read) == [2, 4]  # only the page's rows that have maps
    assert loaded == [2, 1]  # each image loaded once
    assert (thumbs[0] == PLACEHOLDER_GREY).all()  # row 5: image 2 could not be shown, and has no map
    np.testing.assert_array_equal(thumbs[2], np.full((8, 8, 3), 60, dtype=np.uint8))  # row 3: bare image
    assert not np.array_equal(thumbs[3], thumbs[2])  # row 2: same image with its map


def test_encode_round_trips():
    pixels = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png = encode(pixels, "PNG")
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
    jpegs = encode_all([pixels, pixels])
    assert len(jpegs) == 2 and jpegs[0].startswith(b"\xff\xd8")
    assert Image.open(io.BytesIO(jpegs[0])).size == (32, 24)
    with pytest.raises(ValueError, match="format must be one of"):
        encode(pixels, "GIF")
    with pytest.raises(ValueError, match=r"JPEG quality must be an int in \[1, 95\]"):
        encode(pixels, "JPEG", 100)
