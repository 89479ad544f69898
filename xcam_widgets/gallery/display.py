"""Display images for thumbnails: a source's image by id, in the model input's frame, downsized and cached.

A thumbnail needs the image at `side` pixels, so the full-size pixels are never kept: each image
becomes an `[h, w, 3]` uint8 array with its longer side `side` (about 27 KB at 96 px), and at most
`cache_size` of them stay (least recently used first out), so memory follows the page, not the
dataset. JPEG files are decoded at a reduced scale (`Image.draft`, the DCT scaling of libjpeg: up
to 8× fewer pixels to decode) no smaller than the model's input where the preprocess resizes first
(else in full), then framed as the runner frames
them (`views.display_image`: the preprocess's resize and crop). An image that cannot be read gives
None (the thumbnail is a placeholder), and is not tried again.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any, Hashable

import numpy as np
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF
from torchvision.transforms import v2

from ..checks import positive_int
from ..evaluation import FolderSource, Source
from ..images import FORMATS, check_size, load_image
from ..views import display_image, frame_geometry
from .thumbnails import downsized

DEFAULT_CACHE = 512


class DisplayImages:
    """`images(image_id)` -> uint8 `[h, w, 3]` with the longer side `side`, or None. Not locked:
    call it from one thread (the widget's)."""

    def __init__(self, source: Source | None, side: int, *, cache_size: int = DEFAULT_CACHE) -> None:
        self.source = source
        self.side = positive_int("thumbnail side", side)
        self._cache_size = positive_int("cache_size", cache_size)
        self._cache: OrderedDict[Hashable, np.ndarray | None] = OrderedDict()
        self._input_size: tuple[int, int] | None = None
        self._paths: dict[Any, Path] = dict(zip(source.ids, source.paths)) if isinstance(source, FolderSource) else {}

    def __call__(self, image_id: Any) -> np.ndarray | None:
        key = _hashable(image_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            pixels: np.ndarray | None = downsized(self.full(image_id), self.side)
        except Exception:  # a missing or corrupt image: its tile shows a placeholder
            pixels = None
        self._cache[key] = pixels
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pixels

    def full(self, image_id: Any) -> np.ndarray:
        """The image as the model sees it before normalisation (the frame of the maps), uint8 `[H, W, 3]`."""
        if self.source is None:
            raise ValueError("no images to show: pass the run's images (display_images=...)")
        path = self._paths.get(image_id)
        if path is None or self._input_size is None:
            pixels = self.source.image_for_display(image_id)
            self._input_size = (int(pixels.shape[0]), int(pixels.shape[1]))
            return pixels
        reduced = _resizes_first(self.source.preprocess)
        photo = _reduced(path, self._input_size) if reduced else load_image(path)
        return display_image(self.source.preprocess, photo, self._input_size)


def _resizes_first(preprocess: Any) -> bool:
    """Whether the preprocess's first geometric step is a resize, so decoding at a reduced scale changes
    only the resampling; a crop first would cut its fixed-size window out of a smaller photo."""
    steps = frame_geometry(preprocess)
    if isinstance(steps, str) or not steps:
        return False
    first = steps[0]
    return isinstance(first, (T.Resize, v2.Resize)) or (isinstance(first, partial) and first.func is TF.resize)


def _reduced(path: Path, size: tuple[int, int]) -> Image.Image:
    """The file as upright RGB, a JPEG decoded at the smallest DCT scale that keeps both sides >= `size`
    (height, width); the format and header size are checked before decoding, as `load_image` does."""
    with Image.open(path) as opened:
        if opened.format not in FORMATS:
            raise ValueError(f"{path.name}: unsupported format {opened.format}")
        check_size(opened.size)
        if opened.format == "JPEG":
            opened.draft("RGB", (size[1], size[0]))
        return load_image(opened)


def _hashable(image_id: Any) -> Hashable:
    """A cache key for an id (a CSV may give ints back as numpy ints)."""
    if isinstance(image_id, np.generic):
        return image_id.item()
    return image_id if isinstance(image_id, Hashable) else repr(image_id)


__all__ = ["DEFAULT_CACHE", "DisplayImages"]
