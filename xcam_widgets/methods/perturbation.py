"""Methods that re-run (part of) the network: channel drops, Score-CAM family, Smooth Grad-CAM++, CAM."""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from ..capture import capture
from .context import MethodContext
from .gradient import gradcampp_from_moments
from .parts import MapParts, weighted


def channel_drops(ctx: MethodContext, batch_size: int) -> torch.Tensor:
    """True drops d_k = S_c(A) − S_c(A with A_k := 0), `[B, K]`.

    On a GAP→linear head S_c = W_c · mean_xy(A) + b, so d_k = W_ck · mean_xy(A_k) exactly.
    Otherwise only the tail after the layer is re-run, on chunks of `batch_size` ablated copies.
    """
    A = ctx.A
    if ctx.head is not None and ctx.classes is not None:
        return ctx.head.weight.detach()[ctx.classes].to(A.dtype) * A.mean(dim=(2, 3))
    batch, channels = A.shape[:2]
    drops = torch.empty(batch, channels, dtype=A.dtype, device=A.device)
    with torch.no_grad():
        for image in range(batch):
            for start in range(0, channels, batch_size):
                ablated = torch.arange(start, min(start + batch_size, channels), device=A.device)
                acts = A[image].expand(len(ablated), *A.shape[1:]).to(ctx.x.dtype, copy=True)
                acts[torch.arange(len(ablated), device=A.device), ablated] = 0
                scores = ctx.score_rows(ctx.tail(acts, image), image)
                drops[image, ablated] = ctx.capture.score[image] - scores.to(A.dtype)
                ctx.report(image * channels + int(ablated[-1]) + 1, batch * channels)
    return drops


def ablationcam(ctx: MethodContext, batch_size: int = 64) -> MapParts:
    """Ablation-CAM (Desai 2020): α_k = (S_c − S_c^(k)) / |S_c|.

    Dividing by |S_c| instead of S_c keeps the sign meaningful for a negative score (a channel
    that supports the class still gets α_k > 0); where S_c = 0 the drops are used unscaled."""
    drops = channel_drops(ctx, batch_size)
    scale = ctx.capture.score.abs().to(drops.dtype)
    return weighted(ctx.A, drops / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None])


def cam(ctx: MethodContext) -> MapParts:
    """CAM (Zhou 2016): α_k = W_ck, the final linear layer's weight; needs a GAP→linear head."""
    if ctx.head is None:
        raise ValueError(
            f"CAM needs layer {ctx.layer!r} to feed global average pooling and then a linear layer; "
            "use a method such as 'gradcam' or 'xgradcam' for this layer"
        )
    if ctx.classes is None:
        raise ValueError("CAM needs a class-index target, not a callable")
    return weighted(ctx.A, ctx.head.weight.detach()[ctx.classes].to(ctx.A.dtype))


def upsampled_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Channel maps `[n, h, w]` → masks `[n, 1, H, W]`, bilinearly upsampled and min-max scaled
    to [0, 1]; a constant channel gives an all-zero mask."""
    masks = F.interpolate(acts[:, None].float(), size=size, mode="bilinear", align_corners=False)
    low = masks.amin(dim=(2, 3), keepdim=True)
    span = masks.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (masks - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


Perturb = Callable[[torch.Tensor, torch.Tensor], Iterator[torch.Tensor]]


def _mask_scores(ctx: MethodContext, batch_size: int, perturb: Perturb) -> torch.Tensor:
    """s_k = mean over perturb(x_b, mask_k) of S_c, for every image b and channel k: `[B, K]`."""
    A, x = ctx.A, ctx.x
    batch, channels = A.shape[:2]
    scores = torch.empty(batch, channels, dtype=torch.float32, device=A.device)
    with torch.no_grad():
        for image in range(batch):
            for start in range(0, channels, batch_size):
                stop = min(start + batch_size, channels)
                masks = upsampled_masks(A[image, start:stop], x.shape[2:]).to(x.dtype)
                samples = [ctx.score_rows(ctx.model(inputs), image).float() for inputs in perturb(x[image : image + 1], masks)]
                scores[image, start:stop] = torch.stack(samples).mean(dim=0)
                ctx.report(image * channels + stop, batch * channels)
    return scores


def _score_weights(ctx: MethodContext, batch_size: int, perturb: Perturb) -> MapParts:
    """α = softmax over channels of the masked-input scores (Score-CAM family)."""
    return weighted(ctx.A, torch.softmax(_mask_scores(ctx, batch_size, perturb), dim=1).to(ctx.A.dtype))


def scorecam(ctx: MethodContext, batch_size: int = 32) -> MapParts:
    """Score-CAM (Wang 2020): s_k = S_c(x ⊙ mask_k), α = softmax(s)."""
    return _score_weights(ctx, batch_size, lambda x, masks: iter([x * masks]))


def _noise_scale(x: torch.Tensor, noise: float) -> float:
    """Noise σ as a fraction of the input's value range (SmoothGrad's convention)."""
    return noise * float(x.max() - x.min())


def sscam(ctx: MethodContext, batch_size: int = 32, samples: int = 8, noise: float = 0.2, seed: int = 0) -> MapParts:
    """SS-CAM (Wang 2020): s_k = mean_i S_c(x ⊙ mask_k + ε_i), ε_i ~ N(0, σ²)."""
    generator = torch.Generator(device=ctx.x.device).manual_seed(seed)
    sigma = _noise_scale(ctx.x, noise)

    def perturb(x: torch.Tensor, masks: torch.Tensor) -> Iterator[torch.Tensor]:
        for _ in range(samples):
            masked = x * masks
            yield masked + sigma * torch.randn(masked.shape, generator=generator, device=x.device, dtype=x.dtype)

    return _score_weights(ctx, batch_size, perturb)


def iscam(ctx: MethodContext, batch_size: int = 32, samples: int = 10) -> MapParts:
    """IS-CAM (Naidu 2020): s_k = (1/n) Σ_{i=1..n} S_c(x ⊙ (i/n)·mask_k), the mask integrated from 0."""
    return _score_weights(ctx, batch_size, lambda x, masks: (x * masks * (i / samples) for i in range(1, samples + 1)))


def smoothgradcampp(
    ctx: MethodContext, batch_size: int = 32, samples: int = 8, noise: float = 0.15, seed: int = 0
) -> MapParts:
    """Smooth Grad-CAM++ (Omeiza 2019): Grad-CAM++ on A of the clean image with the gradient
    moments G, G², G³ averaged over `samples` noisy copies x + ε, ε ~ N(0, σ²)."""
    x, A = ctx.x, ctx.A
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sigma = _noise_scale(x, noise)
    copies = x.repeat_interleave(samples, dim=0)
    copies = copies + sigma * torch.randn(copies.shape, generator=generator, device=x.device, dtype=x.dtype)
    owners = torch.arange(x.shape[0], device=x.device).repeat_interleave(samples)
    moments = [torch.zeros_like(A) for _ in range(3)]
    for start in range(0, copies.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        G = capture(ctx.model, copies[rows], ctx.layer, scorer=ctx.capture.scorer, rows_of=owners[rows],
                    reshape=ctx.reshape).gradients[ctx.layer]
        for power, total in enumerate(moments, start=1):
            total.index_add_(0, owners[rows], G.pow(power))
        ctx.report(min(start + batch_size, copies.shape[0]), copies.shape[0])
    g1, g2, g3 = (total / samples for total in moments)
    return gradcampp_from_moments(A, g1, g2, g3)
