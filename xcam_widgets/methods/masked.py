"""The Score-CAM family: each channel's map, upsampled and scaled to [0, 1], masks the input, and
the class scores of the masked inputs give the weights α = softmax(s) over the channels.

`top_channels=N` is an opt-in approximation: per image, only the N channels with the largest
activation mass Σ_xy ReLU(A_k) are scored (N masked passes instead of K), and the others get weight
0. Where the softmax is flat, the exact map is dominated by the channels with the most mass; the
measured alternative, ranking by Σ_xy ReLU(G_k ⊙ A_k), was less faithful. It is exact when N ≥ K;
benchmarks/results/scorecam_cpu.md gives its speed and its fidelity to the exact map.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .context import MethodContext
from .noise import noise_scale, sample_noise
from .parts import MapParts, weighted

# (image index, that image `[1, C, H, W]`, masks `[n, 1, H, W]`) -> batches of inputs whose scores are averaged
Perturb = Callable[[int, torch.Tensor, torch.Tensor], Iterator[torch.Tensor]]


def upsampled_masks(acts: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Channel maps `[n, h, w]` → masks `[n, 1, H, W]`, bilinearly upsampled and min-max scaled
    to [0, 1]; a constant channel gives an all-zero mask."""
    masks = F.interpolate(acts[:, None].float(), size=size, mode="bilinear", align_corners=False)
    low = masks.amin(dim=(2, 3), keepdim=True)
    span = masks.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (masks - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


def scored_channels(ctx: MethodContext, top_channels: int | None) -> torch.Tensor:
    """`[B, N]` indices of the channels to score per image, in increasing order: every channel, or
    the `top_channels` with the largest Σ_xy ReLU(A_k) (ties: the lower index)."""
    batch, channels = ctx.A.shape[:2]
    if top_channels is None or top_channels >= channels:
        return torch.arange(channels, device=ctx.A.device).expand(batch, channels)
    mass = ctx.A.clamp(min=0).sum(dim=(2, 3))
    order = mass.argsort(dim=1, descending=True, stable=True)
    return order[:, :top_channels].sort(dim=1).values


def _mask_scores(ctx: MethodContext, chosen: torch.Tensor, batch_size: int, perturb: Perturb) -> torch.Tensor:
    """s[b, j] = mean over perturb(b, x_b, mask of channel chosen[b, j]) of S_c: `[B, N]`."""
    A, x = ctx.A, ctx.x
    batch, count = chosen.shape
    scores = torch.empty(batch, count, dtype=torch.float32, device=A.device)
    with torch.no_grad():
        for image in range(batch):
            for start in range(0, count, batch_size):
                stop = min(start + batch_size, count)
                masks = upsampled_masks(A[image, chosen[image, start:stop]], x.shape[2:]).to(x.dtype)
                samples = [
                    ctx.score_rows(ctx.model(inputs), image).float()
                    for inputs in perturb(image, x[image : image + 1], masks)
                ]
                scores[image, start:stop] = torch.stack(samples).mean(dim=0)
                ctx.report(image * count + stop, batch * count)
    return scores


def _score_weights(ctx: MethodContext, batch_size: int, top_channels: int | None, perturb: Perturb) -> MapParts:
    """α = softmax over the scored channels of their masked-input scores; 0 for the others."""
    chosen = scored_channels(ctx, top_channels)
    softmax = torch.softmax(_mask_scores(ctx, chosen, batch_size, perturb), dim=1).to(ctx.A.dtype)
    weights = torch.zeros(ctx.A.shape[:2], dtype=ctx.A.dtype, device=ctx.A.device)
    return weighted(ctx.A, weights.scatter_(1, chosen, softmax))


def scorecam(ctx: MethodContext, batch_size: int = 32, top_channels: int | None = None) -> MapParts:
    """Score-CAM (Wang 2020): s_k = S_c(x ⊙ mask_k), α = softmax(s).

    `batch_size`: masked inputs per forward pass; `top_channels`: see the module docstring."""
    return _score_weights(ctx, batch_size, top_channels, lambda image, x, masks: iter([x * masks]))


def sscam(
    ctx: MethodContext,
    batch_size: int = 32,
    samples: int = 8,
    noise: float = 0.2,
    seed: int = 0,
    top_channels: int | None = None,
) -> MapParts:
    """SS-CAM (Wang 2020): s_k = mean_i S_c(x ⊙ mask_k + σ ε_i), ε_i ~ N(0, 1) drawn from
    (`seed`, i) alone and shared by every channel, σ = `noise` × the image's value range."""
    sigma = noise_scale(ctx.x, noise)
    epsilon = [sample_noise(ctx.x.shape[1:], seed, i, ctx.x) for i in range(samples)]

    def perturb(image: int, x: torch.Tensor, masks: torch.Tensor) -> Iterator[torch.Tensor]:
        masked = x * masks
        return (masked + sigma[image] * eps for eps in epsilon)

    return _score_weights(ctx, batch_size, top_channels, perturb)


def iscam(ctx: MethodContext, batch_size: int = 32, samples: int = 10, top_channels: int | None = None) -> MapParts:
    """IS-CAM (Naidu 2020): s_k = (1/n) Σ_{i=1..n} S_c(x ⊙ (i/n)·mask_k), the mask integrated from 0."""

    def perturb(image: int, x: torch.Tensor, masks: torch.Tensor) -> Iterator[torch.Tensor]:
        return (x * masks * (i / samples) for i in range(1, samples + 1))

    return _score_weights(ctx, batch_size, top_channels, perturb)
