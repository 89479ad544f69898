"""Input noise for the smoothed methods, drawn so that an image's map never depends on its batch.

Sample i's noise comes from its own generator, seeded by the pair (seed, i) through NumPy's
`SeedSequence` (which mixes the pair into well-separated streams). It is drawn on the CPU for one
image's shape, so it is the same whatever the other images in the batch, the chunking
(`batch_size`) or the device. Its scale is per image: σ_b = noise · (max x_b − min x_b).
"""

from __future__ import annotations

import numpy as np
import torch


def noise_scale(x: torch.Tensor, noise: float) -> torch.Tensor:
    """σ per image of `x` `[B, C, H, W]`, as a fraction of that image's value range (SmoothGrad's
    convention): `[B, 1, 1, 1]`."""
    flat = x.flatten(1)
    return (noise * (flat.amax(dim=1) - flat.amin(dim=1))).view(-1, 1, 1, 1)


def sample_noise(shape: torch.Size, seed: int, sample: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of `shape` for sample `sample`, on `like`'s device and dtype."""
    state = int(np.random.SeedSequence([seed, sample]).generate_state(1, np.uint64)[0])
    generator = torch.Generator().manual_seed(state)
    return torch.randn(tuple(shape), generator=generator).to(device=like.device, dtype=like.dtype)
