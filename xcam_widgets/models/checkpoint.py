"""Load users' checkpoints safely: tensors only, never pickled code."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load a state dict (or a dict holding one under 'state_dict' / 'model') into `model`.

    `torch.load(weights_only=True)` refuses any pickle that would run code, so a malicious file is
    an error, not an exploit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ValueError(f"checkpoint {str(path)!r} does not exist") from error
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"checkpoint {str(path)!r} was refused by torch.load(weights_only=True): it is not a plain "
            f"tensor checkpoint (it may need code execution to unpickle). Detail: {str(error).splitlines()[0]}"
        ) from error
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(f"checkpoint {str(path)!r} does not hold a state dict (name → tensor), got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {error}") from error
    return model
