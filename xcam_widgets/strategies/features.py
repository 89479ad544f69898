"""What each row is clustered by: its stored map ("spatial") or its channel relevance vector ("latent").

- spatial: the row's stored low-resolution map, ReLU, resized to the group's common grid (adaptive
  average pooling or bilinear upsampling) and normalised to sum 1. A map with no positive evidence
  (all zero after the ReLU) stays the zero vector: it is not spread into a uniform map that would pose
  as diffuse evidence, so such rows gather together; their number is reported (`empty`).
- latent: XGrad-CAM's channel shares p_k = Σ_xy α_k A_k(x, y) with α_k = Σ A_k G_k / Σ A_k, so that
  Σ_k p_k is the map's sum (conservation); "top" sums only over the map's hottest pixels, so p_k is
  channel k's share of the evidence where the map points, wherever that is in the image. For
  clustering, each vector is scaled to unit length (its direction is the strategy; its length is how
  much score it carries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# The runner stores the channel shares per row, so they are computed there (`evaluation.latents`).
from ..evaluation.latents import REGIONS, TOP_FRACTION, channel_relevance, top_region


def common_grid(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid the maps are compared on: the most frequent map shape (the largest on a tie)."""
    if not shapes:
        raise ValueError("no maps to compare")
    values, counts = np.unique(np.asarray(shapes), axis=0, return_counts=True)
    best = max(range(len(values)), key=lambda i: (counts[i], tuple(values[i])))
    return int(values[best][0]), int(values[best][1])


def spatial_features(maps: Mapping[int, np.ndarray], rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The rows' maps -> (`[n, h·w]` float32 features summing to 1 or all zero, bool `[n]` empty, grid)."""
    missing = [r for r in rows if r not in maps]
    if missing:
        raise ValueError(f"{len(missing)} rows have no stored map (first: row {missing[0]}); rerun with xw.evaluate")
    grid = common_grid([tuple(np.shape(maps[r])) for r in rows])
    out = np.zeros((len(rows), grid[0] * grid[1]), np.float32)
    for i, r in enumerate(rows):
        m = np.asarray(maps[r], dtype=np.float32)
        if m.shape != grid:  # rare (maps of one layer share a size): torch only here, to keep its threads idle
            mode = "area" if m.shape[0] >= grid[0] and m.shape[1] >= grid[1] else "bilinear"
            m = F.interpolate(torch.from_numpy(m)[None, None], size=grid, mode=mode)[0, 0].numpy()
        out[i] = np.maximum(m, 0).reshape(-1)
    total = out.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    np.divide(out, total, out=out, where=~empty[:, None])
    return out, empty, grid


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latent vectors scaled to unit length -> (features, bool empty); an all-zero vector stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    empty = norm[:, 0] <= 0
    out = np.zeros_like(vectors)
    np.divide(vectors, norm, out=out, where=~empty[:, None])
    return out, empty


__all__ = ["REGIONS", "TOP_FRACTION", "channel_relevance", "common_grid", "spatial_features", "top_region", "unit_rows"]
