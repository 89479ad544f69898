"""The runner's argument checks: each bad argument gets an error that names it, before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..capture import run_hooked
from ..discovery import candidate_layers, default_layer
from ..inputs import prepare_input
from ..layers import resolve_layers
from ..methods import check_options, get_method
from ..model_state import evaluation_mode
from ..models import ModelBundle, load_model
from ..reshape import infer_reshape
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
    if bundle.task == "detection":
        raise ValueError(not_a_classifier(bundle.name, "detections (it is a detector)"))
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
    if target is None or (isinstance(target, str) and target in TARGETS):
        return
    if callable(target):
        raise TypeError(
            "xw.evaluate's target is None, 'label', 'top1', 'segmentation' or a class index, not a callable: "
            "a target callable (xw.targets.DetectionTarget, EmbeddingSimilarity, your own) works with "
            "xw.explain(model, x, layer, target=...) and the Explorer, one batch of images at a time"
        )
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


def not_a_classifier(model: str, output: str) -> str:
    """Why `xw.evaluate` refuses a model whose output holds no `[B, classes]` logits, and what to use."""
    return (
        f"xw.evaluate needs a classifier ([B, classes] logits) or, with target='segmentation', a segmentation "
        f"model ([B, classes, H, W]); model {model!r} returns {output}, and evaluate accepts no target callable. "
        "Explain its outputs image by image with xw.explain(model, x, layer, target=...) and a target such as "
        "xw.targets.DetectionTarget(box, label), or any callable(output) -> [B] scores"
    )


def token_layers(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> list[str]:
    """The layers among `layers` whose output is not a `[B, K, h, w]` map but tokens `[B, N, D]` or a
    channels-last `[B, h, w, C]` map, read from one forward pass of `x`'s first image (no gradients).
    `diagnose`'s true drops re-run the network after the layer on the `[B, K, h, w]` grid, which these
    layers do not output. The pass holds the model's lock (`evaluation_mode`), as every batch does."""
    first = prepare_input(model, x)[:1]
    with evaluation_mode(model), torch.no_grad():
        _, recorders = run_hooked(model, first, resolve_layers(model, list(layers)))
    found = []
    for name, recorder in zip(layers, recorders):
        shape = tuple(recorder.output.shape) if recorder.output is not None else ()
        try:
            tokens = len(shape) != 4 or infer_reshape(model, tuple(first.shape), name, shape) is not None
        except ValueError:  # tokens without a readable grid: explain says so for that layer
            tokens = True
        if tokens:
            found.append(name)
    return found


def metrics_for_layers(
    asked: Sequence[str] | str | None, chosen: tuple[str, ...], bundle: ModelBundle, layers: list[str], source: Source
) -> tuple[tuple[str, ...], str]:
    """`(metrics, note)`: `chosen` fitted to the layers. The true drops of "diagnostics" do not yet run
    on token layers, so the defaults (`asked` None) leave diagnostics out there, with a note (the
    rows of those layers hold NaN; with token layers only, the columns go), and an explicit request
    is an error that names the layers."""
    if "diagnostics" not in chosen:
        return chosen, ""
    x = next((batch.x for batch in source.batches(1, strict=False) if len(batch)), None)
    tokens = [] if x is None else token_layers(bundle.model, x, layers)  # no image to read: only error rows
    if not tokens:
        return chosen, ""
    if asked is not None:
        raise ValueError(
            f"metric 'diagnostics' cannot run on token layer(s) {tokens}: its true drops re-run the network "
            "after the layer on channel-ablated [B, K, h, w] maps, which token layers do not support yet. "
            "Leave 'diagnostics' out (metrics=None leaves it out on token layers only), or choose "
            "convolutional layers"
        )
    kept = chosen if len(tokens) < len(layers) else tuple(m for m in chosen if m != "diagnostics")
    note = (
        f"diagnostics (conservation and sensitivity) are left out on token layer(s) {tokens}: "
        "their true drops need a [B, K, h, w] layer"
    )
    return kept, note


__all__ = [
    "ENGINES",
    "TARGETS",
    "check_device",
    "check_target",
    "chosen_metrics",
    "layer_names",
    "make_bundle",
    "method_names",
    "metrics_for_layers",
    "checked_method_options",
    "not_a_classifier",
    "token_layers",
]
