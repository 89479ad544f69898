"""Models by name: the offline EfficientNet-Lite0, the shapes nets, torchvision's classifiers, segmentation
and detection models, and `timm:` / `hf:` sources."""

from __future__ import annotations

import difflib

import torch

from xcam_widgets.models.bundle import ModelBundle, Preprocess, Task, imagenet_categories
from xcam_widgets.models.efficientnet_lite import INPUT_SIZE, efficientnet_lite0, lite0_transform
from xcam_widgets.models.torchvision_models import load_torchvision, torchvision_models, torchvision_task
from xcam_widgets.shapes.constants import CAM_LAYER, DET_MODEL, SEG_MODEL, SHAPES_MODELS

DEFAULT_MODEL = "efficientnet_lite0"
SOURCES = ("timm:", "hf:")  # prefixes of the optional model sources (extras `timm` and `hf`)

__all__ = [
    "DEFAULT_MODEL",
    "ModelBundle",
    "Preprocess",
    "available_models",
    "imagenet_categories",
    "load_model",
    "torchvision_models",
]


def available_models(task: Task | None = None) -> tuple[str, ...]:
    """Every name `load_model` accepts, besides "timm:<name>" and "hf:<repo id>": the offline models
    first, then torchvision's classifiers, segmentation and detection models; or those of one `task`."""
    offline = {
        "classification": (DEFAULT_MODEL, *SHAPES_MODELS),
        "segmentation": (SEG_MODEL,),
        "detection": (DET_MODEL,),
    }
    tasks: tuple[Task, ...] = (task,) if task else ("classification", "segmentation", "detection")
    return (*(name for t in tasks for name in offline[t]), *(name for t in tasks for name in torchvision_models(t)))


def load_model(
    name: str = DEFAULT_MODEL, pretrained: bool = True, device: str | torch.device | None = None
) -> ModelBundle:
    """Load a model by name, in eval mode on `device` (None: CUDA if available, else CPU).

    `efficientnet_lite0` and the shapes nets need no network. A torchvision model with `pretrained` uses
    its default weights (downloaded once to the torch hub cache); with `pretrained=False`, random weights.
    "timm:<name>" and "hf:<repo id or folder>" load from the local cache first, then try the network;
    without either, the error says how to get the weights (or pass `pretrained=False`).
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
    elif name == SEG_MODEL:
        bundle = _shapes_seg(pretrained)
    elif name == DET_MODEL:
        bundle = _shapes_det(pretrained)
    elif name.startswith(SOURCES):
        bundle = _from_source(name, pretrained)
    elif (task := torchvision_task(name)) is not None:
        bundle = load_torchvision(name, task, pretrained, DEFAULT_MODEL)
    else:
        names = available_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Available: {', '.join(names)}; "
            "or 'timm:<name>' (a timm model) or 'hf:<repo id>' (a Hugging Face image classifier)"
        )
    bundle.model.to(device).eval()
    return bundle


def _from_source(name: str, pretrained: bool) -> ModelBundle:
    prefix, _, rest = name.partition(":")
    if not rest.strip():
        raise ValueError(f"model {name!r} names no model after '{prefix}:', e.g. 'timm:resnet18' or 'hf:<repo id>'")
    if prefix == "timm":
        from xcam_widgets.models.timm_models import load_timm  # needs the optional timm

        return load_timm(rest, pretrained)
    from xcam_widgets.models.hf_models import load_hf  # needs the optional transformers

    return load_hf(rest, pretrained)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a torch device, e.g. 'cpu' or 'cuda:0'") from err


def _efficientnet_lite0(pretrained: bool) -> ModelBundle:
    model = efficientnet_lite0(pretrained)
    return ModelBundle(DEFAULT_MODEL, model, Preprocess(lite0_transform()), imagenet_categories(), INPUT_SIZE)


def _shapes(name: str, pretrained: bool) -> ModelBundle:
    from xcam_widgets.shapes import nets

    if pretrained:
        model, preprocess, categories = nets.load_shapes_model(name)
        return ModelBundle(name, model, preprocess, list(categories), nets.IMAGE_SIZE, cam_layer=CAM_LAYER)
    categories = list(nets.SHAPE_CLASSES)
    return ModelBundle(name, nets.build(name), nets.preprocess, categories, nets.IMAGE_SIZE, cam_layer=CAM_LAYER)


def _shapes_seg(pretrained: bool) -> ModelBundle:
    """The shapes segmentation net: `[B, 7, 64, 64]` logits, the 6 shapes then the background."""
    from xcam_widgets.shapes import nets, seg

    model = seg.load_seg_model()[0] if pretrained else seg.ShapesSegNet()
    return ModelBundle(
        SEG_MODEL, model, nets.preprocess, list(seg.SEG_CLASSES), nets.IMAGE_SIZE, "segmentation", CAM_LAYER
    )


def _shapes_det(pretrained: bool) -> ModelBundle:
    """The shapes detector: torchvision-style detections of the 6 shape classes (see `shapes.detector`)."""
    from xcam_widgets.shapes import detector, nets

    model = detector.ShapesDetNet()
    if pretrained:
        model.load_state_dict(torch.load(nets.weights_path(DET_MODEL), map_location="cpu", weights_only=True))
    return ModelBundle(
        DET_MODEL, model, nets.preprocess, list(nets.SHAPE_CLASSES), nets.IMAGE_SIZE, "detection", CAM_LAYER
    )
