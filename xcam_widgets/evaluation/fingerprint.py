"""What a run's rows depend on, by content rather than by name: the model's weights, its preprocess
and the images. A resumed run compares the fingerprint in its `out` with its own and says what changed.

- weights: SHA-256 of every parameter's and buffer's bytes (with its name, dtype and shape), each
  tensor read once per run (copied to the CPU first where it is elsewhere). Cost: 18.8 MB of
  EfficientNet-Lite0 (296 tensors) take about 40 ms on the 2-core CPU of the development machine
  (~0.5 GB/s), i.e. ~2 s per GB; a run hashes twice (at the start, and at the end to see whether
  the weights changed during it).
- preprocess: its repr (a torchvision `Compose` lists its steps and their settings). A callable
  whose repr is the default one (a function, a lambda, an object without `__repr__`) gives its
  qualified name, with a note that changes inside it cannot be seen.
- images, files: each file's size and `st_mtime_ns` (and the folder or list given). Not a content
  hash: reading every file again on each resume would cost as much I/O as the run's own reading
  (minutes for an ImageNet-sized folder on a network disk), while a `stat` costs microseconds and
  any write, copy or replacement of a file changes its mtime. A file replaced by one of the same
  size with its old mtime restored on purpose (`cp -p`, `rsync -a`) is not seen.
- images, a Dataset: its type and length, a hash of its `targets` where it has them (the labels of
  all items, without loading any image), and a hash of the pixels and label of each of its first
  items: `DATASET_SAMPLE` of them, at most the first batch, which the run reads at once anyway (a
  sample spread over the Dataset would read ahead of the run: a Dataset whose later items are
  slow to come, a stream, would stall before the first rows). Loading every item would cost a
  whole pass over the data, so changes to later items are not seen, except their labels through
  `targets`.
- images, the shapes benchmark: the spec (or None for a ShapesBatch) and a hash of the pixels and
  labels (0.25 s for "shapes:1000", 49 MB of pixels, on the same CPU: far less than one batch).

The fingerprint is stored in the run's meta (`meta["fingerprint"]`). A run written before there
were fingerprints is not resumed (an error says so): its rows cannot be checked against this run's
inputs, and resuming it blindly is the silent mix this guards against; `open_result` still reopens it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import ModelBundle
from .sources import DatasetSource, FolderSource, ShapesSource, Source, as_pil

DATASET_SAMPLE = 8
SHOWN = 5  # changed files named in an error, at most
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def run_fingerprint(bundle: ModelBundle, source: Source, batch_size: int) -> dict[str, Any]:
    """The fingerprint stored in a run's meta (JSON-ready)."""
    return {
        "model": bundle.name,
        "weights": weights_hash(bundle.model),
        "preprocess": describe_preprocess(source.preprocess),
        "images": images_fingerprint(source, min(DATASET_SAMPLE, batch_size)),
    }


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over the parameters and buffers in `named_parameters` / `named_buffers` order."""
    digest = hashlib.sha256()
    for name, tensor in _tensors(model):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().data)
    return digest.hexdigest()


def _tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def describe_preprocess(preprocess: Callable) -> str:
    """The preprocess's repr, or, when that is the default `<... at 0x...>`, its qualified name and a note."""
    text = repr(preprocess)
    if _ADDRESS.search(text) is None:
        return text
    qualname = getattr(preprocess, "__qualname__", None)
    name = f"{preprocess.__module__}.{qualname}" if isinstance(qualname, str) else _ADDRESS.sub("", text)
    return f"{name} (a callable without a repr: changes inside it cannot be seen)"


