"""Small-multiple views without controls: a layer sweep and a method grid, as Plotly figures."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..gallery.twins import twins
from ..images import SAMPLE_IMAGES, sample_image
from ..methods import GRADIENT_METHODS, REGISTRY, get_method
from ..models import ModelBundle, load_model
from ..session import Session
from . import figures
from .live_figure import LiveFigure


def _session(model: ModelBundle | torch.nn.Module | Session | None, image: Any) -> Session:
    if isinstance(model, Session):
        return model
    return Session(
        load_model("efficientnet_lite0") if model is None else model,
        sample_image(SAMPLE_IMAGES[0]) if image is None else image,
    )


def layer_sweep(
    model: ModelBundle | torch.nn.Module | Session | None = None,
    image: Any = None,
    *,
    method: str = "xgradcam",
    target: int | None = None,
    layers: Sequence[str] | None = None,
    **options: Any,
) -> LiveFigure:
    """The map of `method` at layers through the network (default: up to 12 spread evenly),
    all from one forward and one backward pass: how the evidence forms."""
    s = _session(model, image)
    target = s.predictions(1)[0].index if target is None else target
    maps = s.sweep_maps(method, target, layers, options=options)
    fig = figures.small_multiples(s.display, list(maps.values()), list(maps))
    fig.update_layout(title=f"{get_method(method).title} for '{s.class_name(target)}' through the network")
    return LiveFigure(fig)


def method_grid(
    model: ModelBundle | torch.nn.Module | Session | None = None,
    image: Any = None,
    *,
    layer: str | None = None,
    target: int | None = None,
    methods: Sequence[str] = GRADIENT_METHODS,
) -> LiveFigure:
    """Several methods side by side at one layer for one class (gradient methods share one pass).
    Methods whose maps are the same at this layer (Grad-CAM = XGrad-CAM before global average
    pooling and a linear layer, `gallery.twins`) share one panel, titled with both."""
    s = _session(model, image)
    target = s.predictions(1)[0].index if target is None else target
    layer = layer or s.default_layer
    maps = s.method_maps(layer, target, methods)
    titles = {m: REGISTRY[m].title for m in maps}
    for kept, merged, _ in twins(s.model, maps, [layer]):
        titles[kept] = f"{titles[kept]} = {titles.pop(merged)}"
    fig = figures.small_multiples(s.display, [maps[m] for m in titles], list(titles.values()))
    fig.update_layout(title=f"'{s.class_name(target)}' at {layer}")
    return LiveFigure(fig)
