"""`regions`: 4-connected components against `scipy.ndimage.label` (the oracle), the region a click picks,
and SVG outlines checked by hand and against a boundary count made independently with NumPy."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy import ndimage

from xcam_widgets.regions import components, outline_path, region_at, region_of


def random_mask(shape: tuple[int, int], seed: int, density: float = 0.55) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < density


def checkerboard(height: int, width: int) -> np.ndarray:
    rows, cols = np.indices((height, width))
    return (rows + cols) % 2 == 0


def snake(height: int, width: int) -> np.ndarray:
    """Full rows joined at alternating ends: one region whose path is about height * width / 2 pixels long."""
    mask = np.zeros((height, width), dtype=bool)
    mask[::2] = True
    for row in range(1, height, 2):
        mask[row, width - 1 if row % 4 == 1 else 0] = True
    return mask


def spiral(size: int) -> np.ndarray:
    """A clockwise square spiral of width 1 with 1-pixel gaps between its turns, from the top-left corner
    inwards: one region about size² / 2 pixels long."""
    mask = np.zeros((size, size), dtype=bool)
    row, col, d_row, d_col = 0, 0, 0, 1
    mask[0, 0] = True
    turns = 0
    while turns < 2:  # stop when neither going on nor turning right finds room
        ahead, beyond = (row + d_row, col + d_col), (row + 2 * d_row, col + 2 * d_col)
        if inside(mask, ahead) and not mask[ahead] and not (inside(mask, beyond) and mask[beyond]):
            row, col = ahead
            mask[ahead] = True
            turns = 0
        else:
            d_row, d_col = d_col, -d_row
            turns += 1
    return mask


def inside(mask: np.ndarray, pixel: tuple[int, int]) -> bool:
    return 0 <= pixel[0] < mask.shape[0] and 0 <= pixel[1] < mask.shape[1]


MASKS = {
    **{f"random{seed}_{h}x{w}": random_mask((h, w), seed) for seed, (h, w) in enumerate([(9, 13), (32, 32), (17, 5)])},
    "sparse": random_mask((24, 20), 7, density=0.3),
    "dense": random_mask((24, 20), 8, density=0.8),
    "row_1xN": random_mask((1, 23), 9),
    "column_Nx1": random_mask((19, 1), 10),
    "single_pixel": np.ones((1, 1), dtype=bool),
    "all_false": np.zeros((6, 7), dtype=bool),
    "all_true": np.ones((6, 7), dtype=bool),
    "checkerboard": checkerboard(8, 9),
    "snake": snake(40, 40),
    "spiral": spiral(31),
}


def same_partition(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Both labellings leave the same pixels unlabelled (0), and two labelled pixels share a label in one
    exactly when they share it in the other."""
    ours, reference = ours.ravel(), reference.ravel()
    if not np.array_equal(ours == 0, reference == 0):
        return False
    on = ours != 0
    a, b = ours[on], reference[on]
    return bool(np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :]))


def test_the_oracle_helpers_see_what_they_should():
    assert ndimage.label(snake(40, 40))[1] == 1 and snake(40, 40).sum() == 20 * 40 + 20
    assert ndimage.label(spiral(31))[1] == 1 and spiral(31).sum() > 500
    assert ndimage.label(checkerboard(8, 9))[1] == 36  # no two True squares share an edge
    assert not same_partition(np.array([1, 1, 2]), np.array([1, 1, 1]))
    assert not same_partition(np.array([1, 0, 2]), np.array([1, 2, 2]))
    assert same_partition(np.array([5, 0, 9, 5]), np.array([1, 0, 2, 1]))


@pytest.mark.parametrize("name", sorted(MASKS))
def test_components_give_scipys_4_connected_partition(name):
    mask = MASKS[name]
    reference, count = ndimage.label(mask)  # the default structure: 4-connectivity
    ids = components(torch.from_numpy(mask)).numpy()
    assert same_partition(ids, reference), name
    flat = np.arange(mask.size).reshape(mask.shape)
    for k in range(1, count + 1):  # each region is named 1 + its largest flat index
        region = reference == k
        assert set(np.unique(ids[region]).tolist()) == {int(flat[region].max()) + 1}


