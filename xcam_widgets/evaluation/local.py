"""The local engine: `evaluate_batch` over the pending images, batch after batch, in this process.

Each finished batch goes to the `Collector` (its part file first, with `out`), so an interrupted
run (Ctrl-C, an error, `stop`) keeps every finished batch and a rerun resumes from them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from ..models import ModelBundle
from .batch import evaluate_batch
from .parts import Collector
from .sources import Source


def run_local(
    bundle: ModelBundle,
    source: Source,
    methods: Sequence[str],
    layers: Sequence[str],
    batch_options: Mapping[str, Any],
    collector: Collector,
    *,
    batch_size: int,
    strict: bool,
    progress: bool,
    description: str,
    stop: threading.Event | None,
) -> None:
    """Evaluate the images not yet in `collector`, in batches of `batch_size` positions; return
    early, between two batches, once `stop` is set."""
    pending = [p for p in range(len(source)) if p not in collector.done]
    with tqdm(
        total=len(source), initial=len(source) - len(pending), unit="img", disable=not progress, desc=description
    ) as bar:
        for start in range(0, len(pending), batch_size):
            if stop is not None and stop.is_set():
                return
            positions = pending[start : start + batch_size]
            batch = source.take(positions, strict)
            collector.add(positions, evaluate_batch(bundle, batch, methods, layers, **batch_options))
            bar.update(len(positions))


__all__ = ["run_local"]
