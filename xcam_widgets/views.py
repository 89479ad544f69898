"""What a view shows, as plain data: the photo, maps at the layer's resolution, layer picks, bars.

Pure functions with no widgets and no model; `Session` calls them on its cached results, and any
front end (the Explorer, a gallery, a sanity-check tab) draws what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from .checks import positive_int
from .discovery import LayerInfo
from .maps import scale_unit
from .task_views import TargetKey

SWEEP_LAYERS = 12


@dataclass(frozen=True)
class Conservation:
    """Conservation bars at one layer for one class: Σ_xy M of each method's raw map, and S_c."""

    layer: str
    target: TargetKey
    methods: tuple[str, ...]
    sums: tuple[float, ...]
    score: float


def low_res_map(raw: torch.Tensor) -> np.ndarray:
    """ReLU of the first raw map of `[B, h, w]`, min-max scaled to [0, 1] at the layer's resolution
    (a constant map is all zeros): what a browser upsamples and draws, `[h, w]` float32."""
    return scale_unit(raw[:1].clamp(min=0).float())[0].cpu().numpy()


def spread_layers(layers: Sequence[LayerInfo], last: str, count: int = SWEEP_LAYERS) -> list[str]:
    """Up to `count` layers spread evenly through `layers` up to `last`, first and last of them
    included, at the shallowest nesting depth that offers at least four (all depths otherwise)."""
    positive_int("count", count)
    names_all = [info.name for info in layers]
    if last not in names_all:
        raise ValueError(f"layer {last!r} is not a candidate layer")
    upto = layers[: names_all.index(last) + 1]
    names: list[str] = []
    for depth in range(0, max(info.depth for info in upto) + 1):
        names = [info.name for info in upto if info.depth <= depth]
        if len(names) >= 4:
            break
    picks = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
    return [names[i] for i in picks]


def display_image(
    preprocess: Callable[[Image.Image], torch.Tensor], image: Image.Image, size: tuple[int, int]
) -> np.ndarray:
    """The photo as the model sees it, before normalisation: `[H, W, 3]` uint8.

    The geometric steps (resize, crop) of a torchvision pipeline are replayed on the PIL image;
    an unknown pipeline falls back to a plain resize to the input size."""
    transform = getattr(preprocess, "transform", preprocess)
    if isinstance(transform, T.Compose):
        for step in transform.transforms:
            if not isinstance(step, (T.Resize, T.CenterCrop)):
                break
            image = step(image)
    elif hasattr(transform, "crop_size") and hasattr(transform, "resize_size"):  # torchvision weights' transforms
        image = TF.center_crop(TF.resize(image, transform.resize_size), transform.crop_size)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def tensor_display(x: torch.Tensor) -> np.ndarray:
    """A preprocessed `[3, H, W]` tensor shown as uint8, min-max scaled (its normalisation is unknown)."""
    x = x.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
