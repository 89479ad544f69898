"""Model B's rows for classes chosen per image (model A's): the runner's batch function, batch after batch.

`xw.evaluate` takes one `target` for every image (None, "label", "top1" or an index), so B's maps for
A's predicted classes cannot go through it. Here each batch's labels are replaced by A's classes and
`evaluate_batch(..., target="label")` explains them; the rows then get the true label back. This path
is local and not resumable (no parts): what the runner lacks is a per-image target.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..evaluation import EvaluationResult, MapStore, evaluate_batch, open_images, summarize
from ..evaluation.arguments import chosen_metrics, layer_names, method_names, metrics_for_layers
from ..evaluation.batch import error_rows
from ..evaluation.sources import UNKNOWN_LABEL, Images
from ..evaluation.table import ERROR_COLUMN, rows_frame, table_columns
from ..models import ModelBundle


def evaluate_for_classes(
    bundle: ModelBundle,
    images: Images,
    classes: Mapping[int, int],
    methods: Sequence[str],
    layers: Any,
    metrics: Sequence[str] | None,
    *,
    batch_size: int = 32,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> EvaluationResult:
    """`bundle` on `images`, each image position p explained for `classes[p]`; a position without a
    class (< 0 or absent: model A has no row for it) gets error rows. Same columns as `xw.evaluate`."""
    source = open_images(images, bundle.preprocess)
    names = method_names(methods)
    layer_list = layer_names(bundle, layers, source)
    chosen, _ = metrics_for_layers(
        metrics, chosen_metrics(metrics, source.has_masks, "label"), bundle, layer_list, source
    )
    columns = table_columns(chosen, source.has_masks)
    rows: list[dict] = []
    maps: dict = {}
    pending = [p for p in range(len(source)) if classes.get(p, UNKNOWN_LABEL) >= 0]
    for position in sorted(set(range(len(source))) - set(pending)):
        rows.extend(_unexplained(position, source.ids[position], names, layer_list))
    done = len(source) - len(pending)
    with tqdm(total=len(source), initial=done, unit="img", disable=not progress, desc="model B, A's classes") as bar:
        for start in range(0, len(pending), batch_size):
            if stop is not None and stop.is_set():
                break
            batch = source.take(pending[start : start + batch_size], strict=False)
            truth = batch.labels.tolist() if batch.labels is not None else [UNKNOWN_LABEL] * len(batch)
            chosen_classes = torch.tensor([classes[p] for p in batch.positions], dtype=torch.long)
            result = evaluate_batch(
                bundle,
                dataclasses.replace(batch, labels=chosen_classes),
                names,
                layer_list,
                target="label",
                metrics=chosen,
            )
            label_of = dict(zip(batch.positions, truth))
            for row in result.rows:
                _restore_label(row, label_of, len(names) * len(layer_list))
            rows.extend(result.rows)
            maps.update(result.maps)
            done += len(batch.positions) + len(batch.failures)
            bar.update(len(batch.positions) + len(batch.failures))
    table = rows_frame(rows, columns)
    meta = {"model": bundle.name, "methods": names, "layers": layer_list, "target": "classes of model A"}
    return EvaluationResult(table, summarize(table), MapStore(maps), meta, done == len(source))


def _restore_label(row: dict, label_of: Mapping[int, int], per_image: int) -> None:
    """Put the image's true label back in a row explained for A's class, and `correct` with it."""
    label = label_of.get(row["row"] // per_image, UNKNOWN_LABEL)
    row["label"] = label
    if not row.get(ERROR_COLUMN):
        row["correct"] = label == row["predicted"] if label != UNKNOWN_LABEL else math.nan


def _unexplained(position: int, image: Any, methods: list[str], layers: list[str]) -> list[dict]:
    message = "model A has no class for this image (its row is an error), so model B has none to explain"
    return error_rows(position, image, message, methods, layers)


__all__ = ["evaluate_for_classes"]
