"""The shapes benchmark through any model's preprocess: images as PIL, masks in the input's frame.

A preprocess takes a PIL image (the documented contract); only the shapes nets' own preprocess also
takes the `[B, 3, 64, 64]` tensors directly, and keeps that exact path. For another model the
images go through its preprocess one by one as 8-bit PIL images, and each ground-truth mask goes
through the same preprocess as a white-on-black image, so that it lands on the pixels the model
sees (resize, crop, padding). A preprocessed mask pixel m is read back as the fraction
(m − b) / (w − b) of the way from a black image's b to a white image's w, averaged over the
channels where w ≠ b (any per-channel affine normalisation cancels), and is in the mask when that
fraction exceeds 1/2. A pixel where black and white give the same value (constant padding) is in
no mask.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image


def shapes_pil(pixels: torch.Tensor) -> Image.Image:
    """A shapes image (float `[3, H, W]` in [0, 1]) as an 8-bit RGB PIL image."""
    array = (pixels.detach().cpu().permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(array)


def through_preprocess(
    images: torch.Tensor, masks: torch.Tensor, preprocess: Callable[[Image.Image], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(x, masks)` for shapes `images` `[n, 3, H, W]` and their `masks` `[n, K, H, W]` (bool):
    x `[n, C, h, w]` from `preprocess` on each image as PIL, masks `[n, K, h, w]` in x's frame."""
    size = (images.shape[-1], images.shape[-2])
    black = preprocess(Image.new("RGB", size, (0, 0, 0))).detach().float()
    white = preprocess(Image.new("RGB", size, (255, 255, 255))).detach().float()
    span = white - black
    usable = span.abs() > 1e-6
    channels = usable.sum(dim=0)
    x = torch.stack([preprocess(shapes_pil(image)) for image in images])

    def framed(mask: torch.Tensor) -> torch.Tensor:
        pil = Image.fromarray(mask.cpu().numpy().astype(np.uint8) * 255).convert("RGB")
        out = preprocess(pil).detach().float()
        fraction = torch.where(usable, (out - black) / torch.where(usable, span, torch.ones_like(span)), 0.0)
        return (fraction.sum(dim=0) > 0.5 * channels) & (channels > 0)

    framed_masks = torch.stack([torch.stack([framed(m) for m in per_image]) for per_image in masks])
    return x, framed_masks


__all__ = ["shapes_pil", "through_preprocess"]
