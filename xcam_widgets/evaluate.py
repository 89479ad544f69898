"""The dataset runner: CAM methods × layers over a folder of images or the shapes benchmark.

`evaluate` gives a tidy per-image table, one row per image × method × layer, and a summary of
means with 95% confidence intervals per method × layer. The work per batch is the pure function
`evaluate_batch(bundle, batch, methods, layers, ...) -> list[dict]`: plain rows, no pandas, no
I/O, so that another engine can reuse it unchanged. The local engine loops over batches; the
Ray engine (`engine="ray"`, `xcam_widgets.evaluate_ray`) maps the same function over image
batches on a pool of Ray actors, writes one file per batch and resumes from what is already
written. Both give the same table and summary.

Columns of the table (only those of the requested metrics appear):

| column | meaning |
|---|---|
| image | the image id: the index in the shapes batch, or the path relative to the folder |
| method, layer | the method's registry name and the layer's dotted name |
| class, class_name | the target class and its name |
| score | S_c, the class logit |
| conservation_error, sensitivity_error, sensitivity_r | `xw.diagnose` ("diagnostics"); NaN where undefined |
| average_drop, increase | Average Drop's term and the Increase-in-Confidence indicator |
| deletion, insertion | RISE's AUCs |
| pointing, energy | the pointing game and the energy in the class's mask (datasets with masks) |

Summary: one row per method × layer × metric column with `n` (non-missing values), `mean`,
`ci_low` and `ci_high`. The 95% interval is the normal approximation mean ± 1.96·s/√n for
continuous columns, and Wilson's score interval for the 0/1 columns (`increase`, `pointing`),
which stays inside [0, 1] and keeps its coverage near 0 and 1. Both are closed-form and
deterministic; with n < 30 the normal interval is somewhat too narrow (no t correction).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Union

import torch
from torch import nn

from . import metrics as M
from .diagnostics import diagnose
from .discovery import candidate_layers, default_layer
from .explain import explain
from .images import load_image
from .layers import LayerSpec, resolve_layer
from .methods import check_options, get_method
from .model_state import evaluation_mode
from .models import ModelBundle, load_model
from .targets import class_indices, logits_of

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .shapes.dataset import ShapesBatch

METRICS: tuple[str, ...] = ("diagnostics", "average_drop", "deletion", "insertion", "pointing", "energy")
LOCALISATION: tuple[str, ...] = ("pointing", "energy")
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "diagnostics": ("conservation_error", "sensitivity_error", "sensitivity_r"),
    "average_drop": ("average_drop", "increase"),
    "deletion": ("deletion",),
    "insertion": ("insertion",),
    "pointing": ("pointing",),
    "energy": ("energy",),
}
ID_COLUMNS: tuple[str, ...] = ("image", "method", "layer", "class", "class_name", "score")
BINARY_COLUMNS: tuple[str, ...] = ("increase", "pointing")
ENGINES: tuple[str, ...] = ("local", "ray")
TARGETS: tuple[str, ...] = ("label", "top1")
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
Z_95 = 1.959963984540054
SHAPES_SPEC = re.compile(r"^shapes:(\d+)(?::(\d+))?$")

Images = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], "ShapesBatch"]
EvalTarget = Union[None, int, str]


class EvaluationResult(NamedTuple):
    """`table`: one row per image × method × layer; `summary`: means and 95% CIs per method × layer × metric."""

    table: pd.DataFrame
    summary: pd.DataFrame


@dataclass(frozen=True)
class ImageBatch:
    """A batch as `evaluate_batch` takes it: ids, preprocessed images, and what the dataset knows.

    `labels` `[n]` are ground-truth classes (or None); `masks` `[n, classes, H, W]` bool hold each
    class's region (or None). Plain fields, so a batch maps one-to-one onto a column dict."""

    ids: list
    x: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)


# ---------------------------------------------------------------------------------------------
# The per-batch function


