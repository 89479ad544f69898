"""`evaluate`: check every argument and `out`, pick the engine, collect the rows, write the files."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .. import metrics as M
from ..checks import positive_int
from ..layers import LayerSpec
from ..models import ModelBundle
from .arguments import (
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
from .batch import EvalTarget
from .fingerprint import run_fingerprint, weights_hash
from .local import run_local
from .parts import FORMAT, Collector, OnRows, PartsFolder, temporary_parts
from .ray import evaluate_on_ray
from .result import EvaluationResult, prepare_out, stored_latents, write_outputs
from .sources import Images, Source, open_images
from .table import rows_frame, run_paths, summarize, table_columns


def evaluate(
    model_or_name: str | ModelBundle | nn.Module,
    images: Images,
    methods: str | Sequence[str] = ("gradcam", "xgradcam"),
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    target: EvalTarget = None,
    metrics: Sequence[str] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    engine: str = "local",
    progress: bool = True,
    *,
    chunk_size: int = 256,
    steps: int = M.DEFAULT_STEPS,
    tolerance: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    preprocess: Callable | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    strict: bool = False,
    engine_options: Mapping[str, Any] | None = None,
    on_rows: OnRows | None = None,
    stop: threading.Event | None = None,
    latents: bool = True,
) -> EvaluationResult:
    """Evaluate `methods` × `layers` on `images`; returns an `EvaluationResult` (unpacks as
    `(table, summary)`; columns and files: `xcam_widgets.evaluation`).

    - `model_or_name`: a `load_model` name, a `ModelBundle`, or a module (then give
      `preprocess`, except on the shapes benchmark, whose nets' preprocess is the default).
    - `images`: see `open_images`: a folder, files, "shapes:N", "shapes_shortcut:N", a ShapesBatch or a Dataset.
    - `layers`: names or modules; None picks the bundle's `cam_layer` (the shapes nets' `features.block4`), else
      `xw.default_layer`.
    - `target`: None (the true label where known, else top-1), "label", "top1", a class index, or
      "segmentation" (a segmentation model: the label's logits over the pixels predicted as it; pointing
      and energy only).
    - `metrics`: a subset of `METRICS`; None means the `DEFAULT_METRICS` that apply to the data (all but the
      sanity columns mprt and random_logit, which cost several passes per image).
    - `batch_size`: images per batch (one `explain` / `diagnose` call per method × layer each);
      `chunk_size`: model inputs per pass inside the metrics and the true drops.
    - `device`: None keeps the model where it is (a name loads onto CUDA if available); otherwise
      the model is moved there. With engine="ray", the actors' device.
    - `steps`, `tolerance`: deletion / insertion steps and the pointing game's tolerance (px).
    - `method_options`: {method: {option: value}} passed to `explain`.
    - `out`: write the table to this CSV path, with `<stem>.summary.csv`, `<stem>.maps.npz`,
      `<stem>.meta.json`, and each batch as it finishes to `<stem>.parts/`. A rerun with the same
      `out`, settings, weights, preprocess and images (`fingerprint`: by content, not by name)
      computes only what is missing there; an existing `out` from another evaluation is an error
      that says what changed, unless `overwrite`. `out` is checked before the first batch, and
      locked until the run ends (`lock`): a second run on it, also with `overwrite`, is refused.
    - The weights are hashed again at the end: if they changed during the run (a training thread),
      the run's batches are discarded and it raises, rather than return a table of two models.
    - `strict`: an image that cannot be read raises; by default it becomes rows with an `error`.
    - `engine`: "local" (this process) or "ray" (a pool of Ray actors, `pip install
      xcam-widgets[ray]`; `engine_options`: `xcam_widgets.evaluation.ray.evaluate_on_ray`).
    - `on_rows(rows, maps)`: called with the rows already in `out`'s parts, then after each batch.
    - `stop`: once set, the run ends after the current batch and returns what it has
      (`complete` False); its batches are in the parts, so a rerun resumes.
    - `latents`: also store each row's channel relevance vectors (`EvaluationResult.latents`, for
      `xw.discover`; `evaluation.latents`): one extra forward and backward pass per batch, and 2 · K
      float16 + K peaks per row of a gradient method (7.5 kB at K = 1,280). False stores none.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local" and engine_options:
        raise ValueError(f"engine_options {sorted(engine_options)} apply to engine='ray' only")
    for value, name in ((batch_size, "batch_size"), (chunk_size, "chunk_size"), (steps, "steps")):
        positive_int(name, value)
    if on_rows is not None and not callable(on_rows):
        raise TypeError(f"on_rows must be callable (rows, maps) -> None, got {type(on_rows).__name__}")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(f"stop must be a threading.Event, got {type(stop).__name__}")
    if not isinstance(latents, bool):
        raise TypeError(f"latents must be True or False, got {latents!r}")
    checked_device = check_device(device, here=engine == "local")
    # The Ray engine's driver only checks arguments and resolves layers: a name loads on the CPU,
    # and `device` is left to the actors.
    on_driver = checked_device if engine == "local" else ("cpu" if isinstance(model_or_name, str) else None)
    bundle = make_bundle(model_or_name, on_driver, preprocess, images)
    names = method_names(methods)
    options = checked_method_options(method_options, names)
    source = open_images(images, bundle.preprocess)
    check_target(target, source)
    chosen = chosen_metrics(metrics, source.has_masks, target)
    layer_list = layer_names(bundle, layers, source)
    chosen, metrics_note = metrics_for_layers(metrics, chosen, bundle, layer_list, source)
    batch_options = dict(
        target=target,
        metrics=chosen,
        steps=steps,
        tolerance=tolerance,
        chunk_size=chunk_size,
        method_options=options,
        latents=latents,
    )
    columns = table_columns(chosen, source.has_masks)
    meta = run_meta(bundle, source, names, layer_list, batch_options, columns)
    meta["notes"] = [metrics_note] if metrics_note else []
    meta["fingerprint"] = run_fingerprint(bundle, source, batch_size)
    manifest = _normalised(
        {
            "format": FORMAT,
            "methods": names,
            "layers": layer_list,
            "settings": meta["settings"],
            "columns": columns,
            "images_count": len(source),
            "meta": meta,
        }
    )
    common: dict[str, Any] = dict(
        batch_size=batch_size,
        strict=strict,
        progress=progress,
        description=f"{len(names)} method(s) × {len(layer_list)} layer(s)",
        stop=stop,
    )
    with _parts(out, manifest, overwrite, engine) as parts:  # `out` locked until its last file is written
        collector = Collector(parts, on_rows)
        try:
            collector.resume()
            if engine == "ray":
                shipped = model_or_name if isinstance(model_or_name, str) else bundle
                ray_options: dict[str, Any] = dict(engine_options or {})
                evaluate_on_ray(
                    shipped, source, names, layer_list, batch_options, collector, device=device, **common, **ray_options
                )
            else:
                run_local(bundle, source, names, layer_list, batch_options, collector, **common)
        finally:
            changed = weights_hash(bundle.model) != meta["fingerprint"]["weights"]
            discarded = len(collector.written)
            if changed:
                collector.discard_written()
        if changed:
            kept = ""
            if out is not None and parts is not None:
                kept = f"; its {discarded} batch(es) were deleted from {str(parts.path)!r}, the earlier ones stay"
            raise RuntimeError(
                "the model's weights changed during the run (e.g. training in another thread), so its rows would "
                f"mix two versions of the model: no table is returned{kept}. Rerun with the weights fixed "
                "(with overwrite=True for new weights)"
            )
        table = rows_frame(list(collector.rows.values()), columns)
        complete = len(collector.done) == len(source)
        if not complete and not (stop is not None and stop.is_set()):
            where = f" in {str(run_paths(out).parts)!r}" if out is not None else ""
            raise RuntimeError(
                f"the {engine} engine finished with {len(source) - len(collector.done)} images "
                f"missing{where}; rerun to resume"
            )
        latent_store = stored_latents(collector.latents)
        result = EvaluationResult(table, summarize(table), collector.maps, manifest["meta"], complete, latent_store)
        if out is not None and complete:
            write_outputs(run_paths(out), result)
    return result


