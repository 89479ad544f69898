"""Segmentation target: one class's logits summed (or averaged) over a pixel mask."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .rows import OutputTarget, RowsOf, class_index, rows_of_spec

Reduction = Literal["sum", "mean"]


def segmentation_logits(output: Any) -> torch.Tensor:
    """The `[B, C, H, W]` per-pixel logits of a model output: a tensor, a dict's `"out"` (torchvision),
    a `.logits` attribute (Hugging Face), or the first item of a tuple or list."""
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, dict) and "out" in output:
        logits = output["out"]
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        logits = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        logits = output[0]
    else:
        raise TypeError(
            f"cannot find segmentation logits in a model output of type {type(output).__name__}; "
            "expected a [B, C, H, W] tensor or a dict with key 'out'"
        )
    if logits.ndim != 4:
        raise ValueError(f"segmentation logits have shape {tuple(logits.shape)}, expected [B, C, H, W]")
    return logits


def as_mask(mask: Any) -> torch.Tensor:
    """A mask as a float `[n, H, W]` tensor of finite weights >= 0 (bool masks become 0/1)."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor or NumPy array of shape [H, W] or [B, H, W], got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or 0 in mask.shape:
        raise ValueError(f"mask must have shape [H, W] or [B, H, W], got {tuple(mask.shape)}")
    mask = mask.float()
    if not torch.isfinite(mask).all() or (mask < 0).any():
        raise ValueError("mask values must be finite and >= 0 (a bool mask, or per-pixel weights)")
    return mask


@dataclass(frozen=True, eq=False)
class SegmentationTarget(OutputTarget):
    """S = Σ_ij m_ij · y_c,ij ("sum"), or that divided by Σ_ij m_ij ("mean"), where y_c are the logits
    of class `category` and m the mask.

    `mask`: `[H, W]` for every image or `[B, H, W]`, at the resolution of the model's output; bool or
    non-negative weights. None: the pixels the clean pass predicts as `category` (argmax over classes),
    fixed from then on. Works on `[B, C, H, W]` outputs and on torchvision's `{"out": ...}`.
    """

    category: int
    mask: torch.Tensor | np.ndarray | None = None
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        class_index("category", self.category)
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.mask is not None:
            object.__setattr__(self, "mask", as_mask(self.mask))

    def bind(self, output: Any) -> SegmentationTarget:
        if self.mask is not None:
            return self
        logits = self._class_logits(output)[1]
        predicted = (logits.detach().argmax(dim=1) == self.category).float()
        empty = (predicted.sum(dim=(1, 2)) == 0).nonzero()
        if len(empty):
            raise ValueError(
                f"class {self.category} is predicted at no pixel of image {int(empty[0])}; "
                "pass mask= to choose the pixels, or pick a class present in the prediction"
            )
        return dataclasses.replace(self, mask=predicted)

    def __call__(self, output: Any, rows_of: RowsOf = None) -> torch.Tensor:
        bound = self.bind(output)
        scores, logits = bound._class_logits(output)
        assert isinstance(bound.mask, torch.Tensor)  # bind fills it
        if bound.mask.shape[1:] != scores.shape[1:]:
            raise ValueError(
                f"mask is {tuple(bound.mask.shape[1:])} but the model's segmentation output is "
                f"{tuple(logits.shape)}: give the mask at the output's resolution [H, W]"
            )
        mask = rows_of_spec(bound.mask.to(scores.device), scores.shape[0], rows_of, "mask").to(scores.dtype)
        total = (scores * mask).sum(dim=(1, 2))
        if self.reduction == "sum":
            return total
        area = mask.sum(dim=(1, 2))
        if (area == 0).any():
            raise ValueError("reduction='mean' needs a mask with at least one non-zero pixel in every image")
        return total / area

    def _class_logits(self, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(`[B, H, W]` logits of the category, the full `[B, C, H, W]` logits)."""
        logits = segmentation_logits(output)
        if self.category >= logits.shape[1]:
            raise ValueError(
                f"category {self.category} is out of range: the model has {logits.shape[1]} classes "
                f"(0..{logits.shape[1] - 1})"
            )
        return logits[:, self.category], logits
