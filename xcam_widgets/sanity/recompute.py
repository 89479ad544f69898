"""Each method's raw map at one layer of the (private, partly randomised) model, re-running no more
of the network than the current randomisation requires.

Gradient methods are functions of A and G = ∂S_c/∂A alone. So one pass gives (A, G) for all of
them, and while every randomised layer lies in the network *after* the CAM layer, A is unchanged
and only that tail runs again, on the captured A (`split.make_tail`), to give the new G. The maps
themselves always come from `explain`: for (A, G) through `GradientProbe`, a linear function whose
activation is A and whose gradient there is G. Methods that re-run the model (Score-CAM, ...)
call `explain` on the whole model at every step.

A layer after the CAM layer that shares a tensor with the part before it (a tied parameter, or one
module called on both sides) changes A when it is re-drawn, so the tail cannot absorb it: steps that
randomise it re-run the whole model, as `split=False` does (`shared_across`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..capture import capture
from ..explain import Explanation, explain
from ..methods import REGISTRY
from ..model_state import evaluation_mode
from ..split import Tail, TailGraph, make_tail, trace_tail
from ..targets import Scorer, Target

PROBE_LAYER = "activation"


class GradientProbe(nn.Module):
    """S(a) = Σ_kxy a ⊙ G per image: at its `activation` layer the activation is the input and
    the gradient is exactly G, so `explain(probe, A, "activation", m)` is method m's map for (A, G)."""

    def __init__(self, gradients: torch.Tensor):
        super().__init__()
        self.activation = nn.Identity()
        self.register_buffer("gradients", gradients)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return (self.activation(activations) * self.gradients).sum(dim=(1, 2, 3))


def _own_output(output: torch.Tensor) -> torch.Tensor:
    return output


def uses_model(method: str) -> bool:
    return REGISTRY[method].uses_model


