"""One batch's rows: the pure function that both engines map over the images.

`evaluate_batch(bundle, batch, methods, layers, ...)` returns plain rows (Python values only: no
pandas, no I/O, no state) and each row's small raw map, so that an engine may call it anywhere
(in this process or in a Ray actor) and ship the result as JSON. The batch holds the model's
lock (`evaluation_mode`) from its first pass to its last, and releases it at the end, so that a
widget sharing the model runs between two batches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .. import metrics as M
from ..diagnostics import diagnose
from ..explain import explain
from ..inputs import prepare_input
from ..model_state import evaluation_mode
from ..models import ModelBundle
from ..targets import SegmentationTarget, class_indices, logits_of, segmentation_logits
from .arguments import not_a_classifier, token_layers
from .latents import Latents, batch_latents, joined_latents
from .maps import low_resolution
from .sanity_columns import sanity_columns
from .sources import UNKNOWN_LABEL, ImageBatch
from .table import DEFAULT_METRICS, ERROR_COLUMN, LOCALISATION, row_key

EvalTarget = Union[None, int, str]
SEGMENTATION = "segmentation"  # target: each image's label, scored by SegmentationTarget over its predicted pixels


@dataclasses.dataclass
class BatchResult:
    """A batch's rows (one per image × method × layer, sorted by `row`), their maps by `row`, and the
    latents of its `LATENT_METHODS` rows by layer index. Unpacks as `(rows, maps)`, as it did."""

    rows: list[dict]
    maps: dict[int, np.ndarray]
    latents: dict[int, Latents] = dataclasses.field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.rows, self.maps))


def evaluate_batch(
    bundle: ModelBundle,
    batch: ImageBatch,
    methods: Sequence[str],
    layers: Sequence[str],
    *,
    target: EvalTarget = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    steps: int = M.DEFAULT_STEPS,
    tolerance: int | None = None,
    chunk_size: int = 256,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    latents: bool = True,
) -> BatchResult:
    """Rows and maps for every image × method × layer of `batch` (columns: `xcam_widgets.evaluation`).

    `methods` and `layers` are the run's full lists (a row's key counts their positions).
    `target`: None (the label where known, else the top-1 class), "label", "top1" or a class
    index; or "segmentation" for a `[B, C, H, W]` segmentation model: each image's label c is explained
    with `SegmentationTarget(c)` (the sum of class c's logits over the pixels predicted as c), and only
    the localisation metrics (`pointing`, `energy`) apply; `predicted`, `confidence` and `correct` are
    left missing, and an image where c is predicted at no pixel gets a row with an `error`.
    `chunk_size` bounds the inputs per model pass of the perturbation metrics and of the
    diagnostics' true drops. An image of `batch.failures`, or whose label is not one of the model's
    classes, gets rows with its `error` and no values. On a token layer the diagnostics are NaN: their
    true drops need a `[B, K, h, w]` layer (`arguments.metrics_for_layers`). `latents`: also the
    rows' channel relevance vectors (`latents`; not for target="segmentation" or error rows).
    """
    rows: list[dict] = []
    maps: dict[int, np.ndarray] = {}
    found: dict[int, list[Latents]] | None = {} if latents else None
    for failure in batch.failures:
        rows.extend(error_rows(failure.position, failure.image, failure.message, methods, layers))
    if len(batch) and target == SEGMENTATION:
        with evaluation_mode(bundle.model):
            _segmentation_rows(bundle, batch, methods, layers, metrics, tolerance, method_options or {}, rows, maps)
    elif len(batch):
        with evaluation_mode(bundle.model):
            _loaded_rows(
                bundle, batch, methods, layers, target, metrics, steps, tolerance, chunk_size, method_options or {},
                rows, maps, found,
            )  # fmt: skip
    rows.sort(key=lambda row: row["row"])
    joined = {i: joined_latents(pieces) for i, pieces in (found or {}).items()}
    return BatchResult(rows, maps, joined)


def error_rows(
    position: int, image: Any, message: str, methods: Sequence[str], layers: Sequence[str], label: int = UNKNOWN_LABEL
) -> list[dict]:
    """The rows of an image that has no values: class -1 and `message` in `error`."""
    shape = (len(methods), len(layers))
    return [
        {
            "row": row_key(position, m, l_index, *shape),
            "image": image,
            "method": method,
            "layer": layer,
            "class": UNKNOWN_LABEL,
            "class_name": "",
            "label": label,
            "predicted": UNKNOWN_LABEL,
            ERROR_COLUMN: message,
        }
        for m, method in enumerate(methods)
        for l_index, layer in enumerate(layers)
    ]


def _outside_labels(batch: ImageBatch, classes: int) -> list[int]:
    """Indices into `batch` of the images whose label is no class of the model (known labels only)."""
    if batch.labels is None:
        return []
    return (batch.labels >= classes).nonzero().flatten().tolist()


def _without(batch: ImageBatch, dropped: list[int]) -> ImageBatch:
    """`batch` less the images at `dropped` (and without failures: their rows are made already)."""
    keep = [i for i in range(len(batch)) if i not in dropped]
    index = torch.tensor(keep, dtype=torch.long)
    return dataclasses.replace(
        batch,
        positions=[batch.positions[i] for i in keep],
        ids=[batch.ids[i] for i in keep],
        x=batch.x[index],
        labels=None if batch.labels is None else batch.labels[index],
        masks=None if batch.masks is None else batch.masks[index],
        failures=(),
    )


def _loaded_rows(
    bundle: ModelBundle,
    batch: ImageBatch,
    methods: Sequence[str],
    layers: Sequence[str],
    target: EvalTarget,
    metrics: Sequence[str],
    steps: int,
    tolerance: int | None,
    chunk_size: int,
    options: Mapping[str, Mapping[str, Any]],
    rows: list[dict],
    maps: dict[int, np.ndarray],
    latents: dict[int, list[Latents]] | None,
) -> None:
    """Append the rows, maps and (where `latents` is a dict) latents of the batch's loaded images (inside
    `evaluation_mode`); an image whose label is no class of the model gets error rows, and the others
    go on without it."""
    model = bundle.model
    x = prepare_input(model, batch.x)
    with torch.no_grad():
        output = model(x)
    if bundle.task == "segmentation" or (isinstance(output, torch.Tensor) and output.ndim == 4):
        raise ValueError(
            f"model {bundle.name!r} is a segmentation model ([B, C, H, W] output): pass target={SEGMENTATION!r}"
        )
    try:
        logits = logits_of(output).float()
    except (TypeError, ValueError):
        shown = f"a tensor of shape {list(output.shape)}" if isinstance(output, torch.Tensor) else "no logits"
        raise TypeError(not_a_classifier(bundle.name, f"{shown} ({type(output).__name__})")) from None
    outside = _outside_labels(batch, logits.shape[1])
    if outside:
        assert batch.labels is not None  # `_outside_labels` found labels
        for i in outside:
            label = int(batch.labels[i])
            message = (
                f"image {batch.ids[i]!r} has label {label}, outside the model's {logits.shape[1]} classes "
                f"(0 .. {logits.shape[1] - 1})"
            )
            rows.extend(error_rows(batch.positions[i], batch.ids[i], message, methods, layers, label))
        if len(outside) < len(batch):
            rest = _without(batch, outside)
            _loaded_rows(
                bundle, rest, methods, layers, target, metrics, steps, tolerance, chunk_size, options,
                rows, maps, latents,
            )  # fmt: skip
        return
    probabilities = torch.softmax(logits, dim=1)
    confidence, predicted = probabilities.max(dim=1)
    labels = batch.labels.to(x.device) if batch.labels is not None else None
    classes = _classes(labels, predicted, logits, target, batch)
    masks = None
    if batch.masks is not None and any(m in LOCALISATION for m in metrics):
        masks = batch.masks.to(x.device)[torch.arange(len(batch), device=x.device), classes]
    class_list = classes.tolist()
    names = [bundle.categories[c] if 0 <= c < len(bundle.categories) else str(c) for c in class_list]
    label_list = labels.tolist() if labels is not None else [UNKNOWN_LABEL] * len(batch)
    predicted_list, confidence_list = predicted.tolist(), confidence.tolist()
    sanity = sanity_columns(model, x, batch.positions, class_list, methods, layers, metrics, logits.shape[1], options)
    shape = (len(methods), len(layers))
    for m, method in enumerate(methods):
        layer_results = _explanations(model, x, layers, method, classes, metrics, chunk_size, options.get(method, {}))
        for l_index, (layer, result, diagnosis) in enumerate(layer_results):
            columns: dict[str, torch.Tensor] = {"score": result.score.detach()}
            saliency = result.map.detach()
            if "diagnostics" in metrics:
                nan = torch.full_like(columns["score"], float("nan"))  # undefined: unscaled methods, token layers
                for name in ("conservation_error", "sensitivity_error", "sensitivity_r"):
                    value = None if diagnosis is None else getattr(diagnosis, name)
                    columns[name] = nan if value is None else value
            if "average_drop" in metrics:
                columns["average_drop"], columns["increase"] = M.average_drop_increase(
                    model, x, saliency, classes, batch_size=chunk_size
                )
            if "deletion" in metrics:
                columns["deletion"] = M.deletion_auc(model, x, saliency, classes, steps=steps, batch_size=chunk_size)
            if "insertion" in metrics:
                columns["insertion"] = M.insertion_auc(model, x, saliency, classes, steps=steps, batch_size=chunk_size)
            columns.update(_localisation(saliency, masks, metrics, tolerance))
            values = {name: value.tolist() for name, value in columns.items()}  # one transfer per column
            values.update(sanity[(method, layer)])
            small = low_resolution(result.raw)
            for i, (position, image) in enumerate(zip(batch.positions, batch.ids)):
                key = row_key(position, m, l_index, *shape)
                label = label_list[i]
                row = {
                    "row": key,
                    "image": image,
                    "method": method,
                    "layer": layer,
                    "class": class_list[i],
                    "class_name": names[i],
                    "label": label,
                    "predicted": predicted_list[i],
                    "confidence": confidence_list[i],
                    "correct": label == predicted_list[i] if label != UNKNOWN_LABEL else math.nan,
                }
                row.update({name: value[i] for name, value in values.items()})
                row[ERROR_COLUMN] = ""
                rows.append(row)
                maps[key] = small[i]
    if latents is not None:
        for l_index, found in batch_latents(model, x, methods, layers, classes, batch.positions).items():
            latents.setdefault(l_index, []).append(found)


def _localisation(
    saliency: torch.Tensor, masks: torch.Tensor | None, metrics: Sequence[str], tolerance: int | None
) -> dict[str, torch.Tensor]:
    """The pointing game and the energy in the mask, where masks exist and the metrics ask for them."""
    columns: dict[str, torch.Tensor] = {}
    if masks is not None and "pointing" in metrics:
        columns["pointing"] = M.pointing_game(saliency, masks, tolerance)
    if masks is not None and "energy" in metrics:
        columns["energy"] = M.energy_in_mask(saliency, masks)
    return columns


def _segmentation_rows(
    bundle: ModelBundle,
    batch: ImageBatch,
    methods: Sequence[str],
    layers: Sequence[str],
    metrics: Sequence[str],
    tolerance: int | None,
    options: Mapping[str, Mapping[str, Any]],
    rows: list[dict],
    maps: dict[int, np.ndarray],
) -> None:
    """Append the rows and maps of `target="segmentation"` (inside `evaluation_mode`): one
    `explain(..., target=SegmentationTarget(c))` per method and class c among the batch's labels."""
    refused = [m for m in metrics if m not in LOCALISATION]
    if refused:
        raise ValueError(
            f"target={SEGMENTATION!r}: metric(s) {refused} assume a classifier's [B, classes] output; "
            f"only {list(LOCALISATION)} apply to a segmentation model"
        )
    if batch.labels is None or bool((batch.labels < 0).any()):
        raise ValueError(f"target={SEGMENTATION!r} needs a label for every image (the shapes benchmark or a Dataset)")
    model = bundle.model
    x = prepare_input(model, batch.x)
    classes = batch.labels.to(x.device).long()
    with torch.no_grad():
        predicted = segmentation_logits(model(x)).argmax(dim=1)
    present = (predicted == classes[:, None, None]).flatten(1).any(dim=1).tolist()
    masks = None
    if batch.masks is not None and metrics:
        masks = batch.masks.to(x.device)[torch.arange(len(batch), device=x.device), classes]
    class_list = classes.tolist()
    shape = (len(methods), len(layers))
    for m, method in enumerate(methods):
        per_layer = _segmentation_explanations(model, x, layers, method, class_list, present, options.get(method, {}))
        for l_index, (layer, (score, saliency, raw)) in enumerate(zip(layers, per_layer)):
            columns = {"score": score, **_localisation(saliency, masks, metrics, tolerance)}
            values = {name: value.tolist() for name, value in columns.items()}
            small = low_resolution(raw)
            for i, (position, image) in enumerate(zip(batch.positions, batch.ids)):
                key = row_key(position, m, l_index, *shape)
                c = class_list[i]
                row = {
                    "row": key,
                    "image": image,
                    "method": method,
                    "layer": layer,
                    "class": c,
                    "class_name": bundle.categories[c] if c < len(bundle.categories) else str(c),
                    "label": c,
                    "predicted": UNKNOWN_LABEL,
                    "confidence": math.nan,
                    "correct": math.nan,
                    ERROR_COLUMN: "",
                }
                if present[i]:
                    row.update({name: value[i] for name, value in values.items()})
                    maps[key] = small[i]
                else:
                    row[ERROR_COLUMN] = f"class {c} is predicted at no pixel: no segmentation target"
                rows.append(row)


