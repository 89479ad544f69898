"""The Ray engine of the dataset runner: `xw.evaluate(..., engine="ray")`.

Same arguments, same table and summary as the local engine; the work is spread over a pool of
Ray actors, on one machine or a cluster. Needs Ray (`pip install xcam-widgets[ray]`), imported
here only, when the engine runs.

How it runs:

- The driver (`evaluate`) checks the arguments, resolves the layers and opens the images as
  for the local engine. It then lists the images not yet in the parts folder, cuts them into
  batches of `batch_size` in source order, and makes a Ray Dataset with one row per batch
  (its positions in the source) and one block per batch.
- `map_batches` runs `BatchEvaluator`, a callable class, on an actor pool of `workers` actors,
  each with `gpus_per_worker` GPUs (default: one per actor where the cluster has GPUs, and as
  many actors as GPUs; else one CPU per actor and as many actors as CPUs). Each actor loads
  the model once: by name with `xw.load_model` when `evaluate` was given a name, or else the
  driver's `ModelBundle`, shipped with the actors' arguments, so that every actor has the same
  weights (random weights included) and workers need no weight files. It moves the model to
  its own GPU (Ray's `CUDA_VISIBLE_DEVICES`) and calls `evaluate_batch`, unchanged, on each
  batch; the rows come back as JSON (floats round-trip exactly).
- The driver writes each batch's rows, as they arrive, to
  `<stem>.parts/batch-<first position>-<hash of the ids>.parquet` beside `out` (a temporary
  file, then a rename: a file is whole or absent), and advances a tqdm bar. Rows are small,
  so one writer costs nothing and needs no file system shared by the nodes.
- The table is read back from all the parts, without duplicates on (image, method, layer),
  and ordered as the local engine orders it (batches of `batch_size` in source order; in
  each, method, layer, image). The summary is `evaluate.summarize` of it.
- One run at a time per `out`; on a cluster, the images must be readable from every node
  (the shapes benchmark travels with the actors' arguments; a folder must be shared), and
  xcam-widgets installed on every node (or in the runtime_env of the caller's `ray.init`).

Faults and resuming:

- A worker that dies (a crashed process, a lost node) is restarted (`max_restarts=-1`) and
  its batch is retried up to `max_retries` times (`max_task_retries`), as is a batch that
  raises a RuntimeError (CUDA out of memory, a driver error) or an OSError (Ray Data's
  `actor_task_retry_on_errors`). Other errors (a ValueError from a bad argument) fail at once.
- Each batch is written once, under a name given by its image ids, so that writing it twice
  leaves one file; the table is deduplicated all the same.
- A rerun with the same `out` reads the parts already written and computes only the images
  missing from them. `<stem>.parts/manifest.json` records the model, images, methods, layers
  and metric settings, and a rerun with other ones stops with an error rather than mixing.
  Without `out`, the parts go to a temporary folder, deleted at the end.

If Ray is already initialised (`ray.init(address=..., runtime_env=...)` by the caller) the
engine uses that connection and leaves it open; otherwise it connects to `address`, or starts
a local Ray when `address` is None, and shuts it down at the end. Ray Data releases a pool's
actors by dropping its references to them; after a failed run in a Ray that the caller keeps
open, they have been seen to stay alive (holding their CPUs or GPUs) until the session ends.

Ray 2.60 deprecates `max_restarts` / `max_task_retries` as `map_batches` keywords (removal
announced for 2.64) without a named replacement yet; the warning is silenced here, and the `ray`
extra asks for Ray < 2.64.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .evaluate import FolderSource, ShapesSource, _pandas, evaluate_batch, output_paths
from .models import ModelBundle, load_model

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

OPTIONS: tuple[str, ...] = ("address", "workers", "gpus_per_worker", "cpus_per_worker", "max_retries", "batch_hook")
MANIFEST = "manifest.json"
PART_GLOB = "batch-*.parquet"
KEY = ["image", "method", "layer"]
INSTALL_HINT = "engine='ray' needs Ray: pip install xcam-widgets[ray]"


def evaluate_on_ray(
    model: str | ModelBundle,
    source: ShapesSource | FolderSource,
    methods: Sequence[str],
    layers: Sequence[str],
    batch_options: Mapping[str, Any],
    columns: Sequence[str],
    *,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
    description: str,
    out: str | os.PathLike | None,
    fingerprint: str,
    **options: Any,
) -> pd.DataFrame:
    """The table of `evaluate(..., engine="ray")`; `evaluate` checks the arguments and calls this.

    `model`: a `load_model` name (each actor loads it) or a bundle (shipped to the actors).
    `options` (`evaluate`'s `engine_options`):

    - `address`: a Ray cluster's address ("auto", "ray://head:10001"); None starts a local Ray.
    - `workers`: actors in the pool (default: GPUs / `gpus_per_worker`, else CPUs / `cpus_per_worker`).
    - `gpus_per_worker`: GPUs per actor (default 1 where the cluster has GPUs and `device` is
      not "cpu", else 0); a fraction (0.5) puts several actors on one GPU.
    - `cpus_per_worker`: CPUs per actor (default 1), also its torch threads on CPU.
    - `max_retries`: retries of a batch whose worker died or that raised a RuntimeError or an
      OSError (default 3).
    - `batch_hook`: a picklable callable run in the actor with each batch's image ids before
      the batch (instrumentation, and fault injection in the tests).
    """
    settings = _check_options(options)
    ray = _import_ray()
    pd = _pandas()
    parts = _parts_folder(out)
    with parts as folder:
        _check_manifest(folder, _manifest(fingerprint, methods, layers, batch_options, columns))
        ids = source.ids
        done = _done_ids(folder, len(methods) * len(layers))
        pending = [i for i, image in enumerate(ids) if image not in done]
        if pending:
            _run(ray, settings, model, source, methods, layers, batch_options, columns, folder, pending,
                 batch_size=batch_size, device=device, progress=progress, description=description,
                 done=len(ids) - len(pending), total=len(ids))
        return _read_table(pd, folder, ids, methods, layers, columns, batch_size)


class BatchEvaluator:
    """The actors' callable class: the model loaded once, then `evaluate_batch` per image batch.

    A call gets a Ray Data batch of rows {"positions": [...]} (one row, with the engine's
    one-batch blocks) and returns {"ids": JSON, "rows": JSON} per row."""

    def __init__(
        self, model: Any, source: Any, methods: Sequence[str], layers: Sequence[str],
        batch_options: Mapping[str, Any], device: str | None, threads: int, batch_hook: Callable | None,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per actor
        if torch.device(device).type == "cpu":
            torch.set_num_threads(threads)
        if isinstance(model, str):
            self.bundle = load_model(model, device=device)
        else:
            model.model.to(device).eval()
            self.bundle = model
        self.source = source
        self.methods, self.layers, self.batch_options = list(methods), list(layers), dict(batch_options)
        self.batch_hook = batch_hook

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        ids, rows = [], []
        for positions in batch["positions"]:
            images = self.source.take([int(p) for p in np.asarray(positions).tolist()])
            if self.batch_hook is not None:
                self.batch_hook(list(images.ids))
            result = evaluate_batch(self.bundle, images, self.methods, self.layers, **self.batch_options)
            ids.append(json.dumps(images.ids))
            rows.append(json.dumps(result))  # NaN and the exact float values survive the round trip
        return {"ids": np.array(ids, dtype=object), "rows": np.array(rows, dtype=object)}


# ---------------------------------------------------------------------------------------------
# Running the pool


def _run(
    ray: Any, settings: dict[str, Any], model: str | ModelBundle, source: ShapesSource | FolderSource,
    methods: Sequence[str], layers: Sequence[str], batch_options: Mapping[str, Any], columns: Sequence[str],
    folder: Path, pending: list[int], *, batch_size: int, device: Any, progress: bool, description: str,
    done: int, total: int,
) -> None:
    from tqdm.auto import tqdm

    pd = _pandas()
    plan = [{"positions": pending[start:start + batch_size]} for start in range(0, len(pending), batch_size)]
    with _connected(ray, settings["address"]), _data_context(ray, settings["max_retries"]), _quiet():
        gpus_per_worker, workers = _pool_size(ray, settings, device)
        workers = min(workers, len(plan))  # no actor without a batch to run
        # The bundle and the source go with the actors' constructor arguments, which Ray keeps for as
        # long as the actors live (a restarted actor needs them again).
        shipped = model if isinstance(model, str) else _on_cpu(model)
        if isinstance(source, FolderSource):  # the actors' working directory may not be the driver's
            source = dataclasses.replace(source, paths=[p.resolve() for p in source.paths])
        dataset = _from_items(ray, plan).map_batches(
            BatchEvaluator,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs=dict(
                model=shipped, source=source, methods=list(methods), layers=list(layers),
                batch_options=dict(batch_options), device=None if device is None else str(device),
                threads=max(1, int(settings["cpus_per_worker"])), batch_hook=settings["batch_hook"],
            ),
            num_cpus=settings["cpus_per_worker"],
            num_gpus=gpus_per_worker,
            max_restarts=-1,  # a dead actor is always replaced ...
            max_task_retries=settings["max_retries"],  # ... and its batch retried at most this often
        )
        failure = None
        with tqdm(total=total, initial=done, unit="img", disable=not progress,
                  desc=f"{description} on {workers} Ray worker(s)") as bar:
            try:
                # Blocks as they come (no prefetching: a finished batch is written at once, before any later
                # batch can fail and end the run).
                for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                    for ids, rows in zip(block["ids"], block["rows"]):
                        ids = json.loads(ids)
                        _write_part(pd, folder, ids, json.loads(rows), columns)
                        bar.update(len(ids))
            except ray.exceptions.RayTaskError as err:
                failure = _worker_error(err, folder)
                if failure is None:
                    raise
        if failure is not None:
            # Raised here, not in the handler, so that it carries no reference to the Ray error, whose
            # traceback holds the actors (and their CPUs and GPUs) for as long as the caller keeps it.
            del dataset
            gc.collect()
            raise failure


def _worker_error(err: Exception, folder: Path) -> Exception | None:
    """The worker's own exception, as the local engine raises it (None if there is none)."""
    cause = getattr(err, "cause", None)
    if not isinstance(cause, Exception):
        return None
    if hasattr(cause, "add_note"):  # Python >= 3.11
        cause.add_note(f"(raised in a Ray worker; the batches done so far are in {str(folder)!r}: "
                       "a rerun with the same out resumes from them)")
    return cause


def _pool_size(ray: Any, settings: Mapping[str, Any], device: Any) -> tuple[float, int]:
    """(GPUs per actor, actors), from the options or the cluster's resources."""
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    on_cpu = device is not None and torch.device(device).type == "cpu"
    gpus_per_worker = settings["gpus_per_worker"]
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 and not on_cpu else 0.0
    workers = settings["workers"]
    if workers is None:
        if gpus_per_worker:
            workers = int(gpus // gpus_per_worker)
        else:
            workers = int(cpus // settings["cpus_per_worker"])
        workers = max(1, workers)
    return gpus_per_worker, workers


def _on_cpu(bundle: ModelBundle) -> ModelBundle:
    """The bundle with its model on the CPU, for pickling: a copy if the model is elsewhere."""
    if all(t.device.type == "cpu" for t in [*bundle.model.parameters(), *bundle.model.buffers()]):
        return bundle
    return ModelBundle(bundle.name, copy.deepcopy(bundle.model).cpu(), bundle.preprocess, bundle.categories,
                       bundle.input_size)


def _from_items(ray: Any, plan: list[dict]) -> Any:
    """A dataset with one block per batch, so that a task is a batch (balance, retries)."""
    try:
        return ray.data.from_items(plan, override_num_blocks=len(plan))
    except TypeError:  # pragma: no cover - Ray < 2.10 names it parallelism
        return ray.data.from_items(plan, parallelism=len(plan))


@contextlib.contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """Ray as the caller left it, else connected to `address` (None: a new local Ray) until the end."""
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without Ray Data's notes that its own bars are off and that the run finished (the tqdm
    bar says both), and without the deprecation of `max_restarts` / `max_task_retries` as
    `map_batches` keywords, for which Ray 2.60 has no named replacement yet."""
    import warnings

    loggers = {"ray.data._internal.progress": logging.ERROR,
               "ray.data._internal.execution.streaming_executor": logging.WARNING}
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _data_context(ray: Any, max_retries: int) -> Iterator[None]:
    """Ray Data's settings for the run, restored afterwards: retry the batches that raise a
    RuntimeError or an OSError, fail fast on anything else, and no progress bars of its own."""
    context = ray.data.DataContext.get_current()
    wanted = {
        "actor_task_retry_on_errors": [RuntimeError, OSError] if max_retries else False,
        "enable_progress_bars": False,
        "print_on_execution_start": False,
        "raise_original_map_exception": True,
    }
    saved = {name: getattr(context, name) for name in wanted if hasattr(context, name)}
    for name in saved:
        setattr(context, name, wanted[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)


# ---------------------------------------------------------------------------------------------
# The parts folder


@contextlib.contextmanager
def _parts_folder(out: str | os.PathLike | None) -> Iterator[Path]:
    """`<stem>.parts/` beside `out` (kept), or a temporary folder (deleted) without `out`."""
    if out is None:
        with tempfile.TemporaryDirectory(prefix="xcam-ray-") as folder:
            yield Path(folder)
        return
    folder = parts_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # a write cut short by an earlier crash
        stale.unlink(missing_ok=True)
    yield folder


def parts_folder(out: str | os.PathLike) -> Path:
    """Where the Ray engine keeps the per-batch files of `out`: `results.csv` -> `results.parts/`."""
    table_path, _ = output_paths(out)
    return table_path.with_name(table_path.stem + ".parts")


def _manifest(fingerprint: str, methods: Sequence[str], layers: Sequence[str], batch_options: Mapping[str, Any],
              columns: Sequence[str]) -> dict[str, Any]:
    """What the parts' values depend on (not chunk_size, batch_size or the engine's options)."""
    settings = {name: batch_options.get(name) for name in ("target", "metrics", "steps", "tolerance", "method_options")}
    return json.loads(json.dumps({
        "model_and_images": fingerprint, "methods": list(methods), "layers": list(layers),
        "settings": settings, "columns": list(columns),
    }, default=repr))


def _check_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / MANIFEST
    if path.is_file():
        found = json.loads(path.read_text())
        if found != manifest:
            differ = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
            raise ValueError(
                f"out: {str(folder)!r} holds the parts of another evaluation ({', '.join(differ)} differ: "
                f"{ {k: found.get(k) for k in differ} } there); use another out, or delete that folder to start over"
            )
        return
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))


def _done_ids(folder: Path, per_image: int) -> set:
    """Image ids whose rows are all in the parts (every method × layer)."""
    pd = _pandas()
    files = sorted(folder.glob(PART_GLOB))
    if not files:
        return set()
    keys = pd.concat([pd.read_parquet(f, columns=KEY) for f in files], ignore_index=True).drop_duplicates()
    counts = keys.groupby("image").size()
    return set(counts.index[counts >= per_image].tolist())


def _write_part(pd: Any, folder: Path, ids: list, rows: list[dict], columns: Sequence[str]) -> Path:
    """One batch's rows as `batch-<first position>-<hash of the ids>.parquet`, written atomically;
    the same batch always gets the same name, so writing it again replaces it."""
    digest = hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]
    path = folder / f"batch-{_first(ids)}-{digest}.parquet"
    frame = pd.DataFrame(rows, columns=list(columns))
    _write_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return path


def _first(ids: list) -> str:
    first = ids[0]
    return f"{first:09d}" if isinstance(first, int) else hashlib.sha1(str(first).encode()).hexdigest()[:8]


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_table(pd: Any, folder: Path, ids: list, methods: Sequence[str], layers: Sequence[str],
                columns: Sequence[str], batch_size: int) -> pd.DataFrame:
    """All parts as one table: no duplicate (image, method, layer), in the local engine's order,
    with the dtypes that the local engine's construction from Python rows gives."""
    files = sorted(folder.glob(PART_GLOB))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = frame.drop_duplicates(subset=KEY, keep="first")
    position = frame["image"].map({image: i for i, image in enumerate(ids)})
    order = pd.DataFrame({
        "batch": position // batch_size,
        "method": frame["method"].map({name: i for i, name in enumerate(methods)}),
        "layer": frame["layer"].map({name: i for i, name in enumerate(layers)}),
        "position": position,
    }).dropna()  # rows of images, methods or layers not in this evaluation (none, given the manifest)
    frame = frame.loc[order.sort_values(["batch", "method", "layer", "position"]).index]
    missing = len(ids) * len(methods) * len(layers) - len(frame)
    if missing:
        raise RuntimeError(f"the Ray engine finished with {missing} rows missing in {str(folder)!r}; rerun to resume")
    return pd.DataFrame(frame[list(columns)].to_dict("records"), columns=list(columns))


# ---------------------------------------------------------------------------------------------
# Options and Ray itself


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"engine_options: unknown option(s) {unknown} for engine='ray'; accepted: {', '.join(OPTIONS)}")
    settings = {"address": None, "workers": None, "gpus_per_worker": None, "cpus_per_worker": 1, "max_retries": 3,
                "batch_hook": None, **options}
    address = settings["address"]
    if address is not None and not isinstance(address, str):
        raise TypeError(f"engine_options['address'] must be a str, e.g. 'auto' or 'ray://host:10001'; got {address!r}")
    for name, low in (("workers", 1), ("max_retries", 0)):
        value = settings[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"engine_options['{name}'] must be an int >= {low}, got {value!r}")
    for name in ("gpus_per_worker", "cpus_per_worker"):
        value = settings[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            raise ValueError(f"engine_options['{name}'] must be a number >= 0, got {value!r}")
    if not settings["cpus_per_worker"] and not settings["gpus_per_worker"]:
        raise ValueError("engine_options: an actor needs cpus_per_worker > 0 or gpus_per_worker > 0")
    if settings["batch_hook"] is not None and not callable(settings["batch_hook"]):
        raise TypeError("engine_options['batch_hook'] must be callable")
    return settings


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return ray


__all__ = ["OPTIONS", "BatchEvaluator", "evaluate_on_ray", "parts_folder"]
