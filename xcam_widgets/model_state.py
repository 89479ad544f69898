"""Leave the user's model exactly as it was: flags, hooks and parameters."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def hook_counts(model: nn.Module) -> dict[str, int]:
    """Number of registered hooks of each kind, summed over all submodules."""
    return {attr: sum(len(getattr(m, attr, {})) for m in model.modules()) for attr in _HOOK_DICTS}


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one re-entrant lock of `model`: every use of a model by xcam-widgets holds it.

    Hooks, `training` flags and BatchNorm statistics belong to the model, not to a call, so two
    threads may only take turns on one model; two different models run in parallel."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


# Ids of the models that an enclosing `evaluation_mode` of this thread already holds.
_HELD: ContextVar[frozenset[int]] = ContextVar("xcam_models_in_evaluation_mode", default=frozenset())


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode, then restore every module's `training` flag and every
    parameter's `requires_grad` flag, also when the body raises.

    Eval mode makes a map depend on its own image only: BatchNorm uses running statistics and
    dropout is off. Nested calls for the same model cost nothing: the outermost one restores.
    The outermost call also holds `model_lock(model)`, so threads sharing a model take turns and
    each one sees (and restores) the user's own flags.
    """
    held = _HELD.get()
    if id(model) in held:
        with torch.enable_grad():
            yield model
        return
    with model_lock(model):
        with _evaluation_mode_held(model, held):
            yield model


@contextmanager
def _evaluation_mode_held(model: nn.Module, held: frozenset[int]) -> Iterator[None]:
    token = _HELD.set(held | {id(model)})
    modules = list(model.modules())
    training = [m.training for m in modules]
    requires_grad = [(p, p.requires_grad) for m in modules for p in m._parameters.values() if p is not None]
    if any(training):  # `eval()` rather than the flags: a module may override `train`
        model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        _HELD.reset(token)
        # Only flags that differ are written back: nn.Module's setattr is slow, and for a model in
        # eval mode with untouched parameters (the common case) nothing is written.
        for module, flag in zip(modules, training):
            if module.training != flag:
                module.training = flag
        for param, flag in requires_grad:
            if param.requires_grad != flag:
                param.requires_grad_(flag)
