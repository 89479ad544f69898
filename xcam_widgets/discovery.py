"""Which layers of a model can carry a CAM: modules that output one 4-D feature map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .inputs import model_device_dtype
from .model_state import evaluation_mode
from .reshape import inferred_grid_shape
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
    tokens: bool = False  # a `[B, N, C]` token layer whose grid is read off the patch embedding


def candidate_layers(model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224)) -> list[LayerInfo]:
    """Modules that run once and output a 4-D tensor for a zero input of `input_shape`, in the
    order they finish in the forward pass (a block after its children). One forward pass."""
    names = {module: name for name, module in model.named_modules() if name}
    finished: list[tuple[str, torch.Tensor]] = []
    calls: dict[str, int] = {}

    def record(module: nn.Module, inputs: object, output: object) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(output, torch.Tensor) and output.ndim in (3, 4):
            finished.append((name, output))

    device, dtype = model_device_dtype(model)
    with evaluation_mode(model), torch.no_grad():  # hooks exist only while this thread holds the model
        handles = [module.register_forward_hook(record) for module in names]
        try:
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
        finally:
            for handle in handles:
                handle.remove()
    x_shape = (1, *input_shape)
    grids: dict[str, tuple[int, int, int]] = {}
    for name, out in finished:
        grid = inferred_grid_shape(model, x_shape, name, tuple(out.shape))
        if grid is not None:
            grids[name] = (grid[0], grid[1], grid[2])
    once = [(name, out) for name, out in finished if calls[name] == 1 and name in grids]
    feature_maps = [out for name, out in once if not isinstance(model.get_submodule(name), _PASS_THROUGH)]
    last = feature_maps[-1] if feature_maps else None
    return [
        LayerInfo(
            name=name,
            kind=type(model.get_submodule(name)).__name__,
            shape=grids[name],
            depth=name.count("."),
            gap_linear=out is last and gap_linear_head(model, name) is not None,
            tokens=out.ndim == 3,
        )
        for name, out in once
    ]


# The norm in front of a transformer block's attention (torchvision, timm, Hugging Face names).
_ATTENTION_NORMS = ("ln_1", "norm1", "layernorm_before")


def default_layer(layers: list[LayerInfo], model: nn.Module) -> str:
    """The last feature map that is not a mere pooling or pass-through module.

    In a transformer the class token reads the patch tokens only through attention, so after the
    last block's attention the patch tokens get no gradient: there the default is the norm in front
    of the last attention."""
    for info in reversed(layers):
        if not isinstance(model.get_submodule(info.name), _PASS_THROUGH):
            if info.tokens:
                norms = [i.name for i in layers if i.tokens and i.name.rsplit(".", 1)[-1] in _ATTENTION_NORMS]
                return norms[-1] if norms else info.name
            return info.name
    raise ValueError(f"{type(model).__name__} has no layer with a 4-D feature map output")
