"""Where the runner's images come from: the shapes benchmark, image files, or a torch Dataset.

A source lists image ids by position and loads any positions as one `ImageBatch` of preprocessed
images. An image that cannot be read becomes a `Failure` of the batch (or raises, with
`strict=True`); the other images go on. For display, a source gives back any image by its id:
`image(id)` as a PIL image (what the Explorer takes) and `image_for_display(id)` as uint8
`[H, W, 3]` pixels in the frame of the model's input, so that a map overlays it exactly.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from ..images import load_image
from ..shapes import nets
from ..shapes.dataset import SHAPE_CLASSES, ShapesBatch
from ..views import display_image
from .shapes_inputs import shapes_pil, through_preprocess
from .specs import SPEC_PREFIXES, is_shapes, shapes_from_spec

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
UNKNOWN_LABEL = -1

Images = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], ShapesBatch, Dataset]


@dataclass(frozen=True)
class Failure:
    """An image that could not be read or preprocessed: its position, id and the reason."""

    position: int
    image: Any
    message: str


@dataclass(frozen=True)
class ImageBatch:
    """A batch as `evaluate_batch` takes it: the images that loaded, and those that did not.

    `positions`, `ids` and `x` `[n, C, H, W]` (preprocessed) list the loaded images; `labels` `[n]`
    are their true classes (-1 where unknown; None for a source without labels); `masks`
    `[n, classes, H, W]` bool hold each class's region (or None)."""

    positions: list[int]
    ids: list
    x: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    failures: tuple[Failure, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


class Source(ABC):
    """Images by position. `ids[position]` is the table's `image` column; `spec` reopens the
    source with `open_images` (None for a source held in memory: a ShapesBatch or a Dataset)."""

    kind: str = ""
    has_labels = False
    has_masks = False
    ids: list
    preprocess: Callable
    spec: Any = None
    _display_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def take(self, positions: Sequence[int], strict: bool = True) -> ImageBatch:
        """The images at `positions` (in that order) as one batch. With `strict`, an image that
        cannot be read raises; otherwise it becomes one of the batch's `failures`."""

    @abstractmethod
    def image(self, image_id: Any) -> Image.Image:
        """The image `image_id` as an 8-bit RGB PIL image, before any preprocessing."""

    def image_for_display(self, image_id: Any) -> np.ndarray:
        """The image as the model sees it, before normalisation: uint8 `[H, W, 3]` at the input's size."""
        pil = self.image(image_id)
        if self._display_size is None:  # every input has one size (`take` checks it): preprocess one image only
            shape = self.preprocess(pil).shape
            self._display_size = (int(shape[-2]), int(shape[-1]))
        return display_image(self.preprocess, pil, self._display_size)

    def position(self, image_id: Any) -> int:
        """The first position holding `image_id`."""
        try:
            return self.ids.index(image_id)
        except ValueError:
            raise KeyError(f"image {image_id!r} is not in this source") from None

    def batches(self, batch_size: int, strict: bool = True) -> Iterator[ImageBatch]:
        for start in range(0, len(self), batch_size):
            yield self.take(range(start, min(start + batch_size, len(self))), strict)

    def input_shape(self) -> tuple[int, ...]:
        """`(C, H, W)` of the first image that can be read."""
        for batch in self.batches(1, strict=False):
            if len(batch):
                return tuple(batch.x.shape[1:])
        raise ValueError("images: none of the images can be read")


@dataclass
class ShapesSource(Source):
    """The shapes benchmark: images in [0, 1]. The shapes nets' preprocess takes them as one tensor;
    any other preprocess gets each as a PIL image, and the masks move into its frame (`shapes_inputs`)."""

    data: ShapesBatch
    preprocess: Callable
    spec: Any = None
    kind: str = "shapes"
    has_labels = True
    has_masks = True

    @property
    def ids(self) -> list[int]:  # type: ignore[override]
        return list(range(len(self.data)))

    def __len__(self) -> int:
        return len(self.data)

    def take(self, positions: Sequence[int], strict: bool = True) -> ImageBatch:
        index = torch.as_tensor(list(positions), dtype=torch.long)
        images, masks = self.data.images[index], self.data.masks[index]
        if self.preprocess is nets.preprocess:
            x = self.preprocess(images)
        else:
            x, masks = through_preprocess(images, masks, self.preprocess)
        return ImageBatch(
            positions=index.tolist(), ids=index.tolist(), x=x, labels=self.data.labels[index, 0], masks=masks
        )

    def image(self, image_id: Any) -> Image.Image:
        return shapes_pil(self.data.images[_index(image_id, len(self))])

    def image_for_display(self, image_id: Any) -> np.ndarray:
        if self.preprocess is not nets.preprocess:  # another model's input frame (resize, crop)
            return super().image_for_display(image_id)
        return np.array(self.image(image_id))

    def position(self, image_id: Any) -> int:
        return _index(image_id, len(self))


@dataclass
class FolderSource(Source):
    """Image files (absolute paths: the same files for Ray actors, whose working directory may
    differ), loaded with `xw.load_image` and the model's preprocess one batch at a time."""

    paths: list[Path]
    ids: list[str]
    preprocess: Callable
    spec: Any = None
    kind: str = "files"
    _by_id: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def take(self, positions: Sequence[int], strict: bool = True) -> ImageBatch:
        return _load(self, list(positions), lambda i: (load_image(self.paths[i]), UNKNOWN_LABEL), strict, False)

    def image(self, image_id: Any) -> Image.Image:
        if not self._by_id:
            self._by_id.update(zip(self.ids, self.paths))
        if image_id not in self._by_id:
            raise KeyError(f"image {image_id!r} is not in this source")
        return load_image(self._by_id[image_id])


@dataclass
class DatasetSource(Source):
    """A map-style `torch.utils.data.Dataset` of `(image, label)` items; ids are the indices.

    `image`: a PIL image, or pixels before any normalisation: a uint8 or float tensor `[C, H, W]`
    / `[H, W]`, or a numpy array `[H, W, C]` / `[H, W]` (C = 1 or 3), floats in [0, 1]. The
    model's preprocess is applied to it as to a file (tensors become 8-bit PIL images first).
    `label`: the true class index, or -1 / None where unknown."""

    dataset: Dataset
    preprocess: Callable
    spec: Any = None
    kind: str = "dataset"
    has_labels = True

    def __post_init__(self) -> None:
        _item(self.dataset, 0)  # a wrong item type fails here, not in every batch

    @property
    def ids(self) -> list[int]:  # type: ignore[override]
        return list(range(len(self)))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def take(self, positions: Sequence[int], strict: bool = True) -> ImageBatch:
        return _load(self, list(positions), lambda i: _item(self.dataset, i), strict, True)

    def image(self, image_id: Any) -> Image.Image:
        return _item(self.dataset, _index(image_id, len(self)))[0]

    def position(self, image_id: Any) -> int:
        return _index(image_id, len(self))


def _load(
    source: Source, positions: list[int], read: Callable[[int], tuple[Image.Image, int]], strict: bool, labelled: bool
) -> ImageBatch:
    """Read and preprocess each image; a failure raises (strict) or is recorded."""
    loaded: list[tuple[int, torch.Tensor, int]] = []
    failures = []
    for i in positions:
        try:
            image, label = read(i)
            loaded.append((i, source.preprocess(image), label))
        except Exception as err:  # anything that reading one image raises is that image's failure
            if strict:
                raise
            failures.append(Failure(i, source.ids[i], f"{type(err).__name__}: {err}"))
    shapes = {tuple(t.shape) for _, t, _ in loaded}
    if len(shapes) > 1:
        raise ValueError(
            f"the preprocess gives images of different shapes {sorted(shapes)}; "
            "use a preprocess that resizes or crops to a fixed size"
        )
    x = torch.stack([t for _, t, _ in loaded]) if loaded else torch.zeros(0)
    labels = torch.tensor([label for _, _, label in loaded], dtype=torch.long) if labelled else None
    return ImageBatch(
        positions=[i for i, _, _ in loaded],
        ids=[source.ids[i] for i, _, _ in loaded],
        x=x,
        labels=labels,
        failures=tuple(failures),
    )


def _item(dataset: Dataset, index: int) -> tuple[Image.Image, int]:
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        length = f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
        raise TypeError(
            f"a Dataset for xw.evaluate must give (image, label) pairs; item {index} is {type(item).__name__}{length}"
        )
    image, label = item
    return as_pil(image), _label(label, index)


def _label(label: Any, index: int) -> int:
    if label is None:
        return UNKNOWN_LABEL
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"the label of item {index} must be a class index (int) or None, got {label!r}")
    return max(int(label), UNKNOWN_LABEL)


