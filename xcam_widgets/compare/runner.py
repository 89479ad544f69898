"""`xw.compare`: both models through the runner on the same images, then the joined table."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from torch import nn

from ..evaluation import ENGINES, EvaluationResult, evaluate, open_images
from ..evaluation.arguments import make_bundle, method_names
from ..evaluation.sources import UNKNOWN_LABEL, Images
from ..evaluation.table import ERROR_COLUMN
from ..models import ModelBundle
from .arguments import CompareTarget, check_classes, check_measure, check_target, class_count, layer_pair
from .result import Comparison
from .similarity import DEFAULT_MEASURE, TOP_PERCENT
from .table import join_runs
from .targeted import evaluate_for_classes

Model = Union[str, ModelBundle, nn.Module]
OUT_FILES: dict[str, str] = {"a": "model_a.csv", "b": "model_b.csv", "table": "comparison.csv"}


def compare(
    model_a: Model,
    model_b: Model,
    images: Images,
    *,
    methods: str | Sequence[str] = ("xgradcam",),
    layers: Any = None,
    target: CompareTarget = "label",
    metrics: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    engine: str = "local",
    measure: str = DEFAULT_MEASURE,
    top: float = TOP_PERCENT,
    batch_size: int = 32,
    overwrite: bool = False,
    stop: threading.Event | None = None,
) -> Comparison:
    """Explain the same images with two models and say, per image, how far the evidence moved.

    - `model_a`, `model_b`: a `load_model` name, a `ModelBundle` or a module (a bare module on the shapes
      benchmark only, as in `xw.evaluate`). Each uses its own preprocess and stays on its own device;
      the same model twice is allowed (similarity 1).
    - `layers`: None (each model's default CAM layer), `[layer]` (the same name in both) or
      `(layer_a, layer_b)`.
    - `target`: "label" (the true class where known, else model A's prediction), "predicted_a", or a
      class index. Models with different class counts need the index.
    - `methods`, `metrics`, `batch_size`, `engine`, `stop`: as in `xw.evaluate`, for both runs;
      `progress` None shows the runner's bars.
    - `measure`: the measure copied into the `similarity` column; `top`: iou's hottest percentage.
    - `out`: a folder; model A's run goes to `out/model_a.csv`, B's to `out/model_b.csv` (each with the
      runner's parts, so a rerun resumes both), and the comparison table to `out/comparison.csv`.

    The similarity compares the two maps cell by cell, so it assumes that both models' inputs cover the
    same part of the image: preprocesses that only resize differently are fine (the maps meet on the finer
    grid), different crops are not aligned. The runs' `image_for_display` frames are each model's own.

    Model A runs first. Where B must explain A's classes per image (target "predicted_a", or "label" on
    images without labels), the runner cannot (it takes one target for all images), so B's rows come
    from its batch function in this process (`targeted`): not resumed from `out`, not on Ray.
    """
    check_target(target)
    check_measure(measure, top)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    layers_a, layers_b = layer_pair(layers)
    names = method_names(methods)
    bundles = (make_bundle(model_a, None, None, images), make_bundle(model_b, None, None, images))
    source = open_images(images, bundles[0].preprocess)  # once for both where they share the preprocess
    other = source if bundles[1].preprocess is bundles[0].preprocess else open_images(images, bundles[1].preprocess)
    counts = (class_count(bundles[0], source), class_count(bundles[1], other))
    check_classes(counts, target, (bundles[0].name, bundles[1].name))
    paths = out_paths(out)
    shown = True if progress is None else bool(progress)
    common: dict[str, Any] = dict(
        methods=names, metrics=metrics, batch_size=batch_size, engine=engine, progress=shown, stop=stop
    )
    same_target = target if isinstance(target, int) else None  # None: the label where known, else top-1
    target_a = "top1" if target == "predicted_a" else same_target
    run_a = evaluate(
        bundles[0], images, layers=layers_a, target=target_a, out=paths.get("a"), overwrite=overwrite, **common
    )
    meta = {
        "model_a": bundles[0].name,
        "model_b": bundles[1].name,
        "target": target,
        "measure": measure,
        "top": top,
        "methods": names,
    }
    if not run_a.complete:  # stopped: B waits for a rerun, which resumes A
        empty = join_runs(run_a.table, run_a.table.iloc[0:0], run_a.maps, {}, measure, top)
        return Comparison(empty, run_a, None, measure, False, paths, meta)
    classes = _classes_of_a(run_a, len(names)) if _needs_classes_of_a(run_a, target) else None
    if classes is None:
        run_b = evaluate(
            bundles[1], images, layers=layers_b, target=same_target, out=paths.get("b"), overwrite=overwrite, **common
        )
    else:
        run_b = evaluate_for_classes(
            bundles[1], images, classes, names, layers_b, metrics, batch_size=batch_size, progress=shown, stop=stop
        )
    table = join_runs(run_a.table, run_b.table, run_a.maps, run_b.maps, measure, top)
    complete = run_b.complete
    if complete and out is not None:
        table.to_csv(paths["table"], index=False)
    return Comparison(table, run_a, run_b, measure, complete, paths, meta)


def out_paths(out: str | os.PathLike | None) -> dict[str, Path]:
    """`out` (a folder, made if missing) -> the paths of A's run, B's run and the comparison table."""
    if out is None:
        return {}
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out={str(out)!r} is a file: xw.compare's out is a folder (model_a.csv, model_b.csv, ...)")
    folder.mkdir(parents=True, exist_ok=True)
    return {key: folder / name for key, name in OUT_FILES.items()}


def _needs_classes_of_a(run_a: EvaluationResult, target: CompareTarget) -> bool:
    """Whether B must explain A's class image by image: "predicted_a", or "label" where a label is unknown."""
    if target == "predicted_a":
        return True
    if target != "label":
        return False
    table = run_a.table
    fine = table[ERROR_COLUMN].fillna("") == ""
    return bool((table.loc[fine, "label"] == UNKNOWN_LABEL).any())


def _classes_of_a(run_a: EvaluationResult, methods: int) -> dict[int, int]:
    """Image position -> the class A's rows explain (row = position · methods + method, one layer)."""
    table = run_a.table
    return {int(row) // methods: int(c) for row, c in zip(table["row"], table["class"]) if int(c) >= 0}


__all__ = ["OUT_FILES", "compare", "out_paths"]
