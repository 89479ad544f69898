"""Small-multiple views without controls: a layer sweep and a method grid, as Plotly figures."""
from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go
import torch

from ..images import SAMPLE_IMAGES, sample_image
from ..methods import GRADIENT_METHODS, REGISTRY
from ..models import ModelBundle, load_model
from ..session import Session
from . import figures
from .explorer import low_res_map, sweep_layers


def _session(model: ModelBundle | torch.nn.Module | Session | None, image: Any) -> Session:
    if isinstance(model, Session):
        return model
    return Session(load_model("efficientnet_lite0") if model is None else model,
                   sample_image(SAMPLE_IMAGES[0]) if image is None else image)


def layer_sweep(model: ModelBundle | torch.nn.Module | Session | None = None, image: Any = None, *,
                method: str = "xgradcam", target: int | None = None, layers: Sequence[str] | None = None,
                **options: Any) -> go.FigureWidget:
    """The map of `method` at layers through the network (default: up to 12 spread evenly),
    all from one forward and one backward pass: how the evidence forms."""
    s = _session(model, image)
    target = s.predictions(1)[0].index if target is None else target
    names = list(layers) if layers is not None else sweep_layers(s)
    maps = [low_res_map(s.explanation(n, method, target, **options).raw) for n in names]
    fig = figures.small_multiples(s.display, maps, names)
    fig.update_layout(title=f"{REGISTRY[method].title} for '{s.class_name(target)}' through the network")
    return go.FigureWidget(fig)


def method_grid(model: ModelBundle | torch.nn.Module | Session | None = None, image: Any = None, *,
                layer: str | None = None, target: int | None = None,
                methods: Sequence[str] = GRADIENT_METHODS) -> go.FigureWidget:
    """Several methods side by side at one layer for one class (gradient methods share one pass)."""
    s = _session(model, image)
    target = s.predictions(1)[0].index if target is None else target
    layer = layer or s.default_layer
    maps = [low_res_map(s.explanation(layer, m, target).raw) for m in methods]
    fig = figures.small_multiples(s.display, maps, [REGISTRY[m].title for m in methods])
    fig.update_layout(title=f"'{s.class_name(target)}' at {layer}")
    return go.FigureWidget(fig)
