"""From the raw map to what people see, and fusing several layers."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

# A raw map whose ReLU varies by at most this fraction of its largest magnitude has no range: what
# varies is float rounding (a constant image gives such maps), not evidence.
FLAT_RTOL = 1e-4


def display_map(raw: torch.Tensor, size: tuple[int, ...], rtol: float = FLAT_RTOL) -> torch.Tensor:
    """ReLU(raw) `[B, h, w]`, bilinearly upsampled to `size`, min-max scaled to [0, 1] per image.

    A map with no range, max − min of ReLU(raw) ≤ `rtol` · max |raw|, is all zeros, never NaN.
    Flatness is decided on the raw map, before upsampling: interpolating a constant map rounds it
    into a pattern that min-max scaling would stretch to full contrast."""
    positive = raw.clamp(min=0).float()
    span = positive.amax(dim=(1, 2)) - positive.amin(dim=(1, 2))
    flat = span <= rtol * raw.abs().float().amax(dim=(1, 2))
    up = F.interpolate(positive[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return scale_unit(up).masked_fill(flat[:, None, None], 0.0).to(raw.dtype)


def scale_unit(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each `[H, W]` map of a `[B, H, W]` batch to [0, 1]; a constant map becomes 0."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    scaled = (maps - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, scaled, torch.zeros_like(maps)).nan_to_num(0.0)


def fuse_maps(maps: Sequence[torch.Tensor], how: Literal["max", "mean"] = "max") -> torch.Tensor:
    """Fuse `[B, H, W]` maps of several layers: the element-wise max (torchcam) or mean
    (pytorch-grad-cam), rescaled to [0, 1]."""
    if not maps:
        raise ValueError("fuse_maps needs at least one map")
    stacked = torch.stack(list(maps))
    if how == "max":
        return scale_unit(stacked.amax(dim=0))
    if how == "mean":
        return scale_unit(stacked.mean(dim=0))
    raise ValueError(f"how must be 'max' or 'mean', got {how!r}")
