"""Prototype crops: the member-image patches where a cluster's evidence is most active, as pixels.

For latent features, per top channel k of the cluster (largest mean share p_k): the members with the
largest p_k, each cropped around the peak of its activation A_k. For spatial features: the members
nearest the cluster's mean feature, each cropped around its map's hottest pixel. A crop is a square
of `CROP_FRACTION` of the image side (at least one grid cell), kept inside the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CROP_FRACTION = 0.25
PER_CHANNEL = 4  # crops per top channel (latent) or per cluster (spatial)
TOP_CHANNELS = 3


@dataclass
class Prototype:
    """One crop: the table `row` and `image` it comes from, the `channel` (-1 for a spatial cluster),
    `box` (top, left, bottom, right) in the displayed image's pixels, and `crop` uint8 `[h, w, 3]`."""

    row: int
    image: Any
    channel: int
    box: tuple[int, int, int, int]
    crop: np.ndarray


def crop_box(peak: tuple[int, int], grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square around grid cell `peak` (of a `grid` laid over an image of `size` (H, W)), clamped inside."""
    (i, j), (gh, gw), (height, width) = peak, grid, size
    side = max(int(round(CROP_FRACTION * max(height, width))), int(np.ceil(height / gh)), int(np.ceil(width / gw)), 1)
    side = min(side, height, width)
    cy, cx = (i + 0.5) * height / gh, (j + 0.5) * width / gw
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    return top, left, top + side, left + side


def top_channels(mean_vector: np.ndarray, count: int = TOP_CHANNELS) -> list[int]:
    """The channels with the largest mean share, largest first."""
    return [int(k) for k in np.argsort(-np.asarray(mean_vector), kind="stable")[:count]]


def make_crops(
    display: Any, picks: list[tuple[int, Any, int, tuple[int, int]]], grid: tuple[int, int]
) -> list[Prototype]:
    """`picks` (row, image id, channel, peak cell) -> crops from `display(image_id)` (uint8 [H, W, 3])."""
    out = []
    for row, image, channel, peak in picks:
        pixels = np.asarray(display(image))
        box = crop_box(peak, grid, pixels.shape[:2])
        out.append(Prototype(int(row), image, int(channel), box, pixels[box[0] : box[2], box[1] : box[3]].copy()))
    return out


def spatial_picks(
    rows: np.ndarray, images: list, features: np.ndarray, grid: tuple[int, int], count: int = PER_CHANNEL
) -> list[tuple[int, Any, int, tuple[int, int]]]:
    """The `count` members nearest their mean feature, each at its map's hottest cell."""
    distance = np.linalg.norm(features - features.mean(0), axis=1)
    chosen = np.argsort(distance, kind="stable")[:count]
    return [(rows[i], images[i], -1, divmod(int(np.argmax(features[i])), grid[1])) for i in chosen]


def latent_picks(
    rows: np.ndarray, images: list, vectors: np.ndarray, peaks: np.ndarray, grid: tuple[int, int], channels: list[int]
) -> list[tuple[int, Any, int, tuple[int, int]]]:
    """Per channel k: the `PER_CHANNEL` members with the largest p_k, each at the peak of its A_k."""
    picks = []
    for k in channels:
        for i in np.argsort(-vectors[:, k], kind="stable")[:PER_CHANNEL]:
            picks.append((rows[i], images[i], k, divmod(int(peaks[i, k]), grid[1])))
    return picks


__all__ = [
    "CROP_FRACTION",
    "PER_CHANNEL",
    "TOP_CHANNELS",
    "Prototype",
    "crop_box",
    "latent_picks",
    "make_crops",
    "spatial_picks",
    "top_channels",
]