def as_pil(image: Any) -> Image.Image:
    """A Dataset's image (PIL, or a tensor / array of pixels in [0, 1] or uint8) as checked 8-bit RGB."""
    if isinstance(image, Image.Image):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] not in (1, 3):
            hint = " (channels first? give array.transpose(1, 2, 0))" if image.shape[0] in (1, 3) else ""
            raise ValueError(
                f"a Dataset numpy image must be [H, W, C] or [H, W] with C = 1 or 3, got {list(image.shape)}{hint}"
            )
        image = torch.from_numpy(np.ascontiguousarray(image))
        if image.ndim == 3:
            image = image.permute(2, 0, 1)  # numpy images are [H, W, C]
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"a Dataset image must be a PIL image, a tensor or a numpy array, got {type(image).__name__}")
    pixels = image.detach().cpu()
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"a Dataset image tensor must be [C, H, W] or [H, W] with C = 1 or 3, got {list(image.shape)}")
    if pixels.is_floating_point():
        low, high = float(pixels.min()), float(pixels.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(
                f"a Dataset image holds values in [{low:.3g}, {high:.3g}], outside [0, 1]: it looks preprocessed. "
                "Give a Dataset of raw images (no normalisation): xw.evaluate applies the model's preprocess"
            )
        pixels = (pixels * 255).round().clamp(0, 255)
    elif pixels.dtype != torch.uint8:
        raise TypeError(f"a Dataset image tensor must be uint8 or float in [0, 1], got {pixels.dtype}")
    array = pixels.to(torch.uint8).permute(1, 2, 0).numpy()
    return load_image(Image.fromarray(array[..., 0] if array.shape[2] == 1 else array))


def _index(image_id: Any, n: int) -> int:
    if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, (int, np.integer)) or not 0 <= image_id < n:
        raise KeyError(f"image {image_id!r} is not in this source (ids are 0 .. {n - 1})")
    return int(image_id)


