"""Gradient methods: pure functions of the activations A and gradients G = ∂S_c/∂A, both `[B, K, h, w]`."""

from __future__ import annotations

import torch

from .parts import MapParts, safe_divide, weighted


def gradcam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """Grad-CAM (Selvaraju 2017): α_k = (1/Z) Σ_xy G_k(x, y)."""
    return weighted(A, G.mean(dim=(2, 3)))


def xgradcam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """XGrad-CAM (Fu 2020): α_k = Σ_xy A_k G_k / Σ_xy A_k; an all-zero channel gets α_k = 0.

    Then α_k Σ A_k = Σ A_k G_k, the first-order share of channel k in S_c (the two axioms)."""
    return weighted(A, safe_divide((A * G).sum(dim=(2, 3)), A.sum(dim=(2, 3))))


def gradcampp_from_moments(A: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor) -> MapParts:
    """Grad-CAM++ from gradient moments g1 = G, g2 = G², g3 = G³ (or their means over noisy copies):
    a = g2 / (2 g2 + Σ_ab A_k(a, b) · g3), with a = 0 where the denominator is 0;
    α_k = Σ_xy a · ReLU(g1)."""
    denominator = 2 * g2 + A.sum(dim=(2, 3), keepdim=True) * g3
    alpha = safe_divide(g2, denominator)
    return weighted(A, (alpha * g1.clamp(min=0)).sum(dim=(2, 3)))


def gradcampp(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """Grad-CAM++ (Chattopadhyay 2018), closed form for an exponential of the score."""
    return gradcampp_from_moments(A, G, G.pow(2), G.pow(3))


def hirescam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """HiResCAM (Draelos 2020): M = Σ_k G_k ⊙ A_k, no spatial pooling."""
    return MapParts(contributions=G * A)


def gradcam_elementwise(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """Element-wise Grad-CAM: M = Σ_k ReLU(G_k ⊙ A_k)."""
    return MapParts(contributions=(G * A).clamp(min=0))


def layercam(A: torch.Tensor, G: torch.Tensor) -> MapParts:
    """LayerCAM (Jiang 2021): M = Σ_k ReLU(G_k) ⊙ A_k."""
    return MapParts(contributions=G.clamp(min=0) * A)