def evaluate_batch(
    bundle: ModelBundle,
    batch: ImageBatch,
    methods: Sequence[str],
    layers: Sequence[str],
    *,
    target: EvalTarget = None,
    metrics: Sequence[str] = METRICS,
    steps: int = M.DEFAULT_STEPS,
    tolerance: int | None = None,
    chunk_size: int = 256,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict]:
    """Rows (plain dicts, see the module docstring) for every image × method × layer of `batch`.

    `target`: None (the label where the batch has labels, else the top-1 class), "label",
    "top1" or a class index. `chunk_size` bounds the inputs per model pass of the perturbation
    metrics and of the diagnostics' true drops. Tensors stay on the model's device; values leave
    it once per column and method × layer, as Python numbers. No I/O and no state: an engine may
    call it anywhere.
    """
    model = bundle.model
    device = _model_device(model)
    x = batch.x.to(device)
    classes = _batch_classes(model, x, batch, target)
    masks = None
    if batch.masks is not None and any(m in LOCALISATION for m in metrics):
        masks = batch.masks.to(device)[torch.arange(len(batch), device=device), classes]
    options = method_options or {}
    class_list = classes.tolist()
    names = [bundle.categories[c] if 0 <= c < len(bundle.categories) else str(c) for c in class_list]
    rows: list[dict] = []
    for method in methods:
        method_opts = options.get(method, {})
        for layer, result, diagnosis in _explanations(model, x, layers, method, classes, metrics, chunk_size, method_opts):
            columns: dict[str, torch.Tensor] = {"score": result.score.detach()}
            maps = result.map.detach()
            if diagnosis is not None:
                nan = torch.full_like(columns["score"], float("nan"))  # undefined for unscaled methods
                for name in ("conservation_error", "sensitivity_error", "sensitivity_r"):
                    value = getattr(diagnosis, name)
                    columns[name] = nan if value is None else value
            if "average_drop" in metrics:
                columns["average_drop"], columns["increase"] = M.average_drop_increase(
                    model, x, maps, classes, batch_size=chunk_size
                )
            if "deletion" in metrics:
                columns["deletion"] = M.deletion_auc(model, x, maps, classes, steps=steps, batch_size=chunk_size)
            if "insertion" in metrics:
                columns["insertion"] = M.insertion_auc(model, x, maps, classes, steps=steps, batch_size=chunk_size)
            if masks is not None and "pointing" in metrics:
                columns["pointing"] = M.pointing_game(maps, masks, tolerance)
            if masks is not None and "energy" in metrics:
                columns["energy"] = M.energy_in_mask(maps, masks)
            values = {name: value.tolist() for name, value in columns.items()}  # one transfer per column
            for i, image in enumerate(batch.ids):
                row = {"image": image, "method": method, "layer": layer, "class": class_list[i], "class_name": names[i]}
                row.update({name: value[i] for name, value in values.items()})
                rows.append(row)
    return rows


def _explanations(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], method: str, classes: torch.Tensor,
    metrics: Sequence[str], batch_size: int, options: Mapping[str, Any],
) -> Iterator[tuple[str, Any, Any]]:
    """(layer, Explanation, Diagnosis or None) per layer: `diagnose` (which carries the
    explanation) when diagnostics are asked for, else one `explain` call for all layers."""
    if "diagnostics" in metrics:
        for layer in layers:
            d = diagnose(model, x, layer, method, target=classes, batch_size=batch_size, **options)
            yield layer, d.explanation, d
    else:
        for layer, result in zip(layers, explain(model, x, list(layers), method, target=classes, **options)):
            yield layer, result, None


def _batch_classes(model: nn.Module, x: torch.Tensor, batch: ImageBatch, target: EvalTarget) -> torch.Tensor:
    if target is None:
        target = "label" if batch.labels is not None else "top1"
    if target == "label":
        if batch.labels is None:
            raise ValueError("target='label' needs a dataset with labels (the shapes benchmark)")
        return batch.labels.to(x.device).long()
    with evaluation_mode(model), torch.no_grad():
        logits = logits_of(model(x))
    return class_indices(None if target == "top1" else int(target), logits)  # checks an int's range


# ---------------------------------------------------------------------------------------------
# Data sources


@dataclass(frozen=True)
class ShapesSource:
    """The shapes benchmark: images in [0, 1] preprocessed by the model's preprocess (on tensors)."""

    data: ShapesBatch
    preprocess: Callable

    def __len__(self) -> int:
        return len(self.data)

    @property
    def ids(self) -> list[int]:
        return list(range(len(self.data)))

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(self.data), batch_size):
            yield self.take(range(start, min(start + batch_size, len(self.data))))

    def take(self, positions: Sequence[int]) -> ImageBatch:
        """The images at `positions` (indices into the source, in that order) as one batch."""
        index = torch.as_tensor(list(positions), dtype=torch.long)
        return ImageBatch(
            ids=index.tolist(),
            x=self.preprocess(self.data.images[index]),
            labels=self.data.labels[index, 0],
            masks=self.data.masks[index],
        )


