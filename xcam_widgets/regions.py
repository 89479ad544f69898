"""Connected regions of a label map and their outlines: what a click on a segmentation picks and draws.

Pure torch/NumPy on `[H, W]` arrays, no model and no widgets."""

from __future__ import annotations

import numpy as np
import torch


def components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected regions of a bool `[H, W]` mask: each pixel holds 1 + the largest flat index of its
    region, 0 off the mask.

    Two-pass labelling on runs: each row's runs of True are nodes, runs of consecutive rows that overlap
    are joined (union-find), and each region's pixels are written at once. The work grows with the number
    of runs, not with a region's length, so a whole-image region of a 520×520 output takes milliseconds."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {tuple(mask.shape)}")
    pixels = mask.detach().cpu().bool().numpy()
    height, width = pixels.shape
    edges = np.diff(np.pad(pixels, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)  # runs [start, stop) in row-major order
    stops = np.nonzero(edges == -1)[1]
    parent = list(range(len(starts)))

    def root(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    first = np.searchsorted(rows, np.arange(height + 1)).tolist()  # row r's runs: first[r] .. first[r + 1] - 1
    start_list, stop_list = starts.tolist(), stops.tolist()
    for row in range(height - 1):
        above, below, end_above, end_below = first[row], first[row + 1], first[row + 1], first[row + 2]
        while above < end_above and below < end_below:  # merge two sorted lists of runs
            if start_list[above] < stop_list[below] and start_list[below] < stop_list[above]:
                parent[root(above)] = root(below)
            if stop_list[above] < stop_list[below]:
                above += 1
            else:
                below += 1
    roots = np.array([root(run) for run in range(len(parent))], dtype=np.int64)
    last_pixel = rows * width + stops - 1  # each run's largest flat index
    region_id = np.zeros(len(parent), dtype=np.int64)
    np.maximum.at(region_id, roots, last_pixel + 1)
    labels = np.zeros(height * width, dtype=np.int64)
    labels[np.flatnonzero(pixels)] = np.repeat(region_id[roots], stops - starts)
    return torch.from_numpy(labels.reshape(height, width)).to(mask.device)


def region_at(labels: torch.Tensor, row: int, col: int) -> tuple[int, int, torch.Tensor]:
    """(label under pixel (row, col), the region's id, the bool `[H, W]` region): the 4-connected pixels
    of that label that contain the pixel. The id (the region's largest flat index) names it whatever
    pixel inside it was picked."""
    height, width = labels.shape
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"pixel (row {row}, column {col}) is outside the {height}×{width} label map")
    label = int(labels[row, col])
    ids = components(labels == label)
    region_id = int(ids[row, col])
    return label, region_id - 1, ids == region_id


def region_of(labels: torch.Tensor, label: int, region_id: int) -> torch.Tensor:
    """The region named by `region_at`: the 4-connected pixels of `label` holding flat index `region_id`."""
    if not 0 <= region_id < labels.numel():
        raise ValueError(f"region id {region_id} is not a flat pixel index of the {tuple(labels.shape)} label map")
    row, col = divmod(region_id, labels.shape[1])
    found, same_id, region = region_at(labels, row, col)
    if found != label or same_id != region_id:
        raise ValueError(f"no region of label {label} ends at flat index {region_id} in this label map")
    return region


def _runs(edges: np.ndarray) -> list[tuple[int, int, int]]:
    """(line, start, stop) of each run of True along the last axis of a bool `[lines, n]` array."""
    padded = np.pad(edges.astype(np.int8), ((0, 0), (1, 1)))
    lines, starts = np.nonzero(np.diff(padded, axis=1) == 1)
    _, stops = np.nonzero(np.diff(padded, axis=1) == -1)
    return list(zip(lines.tolist(), starts.tolist(), stops.tolist()))


def outline_path(mask: np.ndarray, image_size: tuple[int, int]) -> str:
    """An SVG path ("M x y L x y …") along the boundary of a bool `[h, w]` mask, in the pixel
    coordinates of an image of `image_size` (H, W) over which the mask is stretched (pixel centres at
    integers, as Plotly draws images). Straight boundary runs are one segment each; "" for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols = mask.shape
    sy, sx = image_size[0] / rows, image_size[1] / cols
    padded = np.pad(mask, 1)
    horizontal = padded[:-1, 1:-1] != padded[1:, 1:-1]  # [rows + 1, cols]: edge above pixel row r
    vertical = padded[1:-1, :-1] != padded[1:-1, 1:]  # [rows, cols + 1]: edge left of pixel column c

    def at(value: float, scale: float) -> str:
        return f"{value * scale - 0.5:.1f}"

    parts = [f"M{at(a, sx)},{at(r, sy)}L{at(b, sx)},{at(r, sy)}" for r, a, b in _runs(horizontal)]
    parts += [f"M{at(c, sx)},{at(a, sy)}L{at(c, sx)},{at(b, sy)}" for c, a, b in _runs(vertical.T)]
    return "".join(parts)
