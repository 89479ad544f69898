"""Class-index targets, and the `Scorer` that turns a model output and any `target` into S_c, one per image."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch

from .rows import OutputTarget

Target = Union[None, int, Sequence[int], torch.Tensor, Callable[[Any], torch.Tensor]]


def logits_of(output: Any) -> torch.Tensor:
    """The `[B, classes]` logits inside a model output: a tensor, a tuple/list (first item),
    a dict (key 'logits' or 'out'), or an object with a `.logits` attribute."""
    if isinstance(output, torch.Tensor):
        logits = output
    elif hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        logits = output.logits
    elif isinstance(output, dict):
        key = next((k for k in ("logits", "out") if k in output), None)
        if key is None:
            raise TypeError(
                f"model returned a dict with keys {sorted(output)}; pass target=callable(output) -> [B] scores"
            )
        logits = output[key]
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        logits = output[0]
    else:
        raise TypeError(
            f"cannot find logits in a model output of type {type(output).__name__}; "
            "pass target=callable(output) -> [B] scores"
        )
    if logits.ndim != 2:
        raise ValueError(
            f"model logits have shape {tuple(logits.shape)}, expected [B, classes]; "
            "pass target=callable(output) -> [B] scores"
        )
    return logits


def class_indices(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """`[B]` long tensor of target classes: top-1 for None, validated otherwise."""
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if isinstance(target, torch.Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
        values = [int(v) for v in target.reshape(-1).tolist()]
    elif isinstance(target, bool) or not isinstance(target, (numbers.Integral, Sequence)):
        raise TypeError(f"target must be None, an int, a sequence of ints or a callable; got {type(target).__name__}")
    elif isinstance(target, numbers.Integral):
        values = [int(target)] * batch
    else:
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in target):
            raise TypeError(f"target must hold integer class indices, got {list(target)!r}")
        values = [int(v) for v in target]
    if len(values) == 1 and batch > 1:
        values = values * batch
    if len(values) != batch:
        raise ValueError(f"target has {len(values)} classes for a batch of {batch} images")
    bad = [v for v in values if not 0 <= v < classes]
    if bad:
        raise ValueError(f"target class {bad[0]} is out of range: the model has {classes} classes (0..{classes - 1})")
    if len(set(values)) == 1:  # a fill on the device: copying a list there would wait for the GPU
        return torch.full((batch,), values[0], device=logits.device, dtype=torch.long)
    return torch.tensor(values, device=logits.device, dtype=torch.long)


@dataclass(frozen=True)
class Scorer:
    """Maps a model output to one score per row: the logit of a fixed class, or a user callable.

    The classes are fixed from the first, clean pass, so that every later pass (noisy copies,
    masked inputs, ablated channels) scores the same class. `rows_of` says which image each row
    of a later batch belongs to: a `[N]` index tensor, or one int when all rows copy one image.
    A plain callable target must score row by row; an `OutputTarget` is told `rows_of`, so it may
    hold one specification (class, mask, box, reference) per image.
    """

    classes: torch.Tensor | None
    fn: Callable[[Any], torch.Tensor] | None = None

    def __call__(self, output: Any, rows_of: torch.Tensor | int | None = None) -> torch.Tensor:
        if self.fn is not None:
            value = self.fn(output, rows_of) if isinstance(self.fn, OutputTarget) else self.fn(output)
            if not isinstance(value, torch.Tensor) or value.ndim != 1:
                raise TypeError("a target callable must return a 1-D tensor of scores, one per image")
            return value
        logits = logits_of(output)
        assert self.classes is not None  # a Scorer holds classes or a callable
        if rows_of is None:
            classes = self.classes
        elif isinstance(rows_of, int):
            classes = self.classes[rows_of].expand(logits.shape[0])
        else:
            classes = self.classes[rows_of]
        return logits.gather(1, classes[:, None].to(logits.device)).squeeze(1)


def make_scorer(target: Target, output: Any) -> Scorer:
    """Build the scorer for `target` given the clean pass's output. An `OutputTarget` is bound to
    that output first (a default mask, a checked match), so later passes score the same thing."""
    if isinstance(target, OutputTarget):
        return Scorer(classes=None, fn=target.bind(output))
    if callable(target) and not isinstance(target, torch.Tensor):
        return Scorer(classes=None, fn=target)
    return Scorer(classes=class_indices(target, logits_of(output)))