def tail_only_modules(graph: TailGraph, names: Sequence[str]) -> frozenset[str]:
    """Those of `names` that only the traced tail uses: a module called in the tail graph (or the
    child of one) that nothing before the CAM layer calls or reads. A parameter read by attribute
    (`get_attr`) is a constant of the tail, so its owner never counts as tail-only."""
    tail_calls = Counter(n.target for n in graph.module.graph.nodes if n.op == "call_module")
    uses: Counter[str] = Counter()
    for node in graph.root.graph.nodes:
        if node.op == "call_module":
            uses[node.target] += 1
        elif node.op == "get_attr":
            uses[str(node.target).rpartition(".")[0]] += 1
    only = {name for name, count in tail_calls.items() if uses[name] == count}

    def in_tail(name: str) -> bool:
        parts = name.split(".")
        owners = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
        return any(owner in only for owner in owners) and (name in only or uses[name] == 0)

    return frozenset(name for name in names if in_tail(name))


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    """The memory a tensor's values live in; its identity where it has no plain storage."""
    try:
        return (str(tensor.device), tensor.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # e.g. a tensor subclass without storage
        return ("id", id(tensor))


def shared_across(model: nn.Module, tail: frozenset[str]) -> dict[str, str]:
    """`{tail module: another module}` for the modules of `tail` that own a tensor (a parameter or
    buffer, or a view of the same storage) that a module outside `tail` also owns, aliases of one
    module included: re-drawing it re-draws that module's tensor too."""
    owners: dict[tuple[str, int], set[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for tensor in [*module._parameters.values(), *module._buffers.values()]:
            if tensor is not None and tensor.numel() > 0:
                owners.setdefault(_storage_key(tensor), set()).add(name)
    modules = dict(model.named_modules())
    shared: dict[str, str] = {}
    for name in sorted(tail):
        for tensor in [*modules[name]._parameters.values(), *modules[name]._buffers.values()]:
            others = sorted(owners.get(_storage_key(tensor), set()) - tail) if tensor is not None else []
            if others:
                shared[name] = others[0] or type(model).__name__
                break
    return shared


class MapEngine:
    """Raw maps of the methods at `layer` of `model` for a class choice (a `Scorer`).

    Built on the unrandomised model: it captures A, the classes of `target` (fixed from then on)
    and, with `split`, the tail after the layer, kept only if its gradients reproduce the captured
    ones. `tail_layers` are the layers whose randomisation the tail can absorb (of `layer_names`;
    `after_layer` names those that run after the layer, for the note); `note` says which
    path the steps take and why, and `tail_steps` counts the steps that took the tail."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        layer: str,
        target: Target,
        options: Mapping[str, Mapping[str, Any]],
        split: bool,
        layer_names: Sequence[str],
        after_layer: Sequence[str] = (),
    ):
        self.model, self.x, self.layer, self.options = model, x, layer, options
        base = capture(model, x, layer, target)
        self.scorer = base.scorer
        self.num_classes = None if base.logits is None else int(base.logits.shape[1])
        self.A = base.activations[layer]
        self.tail: Tail | None = None
        self.tail_layers: frozenset[str] = frozenset()
        self.tail_steps = 0
        self.note = "split=False: every step re-ran the whole model"
        if split:
            self.note = self._split(base.score, base.gradients[layer], layer_names, after_layer)

    def _split(
        self, score: torch.Tensor, gradients: torch.Tensor, layer_names: Sequence[str], after_layer: Sequence[str]
    ) -> str:
        """Set up the tail; returns the note on the path the steps take."""
        full = "so every step re-ran the whole model"
        try:
            graph = trace_tail(self.model, self.layer)
        except ValueError as error:
            return f"{error}, {full}"
        with evaluation_mode(self.model):
            tail, fast = make_tail(self.model, self.layer, self.x, lambda t: self._reproduces(t, score))
        scale = float(gradients.abs().max())
        if not fast or not torch.allclose(
            self._tail_gradients(tail, self.scorer), gradients, rtol=1e-3, atol=1e-5 * scale
        ):
            return f"the traced network after {self.layer} does not reproduce the model's scores or gradients, {full}"
        absorbed = tail_only_modules(graph, layer_names)
        shared = shared_across(self.model, absorbed)
        self.tail, self.tail_layers = tail, absorbed - set(shared)
        note = f"steps that randomise only layers after {self.layer} re-ran the network after it"
        reasons = [
            f"{name} shares a tensor with {shared[name]}" if name in shared else f"{name} also runs before it"
            for name in after_layer
            if name not in self.tail_layers
        ]
        if reasons:
            note += f"; steps that randomise these re-ran the whole model: {', '.join(reasons)}"
        return note

    def _reproduces(self, tail: Tail, score: torch.Tensor) -> bool:
        with torch.no_grad():
            for image in range(self.x.shape[0]):
                value = float(self.scorer(tail(self.A[image : image + 1].to(self.x.dtype, copy=True), image), image)[0])
                if abs(value - float(score[image])) > 1e-3 * (1 + abs(float(score[image]))):
                    return False
        return True

    def _tail_gradients(self, tail: Tail, scorer: Scorer) -> torch.Tensor:
        """G = ∂S/∂A through the tail alone, image by image (the tail's constants are per image)."""
        grads = []
        with evaluation_mode(self.model):
            for image in range(self.A.shape[0]):
                acts = self.A[image : image + 1].to(self.x.dtype, copy=True).requires_grad_(True)
                (grad,) = torch.autograd.grad(scorer(tail(acts, image), image).sum(), acts)
                grads.append(grad)
        return torch.cat(grads).to(self.A.dtype)

    def activations_and_gradients(self, scorer: Scorer, randomised: set[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, G) at the current weights: through the tail when it absorbs every randomised layer."""
        if self.tail is not None and randomised <= self.tail_layers:
            self.tail_steps += 1
            return self.A, self._tail_gradients(self.tail, scorer)
        cap = capture(self.model, self.x, self.layer, scorer=scorer)
        return cap.activations[self.layer], cap.gradients[self.layer]

    def raw_maps(
        self, methods: Sequence[str], scorer: Scorer, randomised: set[str], done: Callable[[], None]
    ) -> dict[str, torch.Tensor]:
        """`{method: raw map [B, h, w]}`; `done()` after each method (it may raise to cancel)."""
        maps: dict[str, torch.Tensor] = {}
        gradient_methods = [m for m in methods if not uses_model(m)]
        if gradient_methods:
            A, G = self.activations_and_gradients(scorer, randomised)
            probe = GradientProbe(G)
            for method in gradient_methods:
                maps[method] = _raw(explain(probe, A, PROBE_LAYER, method, target=_own_output))
                done()
        target: Target = scorer.fn if scorer.fn is not None else scorer.classes
        for method in methods:
            if uses_model(method):
                options = self.options.get(method, {})
                maps[method] = _raw(explain(self.model, self.x, self.layer, method, target, **options))
                done()
        return {method: maps[method] for method in methods}


def _raw(result: Explanation | list[Explanation]) -> torch.Tensor:
    """The raw map of `explain` on one layer (which returns one Explanation)."""
    assert isinstance(result, Explanation)
    return result.raw
