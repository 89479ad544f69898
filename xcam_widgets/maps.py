"""From the raw map to what people see, and fusing several layers."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F


def display_map(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU(raw) `[B, h, w]`, bilinearly upsampled to `size`, min-max scaled to [0, 1] per image.
    A map with no range is all zeros, never NaN."""
    up = F.interpolate(raw.clamp(min=0)[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return scale_unit(up).to(raw.dtype)


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
