"""Name ↔ module resolution for the layers a CAM is computed on."""

from __future__ import annotations

import difflib
from typing import Any, Sequence, Union

from torch import nn

LayerSpec = Union[str, nn.Module]


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return `(dotted_name, module)` for a name from `model.named_modules()` or a module of `model`."""
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer in named and layer != "":
            return layer, named[layer]
        close = difflib.get_close_matches(layer, [n for n in named if n], n=5, cutoff=0.5)
        hint = f" Close matches: {close}." if close else ""
        raise ValueError(
            f"layer {layer!r} is not a submodule of {type(model).__name__}.{hint} "
            "Use a dotted name from model.named_modules(), or xw.candidate_layers(model)."
        )
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer and name != "":
                return name, module
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
    raise TypeError(
        f"layer must be a dotted module name (str), a module, or a list of them; got {type(layer).__name__}"
    )


def resolve_layers(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """Resolve one layer or a non-empty list of distinct layers."""
    specs: list[Any] = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not specs:
        raise ValueError("layer list is empty; give at least one layer")
    resolved = [resolve_layer(model, spec) for spec in specs]
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"layer list names a layer twice: {names}")
    return resolved
