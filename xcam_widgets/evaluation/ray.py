"""The Ray engine: `evaluate_batch` on a pool of Ray Data actors, on one machine or a cluster.

Same table, maps and part files as the local engine. Ray (`pip install xcam-widgets[ray]`) is
imported only when the engine runs. How it schedules, retries and resumes, and the Ray versions
it supports: docs/ray.md.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checks import finite_non_negative, positive_int
from ..model_state import evaluation_mode
from ..models import ModelBundle, load_model
from .batch import BatchResult, evaluate_batch
from .parts import Collector, decode_part, encode_part
from .sources import Source

OPTIONS: tuple[str, ...] = ("address", "workers", "gpus_per_worker", "cpus_per_worker", "max_retries", "batch_hook")
INSTALL_HINT = "engine='ray' needs Ray: pip install xcam-widgets[ray]"


def evaluate_on_ray(
    model: str | ModelBundle,
    source: Source,
    methods: Sequence[str],
    layers: Sequence[str],
    batch_options: Mapping[str, Any],
    collector: Collector,
    *,
    batch_size: int,
    device: str | torch.device | None,
    strict: bool,
    progress: bool,
    description: str,
    stop: threading.Event | None,
    **options: Any,
) -> None:
    """Evaluate the images not yet in `collector` on Ray actors; `evaluate` checks the arguments.

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
    settings = check_options(options)
    pending = [p for p in range(len(source)) if p not in collector.done]
    if not pending or (stop is not None and stop.is_set()):
        return  # all in the parts already: no Ray needed
    ray = import_ray()
    plan = [{"positions": pending[start : start + batch_size]} for start in range(0, len(pending), batch_size)]
    with _connected(ray, settings["address"]), _data_context(ray, settings["max_retries"]), _quiet():
        gpus_per_worker, workers = pool_size(ray, settings, device)
        workers = min(workers, len(plan))  # no actor without a batch to run
        # The bundle and the source go with the actors' constructor arguments, which Ray keeps for as
        # long as the actors live (a restarted actor needs them again).
        shipped = model if isinstance(model, str) else _on_cpu(model)
        dataset = _from_items(ray, plan).map_batches(
            BatchEvaluator,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs=dict(
                model=shipped,
                source=source,
                methods=list(methods),
                layers=list(layers),
                batch_options=dict(batch_options),
                device=None if device is None else str(device),
                strict=strict,
                threads=max(1, int(settings["cpus_per_worker"])),
                batch_hook=settings["batch_hook"],
            ),
            num_cpus=settings["cpus_per_worker"],
            num_gpus=gpus_per_worker,
            max_restarts=-1,  # a dead actor is always replaced ...
            max_task_retries=settings["max_retries"],  # ... and its batch retried at most this often
        )
        failure = _collect(
            ray,
            dataset,
            collector,
            stop,
            len(source),
            len(source) - len(pending),
            progress,
            f"{description} on {workers} Ray worker(s)",
        )
        if failure is not None:
            # Raised here, not in the handler, so that it carries no reference to the Ray error, whose
            # traceback holds the actors (and their CPUs and GPUs) for as long as the caller keeps it.
            del dataset
            gc.collect()
            raise failure


def _collect(
    ray: Any,
    dataset: Any,
    collector: Collector,
    stop: threading.Event | None,
    total: int,
    done: int,
    progress: bool,
    description: str,
) -> Exception | None:
    """Write each batch as it arrives (no prefetching: a finished batch is kept before any later
    batch can fail and end the run); the worker's own exception, if one ended the run."""
    blocks = dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
    with tqdm(total=total, initial=done, unit="img", disable=not progress, desc=description) as bar:
        try:
            for block in blocks:
                for payload in block["part"]:
                    part = decode_part(bytes(payload))
                    result = BatchResult(part.rows, dict(part.maps.items()), part.latents.layers)
                    collector.add(part.positions, result, bytes(payload))
                    bar.update(len(part.positions))
                if stop is not None and stop.is_set():
                    break
        except ray.exceptions.RayTaskError as err:
            failure = _worker_error(err, collector)
            if failure is None:
                raise
            return failure
        finally:
            with contextlib.suppress(Exception):
                blocks.close()  # stops the pool when the loop ends early
    return None


