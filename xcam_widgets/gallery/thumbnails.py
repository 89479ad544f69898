"""Thumbnails from the table, not the network: a display image and a row's small raw map.

The stored map is the method's raw low-resolution map (float16, not ReLU'd, not scaled). As in
the Explorer: ReLU, then min-max scale to [0, 1] at the map's own resolution, where flatness is
decided: a map whose range is within `rtol` of its largest magnitude (float16's step by default)
is flat, stays all zeros and draws no overlay, so upsampling round-off can never be blown up into
a pattern. The [0, 1] map is then upsampled bilinearly (half-pixel centres, as
`F.interpolate(..., align_corners=False)`) and blended over the downsized image with a colormap:
out = (1 - a)·image + a·colour, a = opacity where the map is >= threshold, else 0.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..checks import positive_int
from .colormaps import COLORMAPS, colormap_lut
from .table import Page

FLAT_RTOL = float(np.finfo(np.float16).eps)  # 2**-10: differences below one float16 step are storage round-off
PLACEHOLDER_GREY = 200
FORMATS: tuple[str, ...] = ("JPEG", "PNG")


@dataclass(frozen=True)
class ThumbnailStyle:
    """How thumbnails look: the longer side in pixels, the colormap, the overlay's opacity and the
    threshold below which the map is transparent (both in [0, 1])."""

    side: int = 96
    colormap: str = "Jet"
    opacity: float = 0.5
    threshold: float = 0.0

    def __post_init__(self) -> None:
        positive_int("thumbnail side", self.side)
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r}; choose one of {COLORMAPS}")
        for name in ("opacity", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def unit_map(raw: np.ndarray, rtol: float = FLAT_RTOL) -> np.ndarray:
    """ReLU(raw) min-max scaled to [0, 1] as float32 `[h, w]`; all zeros when flat, i.e. when
    max - min <= rtol · max (after the ReLU, max >= min >= 0). Non-finite cells count as 0."""
    values = np.asarray(raw)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"a raw map must be a non-empty 2-D array [h, w], got shape {values.shape}")
    relu = np.maximum(np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    low, high = float(relu.min()), float(relu.max())
    if high - low <= rtol * high:
        return np.zeros(relu.shape, dtype=np.float32)
    return (relu - low) / np.float32(high - low)


@lru_cache(maxsize=64)
def _interpolation(source: int, target: int) -> np.ndarray:
    """`[target, source]` weights of 1-D linear interpolation with half-pixel centres:
    x = (i + 0.5)·source/target - 0.5, clamped below at 0."""
    x = np.maximum((np.arange(target) + 0.5) * source / target - 0.5, 0.0)
    low = np.minimum(np.floor(x).astype(np.int64), source - 1)
    high = np.minimum(low + 1, source - 1)
    frac = (x - low).astype(np.float32)
    weights = np.zeros((target, source), dtype=np.float32)
    np.add.at(weights, (np.arange(target), low), 1.0 - frac)
    np.add.at(weights, (np.arange(target), high), frac)
    weights.setflags(write=False)
    return weights


def upsample(map01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a `[h, w]` map to `size` = (H, W), clipped to the input's [0, 1]."""
    rows, cols = _interpolation(map01.shape[0], size[0]), _interpolation(map01.shape[1], size[1])
    return np.clip(rows @ map01.astype(np.float32) @ cols.T, 0.0, 1.0)


def thumbnail_size(image_shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(height, width) with the longer side `side` and the image's aspect ratio."""
    height, width = image_shape[:2]
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def downsized(image: np.ndarray, side: int) -> np.ndarray:
    """An `[H, W, 3]` uint8 image (or `[H, W]` grey) reduced so that its longer side is `side`."""
    pixels = np.asarray(image)
    shape_ok = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    if pixels.dtype != np.uint8 or not shape_ok or pixels.size == 0:
        raise ValueError(f"a display image must be uint8 [H, W, 3] (or [H, W]), got {pixels.dtype} {pixels.shape}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    height, width = thumbnail_size(pixels.shape, side)
    if (height, width) == pixels.shape[:2]:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BOX))


def blend(small: np.ndarray, raw: np.ndarray | None, style: ThumbnailStyle) -> np.ndarray:
    """The map's overlay on an already downsized image; the image itself when there is no map or
    the map is flat."""
    if raw is None:
        return small
    unit = unit_map(raw)
    if not unit.any():
        return small
    up = upsample(unit, small.shape[:2])
    colour = colormap_lut(style.colormap)[np.rint(up * 255).astype(np.uint8)]
    alpha = np.where(up >= style.threshold, np.float32(style.opacity), np.float32(0.0))[:, :, None]
    mixed = small.astype(np.float32) * (1.0 - alpha) + colour.astype(np.float32) * alpha
    return np.rint(mixed).astype(np.uint8)


def thumbnail(image: np.ndarray, raw: np.ndarray | None, style: ThumbnailStyle | None = None) -> np.ndarray:
    """A `[h, w, 3]` uint8 thumbnail: `image` downsized to `style.side`, `raw`'s overlay on it."""
    style = style or ThumbnailStyle()
    return blend(downsized(image, style.side), raw, style)


def placeholder(side: int) -> np.ndarray:
    """A plain grey `[side, side, 3]` tile for a row whose image cannot be shown."""
    return np.full((side, side, 3), PLACEHOLDER_GREY, dtype=np.uint8)


def page_thumbnails(
    page: Page,
    display: Callable[[Any], np.ndarray | None],
    maps: Mapping[int, np.ndarray],
    style: ThumbnailStyle | None = None,
) -> list[np.ndarray]:
    """One thumbnail per row of `page`, in order. `display(image_id)` gives the image's display
    pixels, or None when it cannot (a placeholder is drawn); `maps[row]` the raw map (a row
    missing from `maps`, e.g. an error row, shows the bare image). Each image is loaded and
    downsized once per page, however many methods and layers show it."""
    style = style or ThumbnailStyle()
    if "image" not in page.frame.columns:
        raise ValueError("page_thumbnails needs the table's 'image' column (the id `display` takes)")
    smalls: dict[Hashable, np.ndarray] = {}
    thumbs = []
    for row, image_id in zip(page.rows.tolist(), page.frame["image"].tolist()):
        if image_id not in smalls:
            pixels = display(image_id)
            smalls[image_id] = placeholder(style.side) if pixels is None else downsized(pixels, style.side)
        raw = maps[row] if row in maps else None
        thumbs.append(blend(smalls[image_id], raw, style))
    return thumbs


def encode(pixels: np.ndarray, format: str = "JPEG", quality: int = 85) -> bytes:
    """`[h, w, 3]` uint8 pixels as JPEG (lossy, ~3-5 KB at 96 px) or PNG (lossless) bytes."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be an int in [1, 95], got {quality!r}")
    buffer = io.BytesIO()
    if format == "JPEG":
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def encode_all(thumbs: Sequence[np.ndarray], format: str = "JPEG", quality: int = 85) -> list[bytes]:
    """`encode` for each thumbnail of a page."""
    return [encode(t, format, quality) for t in thumbs]
