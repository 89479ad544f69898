"""What a Gallery shows, without widgets: a new background run with every argument checked first,
or an earlier run reopened (an `EvaluationResult`, the CSV of `evaluate(out=...)`, or a parts
folder), with nothing recomputed.

A new run's arguments go through the runner's own checks (`evaluation.arguments`, which also
refuses a detector) here, in the caller's thread, and `GalleryRun.start` returns only once the
runner in its thread has passed the rest (`out`: a directory, an unwritable place, another run's
files or parts), so that a bad argument raises at once instead of failing later in the thread.
The model is resolved once: the run and any Explorer opened from the Gallery share that object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..checks import positive_int
from ..evaluation import EvaluationResult, Source, open_images, open_result
from ..evaluation.arguments import (
    ENGINES,
    check_device,
    check_target,
    checked_method_options,
    chosen_metrics,
    layer_names,
    make_bundle,
    method_names,
    metrics_for_layers,
)
from ..evaluation.parts import MANIFEST
from ..evaluation.table import run_paths, table_columns
from ..models import ModelBundle
from .run import GalleryRun, Listener

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "xgradcam")
DEFAULT_BATCH = 8  # images per batch: small, so the first page comes soon
RUN_OPTIONS: tuple[str, ...] = (  # `evaluate`'s keywords a Gallery passes through to a new run
    "steps",
    "tolerance",
    "chunk_size",
    "method_options",
    "out",
    "overwrite",
    "strict",
    "engine",
    "engine_options",
)


@dataclass
class GalleryData:
    """The model (shared with any Explorer), the run (growing or finished), the images to draw
    thumbnails from (None when they cannot be reopened), a note for the user (or ""), the run's
    methods and layers (as far as known), whether the methods were the defaults, and the run's
    own files (`out`'s, or those reopened), which an export must never replace."""

    bundle: ModelBundle
    run: GalleryRun
    source: Source | None
    reopened: bool
    note: str = ""
    methods: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    default_methods: bool = False
    files: tuple[Path, ...] = ()


def is_earlier_run(images: Any) -> bool:
    """Whether `images` is a run's output rather than images: an `EvaluationResult`, a path ending
    in .csv, or a parts folder (a directory with the runner's manifest)."""
    if isinstance(images, EvaluationResult):
        return True
    if not isinstance(images, (str, os.PathLike)):
        return False
    path = Path(images)
    return path.suffix.lower() == ".csv" or (path.is_dir() and (path / MANIFEST).is_file())


def open_gallery(
    model: Any,
    images: Any,
    *,
    methods: Any = None,
    layers: Any = None,
    target: Any = None,
    metrics: Any = None,
    batch_size: int = DEFAULT_BATCH,
    device: Any = None,
    preprocess: Any = None,
    display_images: Any = None,
    listener: Listener | None = None,
    run_options: Mapping[str, Any] | None = None,
) -> GalleryData:
    """Reopen `images` when it is an earlier run, else check the arguments and start a run."""
    options = dict(run_options or {})
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown}; a Gallery passes {list(RUN_OPTIONS)} on to xw.evaluate")
    if is_earlier_run(images):
        given = {"methods": methods, "layers": layers, "target": target, "metrics": metrics, **options}
        ignored = sorted(name for name, value in given.items() if value is not None)
        if ignored:
            raise ValueError(
                f"{ignored} set up a new run; a reopened run shows what it computed. "
                "Leave them out, or pass the images to evaluate them again"
            )
        return _reopen(model, images, device, preprocess, display_images)
    if display_images is not None:
        raise ValueError(
            "display_images is for a reopened run whose images cannot be reopened; "
            "a new run shows the images it evaluates"
        )
    return _start(model, images, methods, layers, target, metrics, batch_size, device, preprocess, listener, options)


def _start(
    model: Any,
    images: Any,
    methods: Any,
    layers: Any,
    target: Any,
    metrics: Any,
    batch_size: int,
    device: Any,
    preprocess: Any,
    listener: Listener | None,
    options: dict[str, Any],
) -> GalleryData:
    engine = options.get("engine", "local")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    positive_int("batch_size", batch_size)
    checked_device = check_device(device, here=engine == "local")
    bundle = make_bundle(model, checked_device if engine == "local" else None, preprocess, images)
    names = method_names(DEFAULT_METHODS if methods is None else methods)
    checked_method_options(options.get("method_options"), names)
    source = open_images(images, bundle.preprocess)
    check_target(target, source)
    chosen = chosen_metrics(metrics, source.has_masks, target)
    layer_list = layer_names(bundle, layers, source)
    # The defaults fitted to the layers here, and passed on as the defaults (None), so that the run
    # leaves diagnostics out on token layers rather than refuse them as an explicit request.
    chosen, note = metrics_for_layers(metrics, chosen, bundle, layer_list, source)
    run = GalleryRun.start(
        bundle,
        images,
        columns=table_columns(chosen, source.has_masks),
        images_total=len(source),
        rows_per_image=len(names) * len(layer_list),
        listener=listener,
        methods=names,
        layers=layer_list,
        target=target,
        metrics=None if metrics is None else list(chosen),
        batch_size=batch_size,
        device=device if engine == "ray" else None,
        **options,
    )
    out = options.get("out")
    files = run_files(out) if out is not None else ()
    return GalleryData(bundle, run, source, False, note, tuple(names), tuple(layer_list), methods is None, files)


def _reopen(model: Any, images: Any, device: Any, preprocess: Any, display_images: Any) -> GalleryData:
    result = images if isinstance(images, EvaluationResult) else open_result(images)
    meta = result.meta or {}
    spec = meta.get("images")
    bundle = make_bundle(model, check_device(device), preprocess, display_images if spec is None else spec)
    notes = []
    if meta.get("model") and meta["model"] != bundle.name:
        notes.append(f"this run was made with the model {meta['model']!r}; the Explorer uses {bundle.name!r}")
    source = None
    wanted = display_images if display_images is not None else spec
    if wanted is None:
        notes.append(
            "the run's images were held in memory (a Dataset or ShapesBatch): pass them as "
            "display_images= to see them and open the Explorer"
        )
    else:
        try:
            source = open_images(wanted, bundle.preprocess)
        except (OSError, TypeError, ValueError) as error:
            if display_images is not None:
                raise
            notes.append(f"the run's images cannot be reopened ({error}); thumbnails show the maps alone")
    table = result.table
    methods = meta.get("methods") or (sorted(set(table["method"].dropna())) if "method" in table else [])
    layers = meta.get("layers") or (sorted(set(table["layer"].dropna())) if "layer" in table else [])
    files = () if isinstance(images, EvaluationResult) else run_files(images)
    run = GalleryRun.finished(result)
    return GalleryData(bundle, run, source, True, "; ".join(notes), tuple(methods), tuple(layers), False, files)


def run_files(out: str | os.PathLike) -> tuple[Path, ...]:
    """A run's own files: its table, summary, maps, meta and parts folder, given its `out` or its
    parts folder (`results.parts` stands for `results.csv`)."""
    path = Path(out)
    if path.is_dir() or path.suffix == ".parts":
        path = path.with_name(path.name.removesuffix(".parts") + ".csv")
    return tuple(run_paths(path))


__all__ = ["DEFAULT_BATCH", "DEFAULT_METHODS", "RUN_OPTIONS", "GalleryData", "is_earlier_run", "open_gallery"]