def open_images(images: Images, preprocess: Callable | None) -> Source:
    """A source for `images`: an existing folder (searched recursively for image files, in sorted
    order) or image file, a list of files, "shapes:N" or "shapes:N:SEED" (N single-shape images;
    SEED defaults to the shapes nets' held-out seed), "shapes_shortcut:N[:SEED[:MARKS]]" (the same
    images watermarked by `make_shortcut_shapes`; MARKS is "label" (default), "random" or "none"),
    a `ShapesBatch`, or a torch Dataset of `(image, label)` (see `DatasetSource`). An existing path
    wins over a shapes spec. `preprocess` (PIL image -> tensor) is the model's; a bare module has none."""
    if preprocess is None:
        raise TypeError(
            "the model has no preprocess: pass preprocess= (PIL image -> [C, H, W] tensor) "
            "or a ModelBundle from xw.load_model"
        )
    if isinstance(images, ShapesBatch):
        if len(images) == 0:
            raise ValueError("images: the ShapesBatch is empty")
        return ShapesSource(images, preprocess)
    if isinstance(images, Dataset):
        if isinstance(images, IterableDataset) or not hasattr(images, "__len__"):
            raise TypeError(
                "images: a Dataset must be map-style, with __len__ and __getitem__ (not an IterableDataset)"
            )
        if len(images) == 0:
            raise ValueError("images: the Dataset is empty")
        return DatasetSource(images, preprocess)
    if isinstance(images, (str, os.PathLike)):
        root = Path(images)
        if root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise ValueError(f"images: folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            ids = [p.relative_to(root).as_posix() for p in paths]
            return FolderSource(
                [p.absolute() for p in paths], ids, preprocess, spec=str(root.absolute()), kind="folder"
            )
        if root.is_file():
            return FolderSource([root.absolute()], [root.name], preprocess, spec=str(root.absolute()))
        if isinstance(images, str) and images.startswith(SPEC_PREFIXES):
            return ShapesSource(shapes_from_spec(images), preprocess, spec=images)
        raise ValueError(
            f"images {str(images)!r} is neither 'shapes:N', a folder nor an image file (the "
            "watermarked shapes are 'shapes_shortcut:N')"
        )
    if isinstance(images, Sequence) and images and all(isinstance(p, (str, os.PathLike)) for p in images):
        names = [os.fspath(p) for p in images]
        return FolderSource([Path(p).absolute() for p in names], names, preprocess, spec=names)
    raise TypeError(
        "images must be 'shapes:N', a ShapesBatch, a folder, an image file, a non-empty list of files or a "
        f"torch Dataset of (image, label); got {type(images).__name__}"
    )


def categories_of(images: Any) -> list[str]:
    """Class names for a bare module: the shapes classes, a Dataset's `classes`, or none."""
    if is_shapes(images):
        return list(SHAPE_CLASSES)
    classes = getattr(images, "classes", None) if isinstance(images, Dataset) else None
    return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else []


__all__ = [
    "DatasetSource",
    "Failure",
    "FolderSource",
    "ImageBatch",
    "Images",
    "ShapesSource",
    "Source",
    "as_pil",
    "categories_of",
    "is_shapes",
    "open_images",
]