def test_components_accept_a_0_1_mask_and_reject_other_ranks():
    mask = MASKS["random1_32x32"]
    assert torch.equal(components(torch.from_numpy(mask.astype(np.int64))), components(torch.from_numpy(mask)))
    with pytest.raises(ValueError, match=r"\[H, W\].*\(2, 3, 4\)"):
        components(torch.zeros(2, 3, 4, dtype=torch.bool))


def label_map(shape: tuple[int, int], seed: int, classes: int = 3) -> np.ndarray:
    """Random blocky labels (2x2 cells), so that each label has regions of several sizes."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, classes, size=((shape[0] + 1) // 2, (shape[1] + 1) // 2))
    return np.kron(cells, np.ones((2, 2), dtype=np.int64))[: shape[0], : shape[1]]


@pytest.mark.parametrize("seed, shape", [(0, (12, 15)), (1, (1, 20)), (2, (20, 1)), (3, (7, 7))])
def test_region_at_and_region_of_match_scipy_on_every_pixel(seed, shape):
    labels = label_map(shape, seed)
    flat = np.arange(labels.size).reshape(shape)
    tensor = torch.from_numpy(labels)
    for row in range(shape[0]):
        for col in range(shape[1]):
            label = int(labels[row, col])
            reference, _ = ndimage.label(labels == label)
            expected = reference == reference[row, col]
            found, region_id, region = region_at(tensor, row, col)
            assert (found, region_id) == (label, int(flat[expected].max()))
            assert np.array_equal(region.numpy(), expected)
            assert torch.equal(region_of(tensor, label, region_id), region)


def test_region_of_rejects_an_id_that_names_no_region():
    labels = torch.tensor([[0, 0, 1], [1, 1, 1], [0, 2, 2]])
    label, region_id, region = region_at(labels, 0, 0)
    assert (label, region_id) == (0, 1) and region.sum() == 2
    with pytest.raises(ValueError, match="no region of label 0 ends at flat index 0"):
        region_of(labels, 0, 0)  # inside the region, but not its last pixel
    with pytest.raises(ValueError, match="no region of label 1 ends at flat index 1"):
        region_of(labels, 1, 1)  # the last pixel of a label-0 region
    with pytest.raises(ValueError, match="no region of label 2 ends at flat index 5"):
        region_of(labels, 2, 5)  # the last pixel of the label-1 region
    with pytest.raises(ValueError, match="not a flat pixel index"):
        region_of(labels, 2, 9)  # past the last pixel


@pytest.mark.parametrize("row, col", [(-1, 0), (0, -1), (3, 0), (0, 4), (5, 9)])
def test_region_at_rejects_a_pixel_outside_the_map(row, col):
    with pytest.raises(ValueError, match=rf"row {row}, column {col}.*outside the 3×4"):
        region_at(torch.zeros(3, 4, dtype=torch.long), row, col)


# --- outlines -----------------------------------------------------------------------------------
def test_outline_of_one_pixel_by_hand():
    # the square around pixel centre (0, 0): top, bottom, then left, right edges at ±0.5
    square = "M-0.5,-0.5L0.5,-0.5M-0.5,0.5L0.5,0.5M-0.5,-0.5L-0.5,0.5M0.5,-0.5L0.5,0.5"
    assert outline_path(np.ones((1, 1), dtype=bool), (1, 1)) == square
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True  # centre x = 2, y = 1
    assert outline_path(mask, (3, 4)) == "M1.5,0.5L2.5,0.5M1.5,1.5L2.5,1.5M1.5,0.5L1.5,1.5M2.5,0.5L2.5,1.5"


def test_outline_of_two_pixels_by_hand():
    # 2 rows x 1 column: the long sides are one segment each
    tall = "M-0.5,-0.5L0.5,-0.5M-0.5,1.5L0.5,1.5M-0.5,-0.5L-0.5,1.5M0.5,-0.5L0.5,1.5"
    assert outline_path(np.ones((2, 1), dtype=bool), (2, 1)) == tall
    wide = "M-0.5,-0.5L1.5,-0.5M-0.5,0.5L1.5,0.5M-0.5,-0.5L-0.5,0.5M1.5,-0.5L1.5,0.5"
    assert outline_path(np.ones((1, 2), dtype=bool), (1, 2)) == wide


def test_outline_is_stretched_over_a_larger_image():
    mask = np.array([[True, False], [False, False]])
    # on 4x4 each mask pixel covers 2x2 image pixels: pixel centres 0 and 1, edges at -0.5 and 1.5
    square = "M-0.5,-0.5L1.5,-0.5M-0.5,1.5L1.5,1.5M-0.5,-0.5L-0.5,1.5M1.5,-0.5L1.5,1.5"
    assert outline_path(mask, (4, 4)) == square
    # 4 rows x 6 columns: 2 image pixels per mask row, 3 per mask column
    assert outline_path(mask, (4, 6)) == "M-0.5,-0.5L2.5,-0.5M-0.5,1.5L2.5,1.5M-0.5,-0.5L-0.5,1.5M2.5,-0.5L2.5,1.5"


def test_outline_of_an_empty_mask_is_empty():
    assert outline_path(np.zeros((5, 3), dtype=bool), (10, 6)) == ""


SEGMENT = re.compile(r"M(-?\d+\.\d),(-?\d+\.\d)L(-?\d+\.\d),(-?\d+\.\d)")


def path_edges(path: str, scale: tuple[int, int]) -> tuple[float, set[tuple[str, int, int]]]:
    """(the summed length of the path's segments, the unit mask edges they cover): ("h", r, c) is the edge
    above mask pixel (r, c), ("v", r, c) the edge left of it. Every segment must be axis-aligned."""
    assert SEGMENT.sub("", path) == "", "the path holds only M x,y L x,y segments"
    sy, sx = scale
    length, edges = 0.0, set()
    for x1, y1, x2, y2 in (map(float, m) for m in SEGMENT.findall(path)):
        length += abs(x2 - x1) + abs(y2 - y1)
        # back to mask edge coordinates: image coordinate v = mask coordinate * scale - 0.5
        c1, c2, r1, r2 = ((x1 + 0.5) / sx, (x2 + 0.5) / sx, (y1 + 0.5) / sy, (y2 + 0.5) / sy)
        assert all(float(v).is_integer() for v in (c1, c2, r1, r2))
        if r1 == r2:
            edges |= {("h", int(r1), c) for c in range(int(min(c1, c2)), int(max(c1, c2)))}
        else:
            assert c1 == c2, "segments are horizontal or vertical"
            edges |= {("v", r, int(c1)) for r in range(int(min(r1, r2)), int(max(r1, r2)))}
    return length, edges


def boundary_edges(mask: np.ndarray) -> set[tuple[str, int, int]]:
    """The unit edges between a mask pixel and a pixel off the mask (or outside the array), counted
    one pixel at a time."""
    height, width = mask.shape
    edges = set()
    for r, c in zip(*np.nonzero(mask)):
        r, c = int(r), int(c)
        if r == 0 or not mask[r - 1, c]:
            edges.add(("h", r, c))
        if r == height - 1 or not mask[r + 1, c]:
            edges.add(("h", r + 1, c))
        if c == 0 or not mask[r, c - 1]:
            edges.add(("v", r, c))
        if c == width - 1 or not mask[r, c + 1]:
            edges.add(("v", r, c + 1))
    return edges


@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("scale", [(1, 1), (2, 3)])
def test_outline_length_is_the_perimeter(name, scale):
    mask = MASKS[name]
    sy, sx = scale
    path = outline_path(mask, (mask.shape[0] * sy, mask.shape[1] * sx))
    length, covered = path_edges(path, scale)
    expected = boundary_edges(mask)
    horizontal = sum(kind == "h" for kind, _, _ in expected)
    assert length == pytest.approx(horizontal * sx + (len(expected) - horizontal) * sy)
    assert covered == expected