def run_meta(
    bundle: ModelBundle,
    source: Source,
    methods: list[str],
    layers: list[str],
    batch_options: Mapping[str, Any],
    columns: list[str],
) -> dict[str, Any]:
    """What is needed to show a run again (`<stem>.meta.json`): see `xcam_widgets.evaluation`. The
    runner adds what its rows depend on (`fingerprint.run_fingerprint`), which a resumed run checks."""
    names = ("target", "metrics", "steps", "tolerance", "method_options", "latents")
    settings = {name: batch_options[name] for name in names}
    return {
        "format": FORMAT,
        "images": source.spec,
        "images_kind": source.kind,
        "images_count": len(source),
        "model": bundle.name,
        "methods": methods,
        "layers": layers,
        "target": batch_options["target"],
        "categories": list(bundle.categories),
        "columns": columns,
        "settings": settings,
    }


def _normalised(value: dict[str, Any]) -> dict[str, Any]:
    """`value` as JSON gives it back (tuples as lists; other objects by repr), so that a manifest
    read from disk compares equal to the one built here."""
    return json.loads(json.dumps(value, default=repr))


@contextlib.contextmanager
def _parts(
    out: str | os.PathLike | None, manifest: dict[str, Any], overwrite: bool, engine: str
) -> Iterator[PartsFolder | None]:
    """`out`'s parts folder, checked and claimed; without `out`, none (local) or a temporary one (Ray)."""
    if out is not None:
        with prepare_out(out, manifest, overwrite) as parts:
            yield parts
    elif engine == "ray":
        with temporary_parts() as parts:
            parts.claim(manifest)
            yield parts
    else:
        yield None


__all__ = ["evaluate", "run_meta"]
