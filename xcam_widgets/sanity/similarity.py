"""How alike two maps are: Spearman rank correlation of raw maps, SSIM of displayed maps.

Both follow Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018), which reports rank
correlation and SSIM between the original and the randomised explanation. Both return one value
per image of a batch, computed in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of each row of `[B, N]`; tied values share the mean of their ranks (as
    `scipy.stats.rankdata(method="average")`)."""
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for row, out in zip(values, ranks):
        order = torch.argsort(row)
        _, group, counts = torch.unique_consecutive(row[order], return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).to(torch.float64)
        out[order] = ((ends - counts + 1 + ends) / 2)[group]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ of each pair of maps in two `[B, ...]` batches: the Pearson correlation of
    their average ranks, ρ = Σ (r_a − r̄_a)(r_b − r̄_b) / sqrt(Σ (r_a − r̄_a)² Σ (r_b − r̄_b)²).
    NaN where either map is constant (ρ is undefined there)."""
    if a.shape != b.shape:
        raise ValueError(f"maps to compare have shapes {tuple(a.shape)} and {tuple(b.shape)}")
    ra = average_ranks(a.detach().flatten(1))
    rb = average_ranks(b.detach().flatten(1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denominator = ((ra * ra).sum(dim=1) * (rb * rb).sum(dim=1)).sqrt()
    rho = (ra * rb).sum(dim=1) / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, rho, torch.full_like(rho, math.nan))


def box_means(t: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of every `window`×`window` patch of `[..., H, W]` (where it fits), from a summed-area
    table: one pass whatever the window, accurate to float64 rounding for maps in [0, 1]."""
    table = F.pad(t, (1, 0, 1, 0)).cumsum(-2).cumsum(-1)
    w = window
    sums = table[..., w:, w:] - table[..., :-w, w:] - table[..., w:, :-w] + table[..., :-w, :-w]
    return sums / (w * w)


def ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 7, k1: float = 0.01, k2: float = 0.03
) -> torch.Tensor:
    """Mean structural similarity (Wang et al., IEEE TIP 2004) of each pair of `[B, H, W]` maps.

    Over every `window`×`window` patch (uniform weights, every position where the patch fits):
        SSIM = (2 μ_a μ_b + C1)(2 σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2)),
    with sample (co)variances (divided by n − 1, n = window²), C1 = (k1 L)², C2 = (k2 L)² and
    L = `data_range`; the result is the mean over patches. These are the defaults of
    `skimage.metrics.structural_similarity(a, b, data_range=L)`.
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two [B, H, W] batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < window:
        raise ValueError(f"maps of size {tuple(a.shape[1:])} are smaller than the {window}x{window} SSIM window")
    x = a.detach().double()
    y = b.detach().double()
    mu_x, mu_y, xx, yy, xy = box_means(torch.stack([x, y, x * x, y * y, x * y], dim=1), window).unbind(dim=1)
    n = window * window
    unbiased = n / (n - 1)
    var_x = unbiased * (xx - mu_x * mu_x)
    var_y = unbiased * (yy - mu_y * mu_y)
    cov = unbiased * (xy - mu_x * mu_y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.mean(dim=(1, 2))