def _segmentation_explanations(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    method: str,
    classes: list[int],
    present: list[bool],
    options: Mapping[str, Any],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per layer, (score, map, raw map) for every image, filled class by class; zeros where the
    image's class is predicted nowhere (its row carries an error instead)."""
    filled: list[list[torch.Tensor]] = []
    for c in sorted({c for c, ok in zip(classes, present) if ok}):
        index = torch.tensor([i for i, (k, ok) in enumerate(zip(classes, present)) if k == c and ok], device=x.device)
        results = explain(model, x[index], list(layers), method, target=SegmentationTarget(c), **options)
        for l_index, result in enumerate(results):  # type: ignore[arg-type]
            parts = (result.score.detach(), result.map.detach(), result.raw.detach())
            if len(filled) <= l_index:
                filled.append([part.new_zeros((len(classes), *part.shape[1:])) for part in parts])
            for whole, part in zip(filled[l_index], parts):
                whole[index] = part
    if not filled:  # no image has a target: every row is an error
        empty = x.new_zeros(len(classes))
        return [(empty, x.new_zeros(len(classes), *x.shape[-2:]), x.new_zeros(len(classes), 1, 1)) for _ in layers]
    return [(score, saliency, raw) for score, saliency, raw in filled]


def _explanations(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    method: str,
    classes: torch.Tensor,
    metrics: Sequence[str],
    batch_size: int,
    options: Mapping[str, Any],
) -> Iterator[tuple[str, Any, Any]]:
    """(layer, Explanation, Diagnosis or None) per layer: `diagnose` (which carries the
    explanation) when diagnostics are asked for, except on token layers, else one `explain` call
    for all layers."""
    if "diagnostics" in metrics:
        tokens = token_layers(model, x, layers)
        for layer in layers:
            if layer in tokens:
                yield layer, explain(model, x, layer, method, target=classes, **options), None
            else:
                d = diagnose(model, x, layer, method, target=classes, batch_size=batch_size, **options)
                yield layer, d.explanation, d
    else:
        results = explain(model, x, list(layers), method, target=classes, **options)
        for layer, result in zip(layers, results):  # type: ignore[arg-type]
            yield layer, result, None


def _classes(
    labels: torch.Tensor | None, predicted: torch.Tensor, logits: torch.Tensor, target: EvalTarget, batch: ImageBatch
) -> torch.Tensor:
    """The class each map explains: see `evaluate_batch`'s `target`."""
    known = labels >= 0 if labels is not None else torch.zeros_like(predicted, dtype=torch.bool)
    if target is None:
        return torch.where(known, labels, predicted) if labels is not None else predicted
    if target == "label":
        if labels is None:
            raise ValueError("target='label' needs images with labels (the shapes benchmark or a Dataset)")
        if not bool(known.all()):
            missing = [batch.ids[i] for i in (~known).nonzero().flatten().tolist()]
            raise ValueError(f"target='label': image(s) {missing[:5]} have no label (-1 or None)")
        return labels.long()
    if target == "top1":
        return predicted
    return class_indices(int(target), logits)  # checks the index's range


__all__ = ["SEGMENTATION", "BatchResult", "EvalTarget", "error_rows", "evaluate_batch"]
