"""Projection on the first principal component (Eigen-CAM and principal-component smoothing)."""

from __future__ import annotations

import torch

from .parts import MapParts


def first_component(X: torch.Tensor) -> torch.Tensor:
    """Per-channel shares of the projection of X (`[B, K, h, w]`) on its first principal component.

    The Z = h·w positions are the samples and the K channels the features. With X̄ the channel-
    centred matrix and v the first right singular vector, the projection is X̄ v; channel k's share
    is v_k X̄_k, so the shares sum to the projection. SVD's sign is arbitrary: it is fixed so that
    the projection correlates positively with the channel-mean map, the region where X is large.
    """
    batch, channels, height, width = X.shape
    samples = X.reshape(batch, channels, height * width).transpose(1, 2).float()  # [B, Z, K]
    centred = samples - samples.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    v = vh[:, 0, :]  # [B, K]
    shares = centred * v[:, None, :]
    projection = shares.sum(dim=2)  # [B, Z]
    agreement = (projection * samples.mean(dim=2)).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(shares.dtype)
    shares = shares * sign[:, None, None]
    return shares.transpose(1, 2).reshape(batch, channels, height, width).to(X.dtype)


def eigencam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """Eigen-CAM (Muhammad 2020): first principal component of A; it ignores the class (and G)."""
    return MapParts(contributions=first_component(A))


def eigengradcam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """EigenGrad-CAM: first principal component of G ⊙ A."""
    return MapParts(contributions=first_component(G * A))
