"""Checks on the input tensor, done before anything runs."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU float32 for a parameter-free model)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.dtype.is_floating_point:
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first convolution, the channel count the model expects."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def prepare_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Validate `x` ([B, C, H, W] or [C, H, W], floating, finite) and move it to the model's
    device and dtype. Returns a 4-D tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (a preprocessed image), got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"x must be a floating-point tensor, got dtype {x.dtype}; preprocess the image first "
            "(e.g. with the preprocess returned by xw.load_model)"
        )
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [B, C, H, W] or [C, H, W], got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x is empty: shape {tuple(x.shape)}")
    channels = first_conv_channels(model)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"x has {x.shape[1]} channels but the model's first convolution expects {channels}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf values")
    device, dtype = model_device_dtype(model)
    return x.to(device=device, dtype=dtype)
