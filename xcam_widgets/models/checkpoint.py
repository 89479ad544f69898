"""Load users' checkpoints safely: tensors only, never pickled code, all or nothing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
from torch import nn


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a state dict (or a dict holding one under 'state_dict' / 'model') into `model`.

    `torch.load(weights_only=True)` refuses any pickle that would run code, so a malicious file is
    an error, not an exploit. Loading is all or nothing: if any tensor does not fit (a wrong shape,
    a missing or unexpected key with `strict`), every parameter and buffer is put back as it was."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    state = _read_state_dict(Path(path))
    backup = {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}
    try:
        model.load_state_dict(state, strict=strict)
    except Exception as error:  # noqa: BLE001 - whatever failed, restore, then report it
        with torch.no_grad():
            current = model.state_dict()
            for name, saved in backup.items():
                current[name].copy_(saved)
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit {type(model).__name__}, so nothing was loaded: {error}"
        ) from error
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The name → tensor dict stored at `path`, or a ValueError / TypeError that says what is wrong."""
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    if _is_torchscript_archive(path):
        raise ValueError(
            f"checkpoint {str(path)!r} is a TorchScript archive (torch.jit.save), not a state dict. TorchScript "
            "models are not supported: their compiled forward calls no Python hooks, so no layer can be "
            "recorded. Save the weights with torch.save(model.state_dict(), path) and load them here."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
        detail = (str(error).splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"checkpoint {str(path)!r} was refused by torch.load(weights_only=True): it is not a plain "
            f"tensor checkpoint (it may need code execution to unpickle, or be corrupt). Detail: {detail}"
        ) from error
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(
            f"checkpoint {str(path)!r} does not hold a state dict (name → tensor), got {type(state).__name__}"
        )
    return state


def _is_torchscript_archive(path: Path) -> bool:
    """torch.jit.save writes a zip whose entries include `<archive>/constants.pkl` and `<archive>/code/`."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())