@dataclass(frozen=True)
class FolderSource:
    """Image files, loaded with `xw.load_image` and the model's preprocess one batch at a time."""

    paths: list[Path]
    ids: list[str]
    preprocess: Callable

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(self.paths), batch_size):
            yield self.take(range(start, min(start + batch_size, len(self.paths))))

    def take(self, positions: Sequence[int]) -> ImageBatch:
        """The images at `positions` (indices into the source, in that order) as one batch."""
        positions = list(positions)
        tensors = [self.preprocess(load_image(self.paths[i])) for i in positions]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(
                f"the preprocess gives images of different shapes {sorted(shapes)}; "
                "use a preprocess that resizes or crops to a fixed size"
            )
        return ImageBatch(ids=[self.ids[i] for i in positions], x=torch.stack(tensors))


def open_images(images: Images, preprocess: Callable) -> ShapesSource | FolderSource:
    """A source for `images`: "shapes:N" or "shapes:N:SEED" (N single-shape images; SEED
    defaults to the shapes nets' held-out seed), a `ShapesBatch`, a folder (searched
    recursively for image files, in sorted order), one image file, or a list of files."""
    from .shapes.dataset import ShapesBatch, make_shapes

    if isinstance(images, ShapesBatch):
        if len(images) == 0:
            raise ValueError("images: the ShapesBatch is empty")
        return ShapesSource(images, preprocess)
    if isinstance(images, str) and images.startswith("shapes"):
        match = SHAPES_SPEC.match(images)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"images {images!r}: the shapes benchmark is 'shapes:N' or 'shapes:N:SEED' with N >= 1")
        from .shapes.train import HELDOUT_SEED

        seed = int(match.group(2)) if match.group(2) else HELDOUT_SEED
        return ShapesSource(make_shapes(int(match.group(1)), seed=seed), preprocess)
    if isinstance(images, (str, os.PathLike)):
        root = Path(images)
        if root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise ValueError(f"images: folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            return FolderSource(paths, [p.relative_to(root).as_posix() for p in paths], preprocess)
        if root.is_file():
            return FolderSource([root], [root.name], preprocess)
        raise ValueError(f"images {str(images)!r} is neither 'shapes:N', a folder nor an image file")
    if isinstance(images, Sequence) and images and all(isinstance(p, (str, os.PathLike)) for p in images):
        paths = [Path(p) for p in images]
        return FolderSource(paths, [str(p) for p in images], preprocess)
    raise TypeError(
        "images must be 'shapes:N', a ShapesBatch, a folder, an image file or a non-empty list of files; "
        f"got {type(images).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# The runner


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
    engine_options: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate `methods` × `layers` on `images`; returns `(table, summary)` DataFrames.

    - `model_or_name`: a `load_model` name, a `ModelBundle`, or a module (then give
      `preprocess`, except on the shapes benchmark, whose nets' preprocess is the default).
    - `images`: see `open_images`. Shapes masks enable "pointing" and "energy".
    - `layers`: names or modules; None picks the shapes nets' `CAM_LAYER`, else `xw.default_layer`.
    - `target`: None (the shapes label, else top-1), "label", "top1" or a class index.
    - `metrics`: a subset of `METRICS`; None means all that apply to the data.
    - `batch_size`: images per batch (one `explain` / `diagnose` call per method × layer each);
      `chunk_size`: model inputs per pass inside the metrics and the true drops (the B·(steps+1)
      perturbed images of a batch run `chunk_size` at a time).
    - `device`: None keeps the model where it is (a name loads onto CUDA if available); otherwise
      the model is moved there. All tensors stay on that device.
    - `steps`, `tolerance`: deletion / insertion steps and the pointing game's tolerance (px).
    - `method_options`: {method: {option: value}} passed to `explain`.
    - `out`: write the table to this CSV path and the summary next to it as `<stem>.summary.csv`.
    - `engine`: "local" (this process) or "ray" (a pool of Ray actors, `pip install
      xcam-widgets[ray]`): the same table and summary. The Ray engine also writes one file per
      batch to `<stem>.parts/` beside `out`, and a rerun with the same `out` computes only the
      images missing there; `device` is then the actors' device (None: each actor's GPU if it
      has one, else CPU).
    - `engine_options`: for "ray", `address` (a running cluster; None starts a local Ray),
      `workers`, `gpus_per_worker`, `cpus_per_worker`, `max_retries` (`xcam_widgets.evaluate_ray`).
    """
    pd = _pandas()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local" and engine_options:
        raise ValueError(f"engine_options {sorted(engine_options)} apply to engine='ray' only")
    for value, name in ((batch_size, "batch_size"), (chunk_size, "chunk_size"), (steps, "steps")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    # The Ray engine's driver only checks arguments and resolves layers: a name loads on the CPU,
    # and `device` is left to the actors.
    on_driver = device if engine == "local" else ("cpu" if isinstance(model_or_name, str) else None)
    bundle = _bundle(model_or_name, on_driver, preprocess, images)
    method_names = _methods(methods)
    options = _method_options(method_options, method_names)
    _check_target(target)
    source = open_images(images, bundle.preprocess)
    has_masks = isinstance(source, ShapesSource)
    chosen = _metrics(metrics, has_masks)
    layer_names = _layers(bundle, layers, source)
    batch_options = dict(target=target, metrics=chosen, steps=steps, tolerance=tolerance, chunk_size=chunk_size,
                         method_options=options)
    columns = table_columns(chosen, has_masks)
    description = f"{len(method_names)} method(s) × {len(layer_names)} layer(s)"

    if engine == "ray":
        from .evaluate_ray import evaluate_on_ray

        table = evaluate_on_ray(
            model_or_name if isinstance(model_or_name, str) else bundle, source, method_names, layer_names,
            batch_options, columns, batch_size=batch_size, device=device, progress=progress, description=description,
            out=out, fingerprint=_fingerprint(images, bundle.name), **dict(engine_options or {}),
        )
    else:
        rows: list[dict] = []
        from tqdm.auto import tqdm

        with tqdm(total=len(source), unit="img", disable=not progress, desc=description) as bar:
            for batch in source.batches(batch_size):
                rows += evaluate_batch(bundle, batch, method_names, layer_names, **batch_options)
                bar.update(len(batch))
        table = pd.DataFrame(rows, columns=columns)
    summary = summarize(table)
    if out is not None:
        table_path, summary_path = output_paths(out)
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(table_path, index=False)
        summary.to_csv(summary_path, index=False)
    return EvaluationResult(table, summary)


def table_columns(metrics: Sequence[str], has_masks: bool = True) -> list[str]:
    """The table's columns, in order, for the chosen metrics."""
    return list(ID_COLUMNS) + [
        column for metric in METRICS if metric in metrics and (has_masks or metric not in LOCALISATION)
        for column in COLUMNS[metric]
    ]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per method × layer × metric column: n (non-missing), mean, and the 95% interval
    (Wilson for the 0/1 columns, normal approximation otherwise; module docstring)."""
    pd = _pandas()
    value_columns = [c for c in table.columns if c not in ID_COLUMNS or c == "score"]
    records = []
    for (method, layer), group in table.groupby(["method", "layer"], sort=False):
        for column in value_columns:
            values = group[column].dropna().astype(float)
            n = len(values)
            mean = float(values.mean()) if n else math.nan
            if column in BINARY_COLUMNS:
                low, high = wilson_interval(mean, n)
            else:
                half = Z_95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
                low, high = mean - half, mean + half
            records.append({"method": method, "layer": layer, "metric": column, "n": n, "mean": mean,
                            "ci_low": low, "ci_high": high})
    return pd.DataFrame(records, columns=["method", "layer", "metric", "n", "mean", "ci_low", "ci_high"])


def wilson_interval(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion p out of n trials (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def output_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(table path, summary path): `results.csv` -> `results.csv`, `results.summary.csv`."""
    path = Path(out)
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    return path, path.with_name(path.stem + ".summary.csv")


# ---------------------------------------------------------------------------------------------
# Argument checks


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as err:  # pragma: no cover - pandas is in the dev extra
        raise ImportError("xcam_widgets.evaluate needs pandas: pip install pandas (or xcam-widgets[dev])") from err
    return pandas


def _bundle(model_or_name: Any, device: Any, preprocess: Callable | None, images: Any) -> ModelBundle:
    if isinstance(model_or_name, str):
        bundle = load_model(model_or_name, device=device)
    elif isinstance(model_or_name, ModelBundle):
        bundle = model_or_name
    elif isinstance(model_or_name, nn.Module):
        if preprocess is None:
            if not _is_shapes(images):
                raise ValueError("a bare model needs preprocess= (PIL image -> tensor), or pass a ModelBundle")
            from .shapes import nets

            preprocess = nets.preprocess
        categories = _categories(images)
        bundle = ModelBundle(type(model_or_name).__name__, model_or_name, preprocess, categories, 0)
    else:
        raise TypeError(
            f"model_or_name must be a model name (see xw.available_models()), a ModelBundle or an nn.Module; "
            f"got {type(model_or_name).__name__}"
        )
    if preprocess is not None and not isinstance(model_or_name, nn.Module):
        bundle = ModelBundle(bundle.name, bundle.model, preprocess, bundle.categories, bundle.input_size)
    if device is not None:
        bundle.model.to(device)
    return bundle


def _fingerprint(images: Any, model: str) -> str:
    """What identifies an evaluation's images and model, so that a resumed run can check that
    its `out` holds the same one: the spec, path or file list, or a hash of a ShapesBatch's pixels."""
    from .shapes.dataset import ShapesBatch

    if isinstance(images, ShapesBatch):
        import hashlib

        digest = hashlib.sha1(images.images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        images = f"ShapesBatch({len(images)}, sha1={digest[:16]})"
    elif isinstance(images, (str, os.PathLike)):
        images = os.fspath(images)
    else:
        import hashlib

        paths = [os.fspath(p) for p in images]
        images = f"{len(paths)} files, sha1={hashlib.sha1(repr(paths).encode()).hexdigest()[:16]}"
    return repr((model, images))


def _is_shapes(images: Any) -> bool:
    from .shapes.dataset import ShapesBatch

    return isinstance(images, ShapesBatch) or (isinstance(images, str) and images.startswith("shapes"))


def _categories(images: Any) -> list[str]:
    """Class names for a bare module: the shapes classes on the shapes benchmark, else none."""
    from .shapes.dataset import SHAPE_CLASSES

    return list(SHAPE_CLASSES) if _is_shapes(images) else []


def _methods(methods: str | Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if not isinstance(methods, Sequence) or not methods:
        raise ValueError("methods must name at least one method, e.g. ['gradcam', 'xgradcam']")
    names = [get_method(m).name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods names a method twice: {names}")
    return names


def _method_options(options: Mapping[str, Mapping[str, Any]] | None, methods: list[str]) -> dict[str, dict[str, Any]]:
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


def _check_target(target: EvalTarget) -> None:
    if target is None or target in TARGETS:
        return
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ValueError(f"target must be None, 'label', 'top1' or a class index >= 0; got {target!r}")


def _metrics(metrics: Sequence[str] | None, has_masks: bool) -> tuple[str, ...]:
    if metrics is None:
        return tuple(m for m in METRICS if has_masks or m not in LOCALISATION)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric {unknown[0]!r}; accepted: {', '.join(METRICS)}" if unknown
                         else f"metrics is empty; accepted: {', '.join(METRICS)}")
    without = [m for m in metrics if m in LOCALISATION and not has_masks]
    if without:
        raise ValueError(f"metric {without[0]!r} needs ground-truth masks, which only the shapes benchmark has")
    return tuple(m for m in METRICS if m in metrics)


def _layers(bundle: ModelBundle, layers: Any, source: ShapesSource | FolderSource) -> list[str]:
    """Resolved layer names; None gives the shapes nets' CAM_LAYER, or else `xw.default_layer`."""
    model = bundle.model
    if layers is None:
        from .shapes import nets

        if bundle.name in nets.SHAPES_MODELS:
            return [nets.CAM_LAYER]  # the same tensor as `default_layer`'s "features", by its block name
        first = next(iter(source.batches(1)))
        return [default_layer(candidate_layers(model, tuple(first.x.shape[1:])), model)]
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    specs = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not specs:
        raise ValueError("layers is empty; give at least one layer, or None for the default layer")
    names = [resolve_layer(model, spec)[0] for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"layers names a layer twice: {names}")
    return names


def _model_device(model: nn.Module) -> torch.device:
    from .inputs import model_device_dtype

    return model_device_dtype(model)[0]


__all__ = [
    "COLUMNS", "ENGINES", "METRICS", "EvaluationResult", "ImageBatch", "evaluate", "evaluate_batch",
    "open_images", "summarize", "table_columns", "wilson_interval",
]
