"""Reshape transforms that bring a token layer's output `[B, N, D]` to a `[B, D, h, w]` grid."""
from __future__ import annotations

import math
from typing import Callable

import torch


def token_grid(prefix_tokens: int = 1, height: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Drop `prefix_tokens` leading tokens (ViT's class token) and lay the rest on an h×w grid,
    square unless `height` is given. The token features become the channels."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"token_grid expects [B, N, D] tokens, got shape {tuple(tokens.shape)}")
        batch, count, dim = tokens.shape
        patches = count - prefix_tokens
        rows = height or math.isqrt(patches)
        if rows < 1 or patches % rows:
            raise ValueError(f"{patches} patch tokens do not fill a grid with {rows} rows")
        return tokens[:, prefix_tokens:].reshape(batch, rows, patches // rows, dim).permute(0, 3, 1, 2)

    return reshape
