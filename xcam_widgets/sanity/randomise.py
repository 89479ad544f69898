"""What a sanity check randomises, in which order, and how.

All randomisation happens on a private copy of the user's model (`working_copy`), so the user's
weights, flags and hooks are never written, whatever happens mid-run. A *layer* is a module that
owns parameters directly (or a `reset_parameters` module that owns buffers, such as BatchNorm's
running statistics) and runs in the forward pass. Layers are listed in the order they finish
in the forward pass; the cascade walks that list backwards, from the output towards the input.

Re-initialisation follows Quantus's MPRT (and PyTorch's own initialisation): the module's
`reset_parameters()` under `torch.manual_seed(layer_seed)`. A module without `reset_parameters`
has each direct parameter re-drawn from a normal with its own mean and standard deviation
(unit deviation where that is 0). The global RNG state is restored afterwards (`fork_rng`).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..model_state import evaluation_mode


@dataclass(frozen=True)
class RandomLayer:
    """One randomisable layer: its dotted name, and whether it finishes after the CAM layer."""

    name: str
    after_layer: bool


def working_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` in eval mode, taken while holding the model's lock."""
    with evaluation_mode(model):
        try:
            return copy.deepcopy(model)
        except Exception as error:  # noqa: BLE001 - deepcopy raises whatever the model's attributes raise
            raise TypeError(
                f"sanity checks randomise a copy of the model, but copy.deepcopy failed on "
                f"{type(model).__name__}: {type(error).__name__}: {error}"
            ) from error


def _direct_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(recurse=False), *module.buffers(recurse=False)]


def is_randomisable(module: nn.Module) -> bool:
    """Owns parameters, or can reset the buffers it owns (BatchNorm without affine parameters)."""
    if any(True for _ in module.parameters(recurse=False)):
        return True
    return callable(getattr(module, "reset_parameters", None)) and any(True for _ in module.buffers(recurse=False))


def execution_order(model: nn.Module, x: torch.Tensor, layer: str) -> list[RandomLayer]:
    """The randomisable layers of `model` that run on `x`, in the order they finish (a module
    called twice counts at its last call), each flagged if it finishes after `layer` does.
    One forward pass without gradients."""
    named = [(name, m) for name, m in model.named_modules() if name and (is_randomisable(m) or name == layer)]
    finished: dict[str, int] = {}
    clock = itertools.count()

    def record(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            finished[name] = next(clock)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in named]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if layer not in finished:
        raise ValueError(f"layer {layer!r} did not run in the model's forward pass")
    modules = dict(named)
    ran = sorted((t, name) for name, t in finished.items() if is_randomisable(modules[name]))
    return [RandomLayer(name, t > finished[layer]) for t, name in ran]


def layer_seeds(seed: int, count: int) -> list[int]:
    """One seed per layer (in execution order) drawn from `seed`: a layer gets the same random
    weights in the cascading and the independent check, and distinct layers get distinct draws."""
    generator = torch.Generator().manual_seed(seed)
    return [int(s) for s in torch.randint(0, 2**62, (count,), generator=generator)]


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-draw `module`'s own parameters (see the module docstring), leaving the RNG state as it was."""
    cuda = sorted({t.device.index or 0 for t in _direct_tensors(module) if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for param in module.parameters(recurse=False):
            values = param.detach().float()
            mean = float(values.mean())
            std = float(values.std()) if values.numel() > 1 else 0.0
            param.normal_(mean, std if std > 0 else 1.0)


class Weights:
    """Randomises layers of a (private) model and puts their exact original values back. A layer's
    values are saved when it is first randomised, so only randomised layers cost memory."""

    def __init__(self, model: nn.Module, layers: Sequence[RandomLayer], seeds: Sequence[int]):
        modules = dict(model.named_modules())
        self._modules = {layer.name: modules[layer.name] for layer in layers}
        self._seeds = {layer.name: seed for layer, seed in zip(layers, seeds)}
        self._saved: dict[str, list[torch.Tensor]] = {}
        self.randomised: set[str] = set()

    def randomise(self, name: str) -> None:
        module = self._modules[name]
        if name not in self._saved:
            self._saved[name] = [t.detach().clone() for t in _direct_tensors(module)]
        reinitialise(module, self._seeds[name])
        self.randomised.add(name)

    def restore(self, name: str) -> None:
        with torch.no_grad():
            for tensor, saved in zip(_direct_tensors(self._modules[name]), self._saved[name]):
                tensor.copy_(saved)
        self.randomised.discard(name)

    def restore_all(self) -> None:
        for name in list(self.randomised):
            self.restore(name)