class BatchEvaluator:
    """The actors' callable class: the model loaded once, then `evaluate_batch` per image batch.

    A call gets a Ray Data batch of rows {"positions": [...]} (one row, with the engine's one-batch
    blocks) and returns {"part": the batch's part file bytes} per row."""

    def __init__(
        self,
        model: Any,
        source: Source,
        methods: Sequence[str],
        layers: Sequence[str],
        batch_options: Mapping[str, Any],
        device: str | None,
        strict: bool,
        threads: int,
        batch_hook: Callable | None,
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
        self.source, self.strict = source, strict
        self.methods, self.layers, self.batch_options = list(methods), list(layers), dict(batch_options)
        self.batch_hook = batch_hook

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        parts = []
        for positions in batch["positions"]:
            positions = [int(p) for p in np.asarray(positions).tolist()]
            if self.batch_hook is not None:
                self.batch_hook([self.source.ids[p] for p in positions])
            images = self.source.take(positions, self.strict)
            result = evaluate_batch(self.bundle, images, self.methods, self.layers, **self.batch_options)
            parts.append(encode_part(positions, result))
        return {"part": np.array(parts, dtype=object)}


def _worker_error(err: Exception, collector: Collector) -> Exception | None:
    """The worker's own exception, as the local engine raises it (None if there is none)."""
    cause = getattr(err, "cause", None)
    if not isinstance(cause, Exception):
        return None
    if hasattr(cause, "add_note") and collector.parts is not None:  # Python >= 3.11
        cause.add_note(
            f"(raised in a Ray worker; the batches done so far are in {str(collector.parts.path)!r}: "
            "a rerun with the same out resumes from them)"
        )
    return cause


def pool_size(ray: Any, settings: Mapping[str, Any], device: Any) -> tuple[float, int]:
    """(GPUs per actor, actors), from the options or the cluster's resources."""
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    on_cpu = device is not None and torch.device(device).type == "cpu"
    gpus_per_worker = settings["gpus_per_worker"]
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 and not on_cpu else 0.0
    workers = settings["workers"]
    if workers is None:
        workers = int(gpus // gpus_per_worker) if gpus_per_worker else int(cpus // settings["cpus_per_worker"])
        workers = max(1, workers)
    return gpus_per_worker, workers


def _on_cpu(bundle: ModelBundle) -> ModelBundle:
    """A copy of the bundle with its model on the CPU, for pickling; made holding the model's lock,
    so that no other thread's hooks or flags are copied with it."""
    with evaluation_mode(bundle.model):
        model = copy.deepcopy(bundle.model).cpu()
    return dataclasses.replace(bundle, model=model)


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
    """Without Ray Data's notes that its own bars are off and that the run finished (the tqdm bar
    says both), and without the deprecation of the retry keywords (docs/ray.md)."""
    loggers = {
        "ray.data._internal.progress": logging.ERROR,
        "ray.data._internal.execution.streaming_executor": logging.WARNING,
    }
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


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`engine_options` with their defaults, each checked."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"engine_options: unknown option(s) {unknown} for engine='ray'; accepted: {', '.join(OPTIONS)}"
        )
    settings = {
        "address": None,
        "workers": None,
        "gpus_per_worker": None,
        "cpus_per_worker": 1,
        "max_retries": 3,
        "batch_hook": None,
        **options,
    }
    address = settings["address"]
    if address is not None and not isinstance(address, str):
        raise TypeError(f"engine_options['address'] must be a str, e.g. 'auto' or 'ray://host:10001'; got {address!r}")
    if settings["workers"] is not None:
        positive_int("engine_options['workers']", settings["workers"])
    retries = settings["max_retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"engine_options['max_retries'] must be an int >= 0, got {retries!r}")
    for name in ("gpus_per_worker", "cpus_per_worker"):
        if settings[name] is not None:
            finite_non_negative(f"engine_options['{name}']", settings[name])
    if not settings["cpus_per_worker"] and not settings["gpus_per_worker"]:
        raise ValueError("engine_options: an actor needs cpus_per_worker > 0 or gpus_per_worker > 0")
    if settings["batch_hook"] is not None and not callable(settings["batch_hook"]):
        raise TypeError("engine_options['batch_hook'] must be callable")
    return settings


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return ray


__all__ = ["OPTIONS", "BatchEvaluator", "check_options", "evaluate_on_ray", "import_ray", "pool_size"]
