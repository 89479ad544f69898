"""Colour look-up tables for thumbnails, without Plotly: the Explorer's colour scales as stops.

The stops are Plotly's definitions of the same names (Jet, Hot, Greys, RdBu_r; Viridis and
Inferno as matplotlib's 10-stop samples), so a thumbnail and the Explorer's heatmap agree; the
colours between stops are linear in RGB, as Plotly's `sample_colorscale` does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Stops = tuple[tuple[int, int, int], ...]  # RGB colours evenly spaced over [0, 1]

COLORMAP_STOPS: dict[str, Stops] = {
    "Jet": ((0, 0, 131), (0, 60, 170), (5, 255, 255), (255, 255, 0), (250, 0, 0), (128, 0, 0)),
    "Viridis": (
        (68, 1, 84),
        (72, 40, 120),
        (62, 73, 137),
        (49, 104, 142),
        (38, 130, 142),
        (31, 158, 137),
        (53, 183, 121),
        (110, 206, 88),
        (181, 222, 43),
        (253, 231, 37),
    ),
    "Inferno": (
        (0, 0, 4),
        (27, 12, 65),
        (74, 12, 107),
        (120, 28, 109),
        (165, 44, 96),
        (207, 68, 70),
        (237, 105, 37),
        (251, 155, 6),
        (247, 209, 61),
        (252, 255, 164),
    ),
    "Hot": ((0, 0, 0), (230, 0, 0), (255, 210, 0), (255, 255, 255)),
    "RdBu_r": (
        (5, 48, 97),
        (33, 102, 172),
        (67, 147, 195),
        (146, 197, 222),
        (209, 229, 240),
        (247, 247, 247),
        (253, 219, 199),
        (244, 165, 130),
        (214, 96, 77),
        (178, 24, 43),
        (103, 0, 31),
    ),
    "Greys": (
        (255, 255, 255),
        (240, 240, 240),
        (217, 217, 217),
        (189, 189, 189),
        (150, 150, 150),
        (115, 115, 115),
        (82, 82, 82),
        (37, 37, 37),
        (0, 0, 0),
    ),
}
COLORMAPS: tuple[str, ...] = tuple(COLORMAP_STOPS)


@lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """`[256, 3]` uint8: entry i is the colour of the value i / 255 (read-only, shared)."""
    if name not in COLORMAP_STOPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {COLORMAPS}")
    colours = np.asarray(COLORMAP_STOPS[name], dtype=np.float64)
    where = np.linspace(0.0, 1.0, len(colours))
    levels = np.arange(256) / 255.0
    lut = np.stack([np.interp(levels, where, colours[:, channel]) for channel in range(3)], axis=1)
    table = np.round(lut).astype(np.uint8)
    table.setflags(write=False)
    return table
