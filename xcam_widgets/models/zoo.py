"""Models by name: the offline EfficientNet-Lite0, the shapes nets, and every torchvision classifier."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torchvision
from PIL import Image
from torch import nn

from xcam_widgets.images import to_rgb
from xcam_widgets.models.efficientnet_lite import INPUT_SIZE, efficientnet_lite0, lite0_transform

DEFAULT_MODEL = "efficientnet_lite0"
SHAPES_MODELS = ("shapes_gap", "shapes_vgg")  # xcam_widgets.shapes.nets, imported only when asked for


@dataclass
class ModelBundle:
    """A model in eval mode with its preprocessing and class names. Unpacks as (model, preprocess, categories)."""

    name: str
    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]  # PIL image -> [3, H, W] float tensor
    categories: list[str]
    input_size: int

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


def torchvision_models() -> tuple[str, ...]:
    """The names of torchvision's ImageNet classifiers (no detection or segmentation models)."""
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def available_models() -> tuple[str, ...]:
    """Every name `load_model` accepts: the offline models first, then torchvision's classifiers."""
    return (DEFAULT_MODEL, *SHAPES_MODELS, *torchvision_models())


def load_model(
    name: str = DEFAULT_MODEL, pretrained: bool = True, device: str | torch.device | None = None
) -> ModelBundle:
    """Load a classifier by name, in eval mode on `device` (None: CUDA if available, else CPU).

    `efficientnet_lite0` and the shapes nets need no network. A torchvision model with `pretrained` uses
    its default weights (downloaded once to the torch hub cache); with `pretrained=False`, random weights.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, e.g. {DEFAULT_MODEL!r}; got {type(name).__name__}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
    device = _device(device)
    if name == DEFAULT_MODEL:
        bundle = _efficientnet_lite0(pretrained)
    elif name in SHAPES_MODELS:
        bundle = _shapes(name, pretrained)
    elif name in torchvision_models():
        bundle = _torchvision(name, pretrained)
    else:
        names = available_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available: {', '.join(names)}")
    bundle.model.to(device).eval()
    return bundle


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a torch device, e.g. 'cpu' or 'cuda:0'") from err


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in index order, from torchvision's metadata (no download)."""
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _efficientnet_lite0(pretrained: bool) -> ModelBundle:
    model = efficientnet_lite0(pretrained)
    return ModelBundle(DEFAULT_MODEL, model, Preprocess(lite0_transform()), imagenet_categories(), INPUT_SIZE)


def _shapes(name: str, pretrained: bool) -> ModelBundle:
    from xcam_widgets.shapes import nets

    if pretrained:
        model, preprocess, categories = nets.load_shapes_model(name)
    else:
        model, preprocess, categories = nets.build(name), nets.preprocess, nets.SHAPE_CLASSES
    return ModelBundle(name, model, preprocess, list(categories), nets.IMAGE_SIZE)


def _torchvision(name: str, pretrained: bool) -> ModelBundle:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    if pretrained:
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except OSError as err:  # offline: urllib's URLError, or an unreadable cache
            cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
            raise RuntimeError(
                f"the pretrained weights of {name!r} are not cached and could not be downloaded ({err}). "
                f"Download {weights.url} to {cache} on a machine with internet access, or pass "
                f"pretrained=False for random weights, or use the offline model {DEFAULT_MODEL!r}."
            ) from err
    else:
        model = torchvision.models.get_model(name, weights=None)
    return ModelBundle(
        name, model, Preprocess(transform), list(weights.meta["categories"]), int(transform.crop_size[0])
    )
