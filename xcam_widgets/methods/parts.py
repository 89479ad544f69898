"""The common result of every method: per-channel contributions, and weights when they exist."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MapParts:
    """`contributions[b, k]` is channel k's share of the raw map; `weights` are the α_k, or None."""

    contributions: torch.Tensor
    weights: torch.Tensor | None = None


def weighted(activations: torch.Tensor, weights: torch.Tensor) -> MapParts:
    """Channel-weight methods: contributions_k = α_k · A_k."""
    return MapParts(contributions=weights[:, :, None, None] * activations, weights=weights)


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and exactly 0 where the denominator is exactly 0 (no epsilon that
    would bias small values)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)
