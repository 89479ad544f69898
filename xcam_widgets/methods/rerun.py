"""Methods that need the model itself, not only A and G: channel drops and Ablation-CAM re-run the
network after the layer, Smooth Grad-CAM++ re-runs it on noisy copies, CAM reads its linear head.
(The Score-CAM family, which re-runs it on masked inputs, is in `masked.py`.)"""

from __future__ import annotations

import torch

from ..capture import capture
from ..split import UntraceableError, trace_tail
from .context import MethodContext
from .gradient import gradcampp_from_moments
from .noise import noise_scale, sample_noise
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
    that supports the class still gets α_k > 0); where S_c = 0 the drops are used unscaled.
    `batch_size`: ablated copies per pass of the network after the layer."""
    drops = channel_drops(ctx, batch_size)
    scale = ctx.capture.score.abs().to(drops.dtype)
    return weighted(ctx.A, drops / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None])


def cam(ctx: MethodContext) -> MapParts:
    """CAM (Zhou 2016): α_k = W_ck, the final linear layer's weight; needs a GAP→linear head."""
    if ctx.head is None:
        try:
            trace_tail(ctx.model, ctx.layer)
        except UntraceableError as error:
            raise ValueError(
                f"CAM must check that layer {ctx.layer!r} feeds global average pooling and then a linear layer, "
                f"but {error}; use 'gradcam', which equals CAM up to a constant factor on such a head"
            ) from None
        raise ValueError(
            f"CAM needs layer {ctx.layer!r} to feed global average pooling and then a linear layer; "
            "use a method such as 'gradcam' or 'xgradcam' for this layer"
        )
    if ctx.classes is None:
        raise ValueError("CAM needs a class-index target, not a callable")
    return weighted(ctx.A, ctx.head.weight.detach()[ctx.classes].to(ctx.A.dtype))


def smoothgradcampp(
    ctx: MethodContext, batch_size: int = 32, samples: int = 8, noise: float = 0.15, seed: int = 0
) -> MapParts:
    """Smooth Grad-CAM++ (Omeiza 2019): Grad-CAM++ on A of the clean image with the gradient
    moments G, G², G³ averaged over `samples` noisy copies x_b + σ_b ε_i (see `noise.py`: ε_i
    depends only on (`seed`, i), σ_b = `noise` × image b's value range). `batch_size`: noisy
    copies per forward and backward pass."""
    x, A = ctx.x, ctx.A
    sigma = noise_scale(x, noise)
    # Copy row r = b * samples + i is image b with noise ε_i.
    epsilon = torch.cat([sample_noise(x.shape[1:], seed, i, x)[None] for i in range(samples)])
    copies = (x[:, None] + sigma[:, None] * epsilon[None]).flatten(0, 1)
    owners = torch.arange(x.shape[0], device=x.device).repeat_interleave(samples)
    moments = [torch.zeros_like(A) for _ in range(3)]
    for start in range(0, copies.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        G = capture(
            ctx.model, copies[rows], ctx.layer, scorer=ctx.capture.scorer, rows_of=owners[rows], reshape=ctx.reshape
        ).gradients[ctx.layer]
        for power, total in enumerate(moments, start=1):
            total.index_add_(0, owners[rows], G.pow(power))
        ctx.report(min(start + batch_size, copies.shape[0]), copies.shape[0])
    g1, g2, g3 = (total / samples for total in moments)
    return gradcampp_from_moments(A, g1, g2, g3)
