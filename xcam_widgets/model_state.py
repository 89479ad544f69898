"""Leave the user's model exactly as it was: flags, hooks and parameters."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def hook_counts(model: nn.Module) -> dict[str, int]:
    """Number of registered hooks of each kind, summed over all submodules."""
    return {
        attr: sum(len(getattr(m, attr, {})) for m in model.modules()) for attr in _HOOK_DICTS
    }


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode, then restore every module's `training` flag and every
    parameter's `requires_grad` flag, also when the body raises.

    Eval mode makes a map depend on its own image only: BatchNorm uses running statistics and
    dropout is off.
    """
    training = [(m, m.training) for m in model.modules()]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        with torch.enable_grad():
            yield model
    finally:
        for module, flag in training:
            module.training = flag
        for param, flag in requires_grad:
            param.requires_grad_(flag)
