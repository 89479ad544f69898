"""Which layers of a model can carry a CAM: modules that output one 4-D feature map."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .inputs import model_device_dtype
from .model_state import evaluation_mode
from .split import gap_linear_head

# Modules that only pass a map along or pool it; a poor default even where their output is 4-D.
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)


@dataclass(frozen=True)
class LayerInfo:
    """A candidate layer: its dotted name, module type, output shape `(K, h, w)`, nesting depth,
    and whether it feeds global average pooling then a linear layer (XGrad-CAM = Grad-CAM there)."""

    name: str
    kind: str
    shape: tuple[int, int, int]
    depth: int
    gap_linear: bool


def candidate_layers(model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224)) -> list[LayerInfo]:
    """Modules that run once and output a 4-D tensor for a zero input of `input_shape`, in the
    order they finish in the forward pass (a block after its children). One forward pass."""
    names = {module: name for name, module in model.named_modules() if name}
    finished: list[tuple[str, torch.Tensor]] = []
    calls: dict[str, int] = {}

    def record(module: nn.Module, inputs: object, output: object) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            finished.append((name, output))

    device, dtype = model_device_dtype(model)
    handles = [module.register_forward_hook(record) for module in names]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    once = [(name, out) for name, out in finished if calls[name] == 1]
    feature_maps = [out for name, out in once if not isinstance(model.get_submodule(name), _PASS_THROUGH)]
    last = feature_maps[-1] if feature_maps else None
    return [
        LayerInfo(
            name=name, kind=type(model.get_submodule(name)).__name__, shape=tuple(out.shape[1:]),
            depth=name.count("."), gap_linear=out is last and gap_linear_head(model, name) is not None,
        )
        for name, out in once
    ]


def default_layer(layers: list[LayerInfo], model: nn.Module) -> str:
    """The last feature map that is not a mere pooling or pass-through module."""
    for info in reversed(layers):
        if not isinstance(model.get_submodule(info.name), _PASS_THROUGH):
            return info.name
    raise ValueError(f"{type(model).__name__} has no layer with a 4-D feature map output")
