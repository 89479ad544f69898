"""`xw.compare`'s own argument checks (the runner checks the rest): layers, target, measure, class counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import torch

from ..evaluation.sources import Source
from ..inputs import prepare_input
from ..layers import LayerSpec
from ..model_state import evaluation_mode
from ..models import ModelBundle
from ..targets import logits_of
from .similarity import MEASURES

CompareTarget = Union[str, int]
TARGETS: tuple[str, ...] = ("label", "predicted_a")
LayerPair = tuple[Union[list[LayerSpec], None], Union[list[LayerSpec], None]]


def layer_pair(layers: Any) -> LayerPair:
    """`layers` as (A's, B's) runner argument: None (each model's default CAM layer), one layer (a name,
    a module or `[layer]`: the same for both) or `(layer_a, layer_b)`."""
    if layers is None:
        return None, None
    if isinstance(layers, str) and "," in layers:
        raise ValueError(f"layers={layers!r}: xw.compare takes one layer per model, e.g. (layer_a, layer_b)")
    if isinstance(layers, (str, torch.nn.Module)):
        return [layers], [layers]
    if not isinstance(layers, Sequence) or not 1 <= len(layers) <= 2:
        raise ValueError(
            "layers must be None (each model's default CAM layer), [layer] (the same layer in both models) or "
            f"(layer_a, layer_b); got {layers!r}"
        )
    for layer in layers:
        if not isinstance(layer, (str, torch.nn.Module)):
            raise TypeError(f"layers: each layer is a dotted name or a module, got {type(layer).__name__}")
        if isinstance(layer, str) and "," in layer:
            raise ValueError(f"layers: {layer!r} names several layers; xw.compare takes one layer per model")
    return [layers[0]], [layers[-1]]


def check_target(target: Any) -> None:
    if isinstance(target, str) and target in TARGETS:
        return
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ValueError(
            f"target must be 'label' (the true class where known, else model A's prediction), 'predicted_a' or "
            f"a class index >= 0; got {target!r}"
        )


def check_measure(measure: Any, top: Any) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0 < top <= 100:
        raise ValueError(f"top (iou's hottest share of cells) must be a percentage in (0, 100], got {top!r}")


def class_count(bundle: ModelBundle, source: Source) -> int | None:
    """The model's number of classes, from one pass on the first image that loads (no gradients, under
    the model's lock); None where there is no image to read or no `[B, classes]` logits (the runner
    then says why)."""
    batch = next((b for b in source.batches(1, strict=False) if len(b)), None)
    if batch is None:
        return None
    model = bundle.model
    with evaluation_mode(model), torch.no_grad():
        output = model(prepare_input(model, batch.x))
    try:
        logits = logits_of(output)
    except (TypeError, ValueError):
        return None
    return int(logits.shape[1]) if logits.ndim == 2 else None


def check_classes(counts: tuple[int | None, int | None], target: CompareTarget, names: tuple[str, str]) -> None:
    """Models with different class counts explain no common class unless `target` is an index both have."""
    a, b = counts
    if a is None or b is None:
        return
    if a != b and not isinstance(target, int):
        raise ValueError(
            f"model A ({names[0]}) has {a} classes and model B ({names[1]}) has {b}: their classes need not "
            f"match, so target={target!r} is refused; pass an explicit class index that means the same class in "
            "both (target=int)"
        )
    if isinstance(target, int) and target >= min(a, b):
        raise ValueError(
            f"target={target} is outside the classes of model {'A' if target >= a else 'B'} "
            f"({names[0] if target >= a else names[1]}: {a if target >= a else b} classes)"
        )


__all__ = ["TARGETS", "CompareTarget", "check_classes", "check_measure", "check_target", "class_count", "layer_pair"]
