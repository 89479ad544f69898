"""torchvision models by name: classifiers, semantic segmentation and detection, with their weights' transforms."""

from __future__ import annotations

import os
from typing import Any

import torch
import torchvision
from torch import nn

from xcam_widgets.models.bundle import ModelBundle, Preprocess, Task
from xcam_widgets.models.hf_models import unreachable

_TASK_MODULES: dict[Task, Any] = {
    "classification": torchvision.models,
    "segmentation": torchvision.models.segmentation,
    "detection": torchvision.models.detection,
}


def torchvision_models(task: Task = "classification") -> tuple[str, ...]:
    """The names of torchvision's models for `task` (classification: the ImageNet classifiers)."""
    return tuple(sorted(torchvision.models.list_models(module=_TASK_MODULES[task])))


def torchvision_task(name: str) -> Task | None:
    """The task of a torchvision model name, or None if torchvision has no such model."""
    return next((task for task in _TASK_MODULES if name in torchvision_models(task)), None)


def build(name: str, task: Task, pretrained: bool, default_model: str) -> nn.Module:
    """The model with its default weights (downloaded once to the torch hub cache), or random weights.

    Random weights mean no download at all: segmentation and detection models also leave their
    backbone random (`weights_backbone=None`), where torchvision would otherwise fetch ImageNet weights.
    Uncached weights are downloaded only if their host answers quickly (`hf_models.unreachable`).
    """
    if not pretrained:
        extra = {} if task == "classification" else {"weights_backbone": None}
        return torchvision.models.get_model(name, weights=None, **extra)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    how = (
        f"Download {weights.url} to {cache} on a machine with internet access, or pass "
        f"pretrained=False for random weights, or use the offline model {default_model!r}."
    )
    problem = None if os.path.isfile(cache) else unreachable(weights.url, hub=False)
    if problem is not None:
        raise RuntimeError(
            f"the pretrained weights of {name!r} are not cached and could not be downloaded: {problem}. {how}"
        )
    try:
        return torchvision.models.get_model(name, weights=weights)
    except OSError as err:  # offline: urllib's URLError, or an unreadable cache
        raise RuntimeError(
            f"the pretrained weights of {name!r} are not cached and could not be downloaded ({err}). {how}"
        ) from err


def load_torchvision(name: str, task: Task, pretrained: bool, default_model: str) -> ModelBundle:
    """A torchvision model of `task` with its weights' transform and category names.

    `input_size`: the crop of a classifier, the resized short side of a segmentation model (its
    transform keeps the aspect ratio), a detector's own `min_size` (it resizes inside the model).
    """
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    model = build(name, task, pretrained, default_model)
    if task == "classification":
        size = int(transform.crop_size[0])
    elif task == "segmentation":
        size = int(transform.resize_size[0])
    else:
        min_size: Any = model.get_submodule("transform").min_size  # GeneralizedRCNNTransform's, a tuple
        size = int(min_size[0])
    categories = list(weights.meta["categories"])
    return ModelBundle(name, model, Preprocess(transform), categories, size, task, backbone_layer(model, task))


def backbone_layer(model: nn.Module, task: Task) -> str | None:
    """The last stage of a segmentation or detection model's backbone (`backbone.body` inside an FPN),
    where CAMs of these models are usually taken, before the heads: `layer4` of a ResNet, the last
    feature block of a MobileNet or VGG. None for a classifier or a model without a `backbone`."""
    if task == "classification":
        return None
    for prefix in ("backbone.body", "backbone"):
        try:
            parent = model.get_submodule(prefix)
        except AttributeError:
            continue
        stages = [
            name for name, child in parent.named_children() if not isinstance(child, (nn.ModuleList, nn.ModuleDict))
        ]
        if stages:
            return f"{prefix}.{stages[-1]}"
    return None
