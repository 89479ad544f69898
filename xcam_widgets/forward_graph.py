"""One image's forward pass, kept with its autograd graph: a new class or layer costs one partial
backward pass, never a new forward pass."""

from __future__ import annotations

from typing import Any, Sequence

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
        what autograd saved for the backward pass, and the recorded outputs."""
        own = {t.untyped_storage().data_ptr() for t in (*self.model.parameters(), *self.model.buffers())}
        storages: dict[int, int] = {}

        def add(tensor: torch.Tensor) -> None:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in own:
                storages[storage.data_ptr()] = storage.nbytes()

        for out in self._outputs.values():
            add(out)
        roots = [t.grad_fn for t in (*self._outputs.values(), *_tensors(self.output)) if t.grad_fn is not None]
        seen: set[int] = set()
        while roots:
            node = roots.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for attr in dir(node):
                if attr.startswith("_saved_"):
                    value = getattr(node, attr)
                    for tensor in _tensors(value):
                        add(tensor)
            roots.extend(fn for fn, _ in node.next_functions if fn is not None)
        return sum(storages.values())

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
