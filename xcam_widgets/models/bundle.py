"""What `load_model` returns: a model with its preprocessing, class names and task."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import torch
import torchvision
from PIL import Image
from torch import nn

from xcam_widgets.images import to_rgb

Task = Literal["classification", "segmentation", "detection"]


@dataclass
class ModelBundle:
    """A model in eval mode with its preprocessing and class names. Unpacks as (model, preprocess, categories).

    `task` says what the output holds: "classification" logits `[B, classes]` (a tensor, or an object
    with `.logits`), "segmentation" logits `[B, classes, H, W]` (a tensor or `{"out": ...}`), or
    "detection" boxes (a list of dicts with `boxes`, `scores`, `labels`); see `xw.targets`.
    `cam_layer`: the layer its maker recommends for CAMs, where the last feature map (`xw.default_layer`)
    is not it: a segmentation net's last layers hold per-pixel logits, a detector's the box heads.
    """

    name: str
    model: nn.Module
    preprocess: (
        Callable[[Image.Image], torch.Tensor] | None
    )  # PIL image -> [3, H, W] float tensor; None for a bare module
    categories: list[str]
    input_size: int
    task: Task = "classification"
    cam_layer: str | None = None

    def __iter__(self) -> Iterator:
        return iter((self.model, self.preprocess, self.categories))


@dataclass(frozen=True)
class Preprocess:
    """PIL image -> [3, H, W] float tensor: `images.to_rgb` (any mode to upright RGB), then `transform`."""

    transform: Callable[[Image.Image], torch.Tensor]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"preprocess expects a PIL image (see xw.load_image), got {type(image).__name__}")
        return self.transform(to_rgb(image))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in index order, from torchvision's metadata (no download)."""
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def optional_import(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this model source needs the package {module!r}: "
            f"pip install 'xcam-widgets[{extra}]' (or pip install {module})"
        ) from err
