"""`explain`: one call from a model, an input and a layer to maps and their parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .capture import Capture, Reshape, capture
from .inputs import prepare_input
from .layers import LayerSpec
from .maps import display_map, scale_unit
from .methods import Method, check_options, get_method
from .methods.context import MethodContext
from .methods.eigen import first_component
from .methods.parts import MapParts
from .model_state import evaluation_mode
from .targets import Target

# Test-time augmentation: (horizontal flip, rescale factor); the identity comes first.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = ((False, 1.0), (True, 1.0), (False, 1.1), (True, 1.1))


@dataclass
class Explanation:
    """One method on one layer for a batch; field meanings in the API contract (README)."""

    method: str
    layer: str
    score: torch.Tensor
    classes: torch.Tensor | None
    raw: torch.Tensor
    weights: torch.Tensor | None
    contributions: torch.Tensor
    map: torch.Tensor
    logits: torch.Tensor | None


def explain(
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec | Sequence[LayerSpec],
    method: str = "xgradcam",
    target: Target = None,
    *,
    reshape: Reshape | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    **options: Any,
) -> Explanation | list[Explanation]:
    """Class activation maps of `method` for `x` at `layer` (a list of layers gives a list of
    results from one forward and one backward pass).

    `reshape` maps a token layer's output to `[B, K, h, w]` (transformers); `aug_smooth` averages
    the displayed map over flips and rescalings; `eigen_smooth` replaces the contributions by
    their first principal component. Other keyword options belong to the method (e.g.
    `batch_size`; `xw.REGISTRY[method].options` lists them with their defaults); an unknown one is
    an error. The model is left exactly as it was.

    Threads: calls that share a model take turns. Each holds the model's lock
    (`xw.model_lock(model)`) while it uses the model, so each sees and restores the caller's
    `training` and `requires_grad` flags, finds no other call's hooks, and never updates BatchNorm
    statistics; calls on different models run in parallel. Code of yours that uses the same model
    in another thread at the same time (training it, say) must hold `xw.model_lock(model)` too.
    """
    spec = get_method(method)
    method_options = check_options(spec, options)
    x = prepare_input(model, x)
    many = isinstance(layer, (list, tuple))
    results = _explain_batch(model, x, layer, spec, target, reshape, eigen_smooth, method_options)
    if aug_smooth:
        fixed_target = target if callable(target) else results[0].classes
        _smooth_over_augmentations(results, model, x, layer, spec, fixed_target, reshape, eigen_smooth, method_options)
    return results if many else results[0]


def _explain_batch(
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec | Sequence[LayerSpec],
    spec: Method,
    target: Target,
    reshape: Reshape | None,
    eigen_smooth: bool,
    options: dict[str, Any],
) -> list[Explanation]:
    with evaluation_mode(model):
        cap = capture(model, x, layer, target, reshape)
        return [
            assemble(
                spec,
                name,
                cap,
                spec.run(MethodContext(model, x, name, cap, reshape), **options),
                eigen_smooth,
                x.shape[2:],
            )
            for name in cap.activations
        ]


def assemble(
    spec: Method, layer: str, cap: Capture, parts: MapParts, eigen_smooth: bool, size: torch.Size
) -> Explanation:
    if eigen_smooth:
        parts = MapParts(contributions=first_component(parts.contributions))
    raw = parts.contributions.sum(dim=1)
    return Explanation(
        method=spec.name,
        layer=layer,
        score=cap.score,
        classes=cap.scorer.classes,
        raw=raw,
        weights=parts.weights,
        contributions=parts.contributions,
        map=display_map(raw, tuple(size)),
        logits=cap.logits,
    )


def _augment(x: torch.Tensor, flip: bool, scale: float) -> torch.Tensor:
    if scale != 1.0:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return x.flip(-1) if flip else x


def _smooth_over_augmentations(
    results: list[Explanation],
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec | Sequence[LayerSpec],
    spec: Method,
    target: Target,
    reshape: Reshape | None,
    eigen_smooth: bool,
    options: dict[str, Any],
) -> None:
    """Replace each result's `map` by the mean of the maps over AUGMENTATIONS, each mapped back
    to the original frame, rescaled to [0, 1]. `raw` and the other fields stay those of the
    un-augmented input."""
    size = tuple(x.shape[2:])
    totals = [r.map.float() for r in results]
    for flip, scale in AUGMENTATIONS[1:]:
        augmented = _explain_batch(model, _augment(x, flip, scale), layer, spec, target, reshape, eigen_smooth, options)
        for total, result in zip(totals, augmented):
            back = result.map.flip(-1) if flip else result.map
            total += F.interpolate(back[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    for result, total in zip(results, totals):
        result.map = scale_unit(total).to(result.map.dtype)
