"""The runner's argument checks: each bad argument gets an error that names it, before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..discovery import candidate_layers, default_layer
from ..layers import resolve_layers
from ..methods import check_options, get_method
from ..model_state import evaluation_mode
from ..models import ModelBundle, load_model
from ..shapes import nets
from .sources import Source, categories_of, is_shapes
from .table import DEFAULT_METRICS, LOCALISATION, METRICS

ENGINES: tuple[str, ...] = ("local", "ray")
TARGETS: tuple[str, ...] = ("label", "top1", "segmentation")


def check_device(device: str | torch.device | None, here: bool = True) -> torch.device | None:
    """`device` as a torch.device; with `here`, it must also exist on this machine (a CUDA device
    without a GPU is an error now, not a failure inside the first batch)."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {str(device)!r} is not a torch device, e.g. 'cpu' or 'cuda:0'") from err
    if here and parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {str(device)!r}: this machine has no CUDA GPU that torch can use "
                "(torch.cuda.is_available() is False); use device='cpu'"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA GPU(s), numbered from 0")
    if here and parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available on this machine; use device='cpu'")
    return parsed


def make_bundle(
    model_or_name: Any, device: torch.device | str | None, preprocess: Callable | None, images: Any
) -> ModelBundle:
    """The model with its preprocess and class names; moved to `device` (holding its lock) if given."""
    if isinstance(model_or_name, str):
        bundle = load_model(model_or_name, device=device)
    elif isinstance(model_or_name, ModelBundle):
        bundle = model_or_name
    elif isinstance(model_or_name, nn.Module):
        if preprocess is None:
            if not is_shapes(images):
                raise ValueError("a bare model needs preprocess= (PIL image -> tensor), or pass a ModelBundle")
            preprocess = nets.preprocess
        bundle = ModelBundle(type(model_or_name).__name__, model_or_name, preprocess, categories_of(images), 0)
    else:
        raise TypeError(
            f"model_or_name must be a model name (see xw.available_models()), a ModelBundle or an nn.Module; "
            f"got {type(model_or_name).__name__}"
        )
    if preprocess is not None and not isinstance(model_or_name, nn.Module):
        bundle = dataclasses.replace(bundle, preprocess=preprocess)
    if device is not None and not isinstance(model_or_name, str):
        with evaluation_mode(bundle.model):  # not while another thread runs it
            bundle.model.to(device)
    return bundle


def method_names(methods: str | Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if not isinstance(methods, Sequence) or not methods:
        raise ValueError("methods must name at least one method, e.g. ['gradcam', 'xgradcam']")
    names = [get_method(m).name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods names a method twice: {names}")
    return names


def checked_method_options(
    options: Mapping[str, Mapping[str, Any]] | None, methods: list[str]
) -> dict[str, dict[str, Any]]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"method_options must be a dict {{method: {{option: value}}}}, got {type(options).__name__}")
    checked: dict[str, dict[str, Any]] = {}
    for name, values in options.items():
        method = get_method(name)
        if method.name not in methods:
            raise ValueError(f"method_options names {name!r}, which is not among the methods {methods}")
        check_options(method, values)
        checked[method.name] = dict(values)
    return checked


def check_target(target: Any, source: Source) -> None:
    """`target="segmentation"` explains each image's label with `SegmentationTarget` over the pixels
    the model predicts as that class, so it needs labels like "label" does."""
    if target in ("label", "segmentation") and not source.has_labels:
        raise ValueError(f"target={target!r} needs images with labels (the shapes benchmark or a Dataset)")
    if target is None or target in TARGETS:
        return
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ValueError(f"target must be None, 'label', 'top1', 'segmentation' or a class index >= 0; got {target!r}")


def chosen_metrics(metrics: Sequence[str] | None, has_masks: bool, target: Any = None) -> tuple[str, ...]:
    """The metrics to run, in `METRICS` order; None gives `DEFAULT_METRICS` that apply to the data
    (not the sanity checks, which are costly: `table`). With `target="segmentation"` only the
    localisation metrics apply: the others perturb or rank a classifier's `[B, classes]` logits."""
    segmentation = target == "segmentation"
    if metrics is None:
        if segmentation:
            return tuple(m for m in LOCALISATION if has_masks)
        return tuple(m for m in DEFAULT_METRICS if has_masks or m not in LOCALISATION)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, Sequence) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(
            f"metrics must be None, a comma-separated str or a list of names from {METRICS}, got {metrics!r}"
        )
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(
            f"unknown metric {unknown[0]!r}; accepted: {', '.join(METRICS)}"
            if unknown
            else f"metrics is empty; accepted: {', '.join(METRICS)}"
        )
    refused = [m for m in metrics if segmentation and m not in LOCALISATION]
    if refused:
        raise ValueError(
            f"metric(s) {refused} assume a classifier's [B, classes] output; "
            f"with target='segmentation' only {list(LOCALISATION)} apply"
        )
    without = [m for m in metrics if m in LOCALISATION and not has_masks]
    if without:
        raise ValueError(f"metric {without[0]!r} needs ground-truth masks, which only the shapes benchmark has")
    return tuple(m for m in METRICS if m in metrics)


def layer_names(bundle: ModelBundle, layers: Any, source: Source) -> list[str]:
    """Resolved layer names; None gives the layer the bundle names (`cam_layer`: the shapes nets'
    `features.block4`), or else `xw.default_layer`."""
    model = bundle.model
    if layers is None:
        if bundle.cam_layer is not None:
            return [bundle.cam_layer]
        return [default_layer(candidate_layers(model, source.input_shape()), model)]  # type: ignore[arg-type]
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    return [name for name, _ in resolve_layers(model, layers)]


__all__ = [
    "ENGINES",
    "TARGETS",
    "check_device",
    "check_target",
    "chosen_metrics",
    "layer_names",
    "make_bundle",
    "method_names",
    "checked_method_options",
]