def images_fingerprint(source: Source, sample: int = DATASET_SAMPLE) -> dict[str, Any]:
    """The images' identity by kind of source (see the module docstring); a Dataset's first
    `sample` items are read."""
    if isinstance(source, FolderSource):
        return {
            "kind": "files",
            "spec": source.spec,
            "files": [[i, *_stat(p)] for i, p in zip(source.ids, source.paths)],
        }
    if isinstance(source, ShapesSource):
        pixels = _sha(source.data.images.detach().cpu().contiguous().numpy())
        return {"kind": "shapes", "spec": source.spec, "pixels": pixels, "labels": _sha(source.data.labels.numpy())}
    if isinstance(source, DatasetSource):
        dataset = source.dataset
        targets = getattr(dataset, "targets", None)
        n = len(source)
        return {
            "kind": "dataset",
            "type": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
            "length": n,
            "targets": None if targets is None else _sha(np.asarray(targets)),
            "sample": [[p, _item_hash(dataset, p)] for p in range(min(n, sample))],
        }
    raise TypeError(f"no fingerprint for a {type(source).__name__}")  # pragma: no cover - every Source is above


def _stat(path: os.PathLike) -> tuple[int | None, int | None]:
    try:
        stat = os.stat(path)
    except OSError:
        return None, None  # missing now: an error row; a file there later is a change
    return stat.st_size, stat.st_mtime_ns


def _sha(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def _item_hash(dataset: Any, position: int) -> str:
    try:
        image, label = dataset[position]
        pixels = as_pil(image).tobytes()
        label = label.tolist() if isinstance(label, (torch.Tensor, np.ndarray)) else label
        return hashlib.sha256(pixels + json.dumps(label, default=repr).encode()).hexdigest()
    except Exception as err:  # an unreadable item is an error row of the run; its error is its identity
        return f"error: {type(err).__name__}"


def changes(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words ([] when they agree)."""
    said = []
    if found.get("model") != wanted.get("model"):
        said.append(f"the model ({found.get('model')!r} there, {wanted.get('model')!r} now)")
    if found.get("weights") != wanted.get("weights"):
        said.append("the model's weights (its parameters or buffers hash differently)")
    if found.get("preprocess") != wanted.get("preprocess"):
        said.append(f"the preprocess ({_short(found.get('preprocess'))} there, {_short(wanted.get('preprocess'))} now)")
    said += _image_changes(found.get("images") or {}, wanted.get("images") or {})
    return said


def _image_changes(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    if found.get("kind") != wanted.get("kind"):
        return [f"the images (a {found.get('kind')} source there, a {wanted.get('kind')} source now)"]
    said = []
    if found.get("spec") != wanted.get("spec"):
        said.append(f"the images given ({_short(found.get('spec'))} there, {_short(wanted.get('spec'))} now)")
    if wanted.get("kind") == "files":
        before = {entry[0]: entry[1:] for entry in found.get("files", [])}
        now = {entry[0]: entry[1:] for entry in wanted.get("files", [])}
        for verb, names in (
            ("changed (size or mtime)", [i for i in now if i in before and now[i] != before[i]]),
            ("added", [i for i in now if i not in before]),
            ("removed", [i for i in before if i not in now]),
        ):
            if names:
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                said.append(f"image files {verb}: {', '.join(map(repr, names[:SHOWN]))}{more}")
        return said
    for key, what in (("pixels", "the images' pixels"), ("labels", "the labels"), ("type", "the Dataset's type")):
        if found.get(key) != wanted.get(key):
            said.append(what)
    if found.get("length") != wanted.get("length"):
        said.append(f"the Dataset's length ({found.get('length')} there, {wanted.get('length')} now)")
    if found.get("targets") != wanted.get("targets"):
        said.append("the Dataset's labels (its `targets`)")
    before, now = dict(map(tuple, found.get("sample", []))), dict(map(tuple, wanted.get("sample", [])))
    items = [p for p in now if p in before and now[p] != before[p]]  # runs of other batch sizes read fewer
    if items:
        said.append(f"the Dataset's items at positions {items} (pixels or label; a sample is checked)")
    return said


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["DATASET_SAMPLE", "changes", "describe_preprocess", "images_fingerprint", "run_fingerprint", "weights_hash"]
