"""One image's forward pass, kept with its autograd graph: a new class or layer costs one partial
backward pass, never a new forward pass. The classes' gradients are kept under a byte budget
(`KeptGradients`), and `held_bytes` counts what all of it holds."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .capture import check_finite_scores, check_score_shape, run_hooked, to_grid
from .layers import resolve_layers
from .model_state import evaluation_mode
from .reshape import infer_reshape
from .targets import Scorer, Target, logits_of, make_scorer


class ForwardGraph:
    """The forward pass of `x` with the outputs of `layers` recorded and the autograd graph kept.

    `gradients(scorer, names)` is ∂S_c/∂A for those layers by `autograd.grad(..., retain_graph=True)`:
    a backward pass that stops at the deepest layer asked for. The values are those of
    `capture(model, x, names, target)` bit for bit: the same recorded forward, the same backward
    operations. Holds the tensors autograd saved in the forward pass (`nbytes`), the peak that one
    capture needs anyway, until the object is dropped.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, layers: Sequence[str]):
        self.model = model
        self.batch = x.shape[0]
        with evaluation_mode(model):
            self.output, recorders = run_hooked(model, x, resolve_layers(model, list(layers)))
        missing = [rec.name for rec in recorders if rec.output is None]
        if missing:
            raise ValueError(f"layer {missing[0]!r} did not run in the model's forward pass")
        self._outputs = {rec.name: rec.output for rec in recorders if rec.output is not None}
        # Token and channels-last layers go through the grid read off the model, as in `capture`.
        self._reshapes = {
            name: infer_reshape(model, tuple(x.shape), name, tuple(out.shape)) for name, out in self._outputs.items()
        }
        self.activations = {
            name: to_grid(name, out.detach(), self._reshapes[name]) for name, out in self._outputs.items()
        }
        self.logits = _logits_or_none(self.output)

    def nbytes(self) -> int:
        """Bytes of the tensors the kept graph holds beyond the model's own parameters and buffers:
        the recorded outputs, their grids and the output, and what autograd saved for the backward pass."""
        return storage_bytes([*self.activation_tensors(), *self.saved_tensors()], model_storages(self.model))

    def activation_tensors(self) -> list[torch.Tensor]:
        """The recorded layer outputs A, their `[B, K, h, w]` grids, and the model's output."""
        return [*self._outputs.values(), *self.activations.values(), *_tensors(self.output)]

    def saved_tensors(self) -> list[torch.Tensor]:
        """What autograd saved for the backward pass: the `_saved_*` tensors of every node behind the
        recorded outputs and the output."""
        found: list[torch.Tensor] = []
        roots = [t.grad_fn for t in (*self._outputs.values(), *_tensors(self.output)) if t.grad_fn is not None]
        seen: set[int] = set()
        while roots:
            node = roots.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for attr in dir(node):
                if attr.startswith("_saved_"):
                    found.extend(_tensors(getattr(node, attr)))
            roots.extend(fn for fn, _ in node.next_functions if fn is not None)
        return found

    def scorer(self, target: Target) -> Scorer:
        """The scorer of `target` (top-1 for None) on this pass's output."""
        return make_scorer(target, self.output)

    def gradients(self, scorer: Scorer, names: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scores `[B]` and G = ∂S_c/∂A `[B, K, h, w]` of the layers `names`, detached."""
        unknown = [name for name in names if name not in self._outputs]
        if unknown:
            raise ValueError(f"layer {unknown[0]!r} was not recorded in this forward pass")
        with evaluation_mode(self.model):
            score = scorer(self.output)
            check_score_shape(score, self.batch)
            if not score.requires_grad:
                raise ValueError("the score does not depend on the chosen layer(s) through autograd")
            grads = torch.autograd.grad(
                score.sum(), [self._outputs[n] for n in names], retain_graph=True, allow_unused=True
            )
        check_finite_scores(score)
        result = {}
        for name, grad in zip(names, grads):
            if grad is None:
                raise ValueError(f"the score does not depend on layer {name!r}")
            result[name] = to_grid(name, grad.detach(), self._reshapes[name])
        return score.detach(), result


def _logits_or_none(output: Any) -> torch.Tensor | None:
    """The detached logits for showing predictions; None for outputs only a target callable scores."""
    try:
        return logits_of(output).detach()
    except (TypeError, ValueError):
        return None


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a model output or a saved attribute: a tensor, or a tuple/list/dict of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def model_storages(model: nn.Module) -> set[int]:
    """Data pointers of the model's parameters and buffers: a graph holds them, but they are the model's."""
    return {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}


def storage_bytes(values: Iterable[Any], counted: set[int]) -> int:
    """Bytes of the tensor storages and NumPy arrays in `values` whose data pointers are not in `counted`
    (which this adds them to): each buffer once, however many views of it there are."""
    total = 0
    for value in values:
        for pointer, size in _buffers(value):
            if pointer not in counted:
                counted.add(pointer)
                total += size
    return total


def _buffers(value: Any) -> Iterator[tuple[int, int]]:
    """(data pointer, bytes) of each tensor storage and array in `value`: a tensor, an array, or a
    dataclass, tuple, list or dict of them (a cached `Explanation`, a sanity view)."""
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        yield storage.data_ptr(), storage.nbytes()
    elif isinstance(value, np.ndarray):
        yield value.__array_interface__["data"][0], value.nbytes
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _buffers(getattr(value, item.name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _buffers(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _buffers(item)


@dataclass
class ClassPass:
    """One class on one image: its scorer, its score once known, G of the layers asked so far, their bytes."""

    scorer: Scorer
    score: torch.Tensor | None = None
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)
    nbytes: int = 0


class KeptGradients:
    """The class passes of one image, least recently used first: at most `count` classes, and beyond the
    class last used at most `budget` bytes of gradients. An evicted class costs one backward pass on the
    kept graph when it is asked for again. EfficientNet-Lite0 at 224 px: ~88 MB of G per class when every
    candidate layer is captured (0.25 MB for its last feature map alone), so `capture` of 8 classes held
    900 MB with the graph's 198 MB, against 374 MB under the Session's default budget (128 MiB)."""

    def __init__(self, count: int, budget: int):
        self.count, self.budget = count, budget
        self._passes: OrderedDict[Hashable, ClassPass] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Scorer]) -> ClassPass:
        """The pass of `key`, now the most recent, with a scorer from `make` if it is new."""
        with self._lock:
            found = self._passes.get(key)
            if found is None:
                found = self._passes[key] = ClassPass(make())
            self._passes.move_to_end(key)
            self._evict()
            return found

    def add(self, found: ClassPass, score: torch.Tensor, gradients: dict[str, torch.Tensor]) -> None:
        """Store new gradients in `found` (the pass last got), then evict the oldest passes over budget."""
        with self._lock:
            found.score = score
            found.gradients.update(gradients)
            found.nbytes = storage_bytes(found.gradients.values(), set())
            self._evict()

    def held(self) -> dict[Hashable, list[torch.Tensor]]:
        """Each kept class's gradients, least recently used first."""
        with self._lock:
            return {key: list(found.gradients.values()) for key, found in self._passes.items()}

    def _evict(self) -> None:
        last = next(reversed(self._passes))
        while len(self._passes) > 1 and (
            len(self._passes) > self.count or sum(p.nbytes for k, p in self._passes.items() if k != last) > self.budget
        ):
            self._passes.popitem(last=False)


@dataclass(frozen=True)
class HeldBytes:
    """What a Session holds for its image, in bytes: each storage once, the model's own tensors not at all.

    `activations`: the image, the recorded layer outputs A (with their grids) and the model's output;
    `graph`: what autograd saved beyond those for the backward pass; `gradients`: G kept per class
    (a target key → bytes, least recently used first); `results`: the cached maps, diagnoses and views."""

    activations: int
    graph: int
    gradients: dict[Hashable, int]
    results: int

    @property
    def total(self) -> int:
        return self.activations + self.graph + sum(self.gradients.values()) + self.results


def held_bytes(
    model: nn.Module,
    x: torch.Tensor,
    graph: ForwardGraph | None,
    gradients: Mapping[Hashable, list[torch.Tensor]],
    results: Iterable[Any],
) -> HeldBytes:
    """What a Session holds for image `x` (`HeldBytes`), each storage counted once, in the fields' order."""
    counted = model_storages(model)
    activations = storage_bytes([x, *(graph.activation_tensors() if graph is not None else [])], counted)
    saved = storage_bytes(graph.saved_tensors(), counted) if graph is not None else 0
    held = {key: storage_bytes(tensors, counted) for key, tensors in gradients.items()}
    return HeldBytes(activations, saved, held, storage_bytes(results, counted))
