"""xcam_widgets.sanity.similarity against scipy (Spearman) and scikit-image (SSIM) as oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from xcam_widgets.maps import display_map
from xcam_widgets.sanity.similarity import average_ranks, spearman, ssim


def test_average_ranks_match_scipy_with_ties():
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, 0.5], [1.0, 1.0, 1.0, 1.0, 2.0, 0.0]])
    expected = np.stack([scipy.stats.rankdata(row, method="average") for row in values.numpy()])
    np.testing.assert_array_equal(average_ranks(values).numpy(), expected)


def test_spearman_matches_scipy_on_raw_maps_with_ties():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 7, 7, generator=generator)
    b = a + torch.randn(4, 7, 7, generator=generator)
    a[1] = torch.randint(0, 4, (7, 7), generator=generator).float()  # heavy ties
    b[2] = -a[2]  # perfect anti-correlation
    expected = [scipy.stats.spearmanr(a[i].flatten(), b[i].flatten())[0] for i in range(4)]
    np.testing.assert_allclose(spearman(a, b).numpy(), expected, rtol=0, atol=1e-12)
    assert spearman(a, b)[2] == pytest.approx(-1.0, abs=1e-12)


def test_spearman_is_nan_for_a_constant_map_and_rejects_shape_mismatch():
    a = torch.rand(2, 5, 5)
    b = a.clone()
    b[0] = 0.0
    rho = spearman(a, b)
    assert math.isnan(float(rho[0])) and float(rho[1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes"):
        spearman(a, torch.rand(2, 5, 6))


def _ssim_oracle(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [structural_similarity(x.double().numpy(), y.double().numpy(), data_range=1.0) for x, y in zip(a, b)]


def test_ssim_matches_scikit_image_on_displayed_maps():
    """Displayed maps (ReLU, upsampled, scaled to [0, 1]) of random raw maps, as the checks compare."""
    generator = torch.Generator().manual_seed(1)
    raw_a = torch.randn(3, 7, 7, generator=generator)
    raw_b = raw_a + 0.7 * torch.randn(3, 7, 7, generator=generator)
    raw_b[2] = -raw_a[2]
    a, b = display_map(raw_a, (64, 48)), display_map(raw_b, (64, 48))
    np.testing.assert_allclose(ssim(a, b).numpy(), _ssim_oracle(a, b), rtol=0, atol=1e-10)


def test_ssim_matches_scikit_image_on_noise_and_flat_maps():
    generator = torch.Generator().manual_seed(2)
    a = torch.rand(3, 20, 31, generator=generator)
    b = torch.rand(3, 20, 31, generator=generator)
    b[1] = 0.0  # an all-zero displayed map (a map with no positive part)
    a[2] = b[2] = 0.0
    np.testing.assert_allclose(ssim(a, b).numpy(), _ssim_oracle(a, b), rtol=0, atol=1e-10)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_rejects_maps_smaller_than_its_window():
    with pytest.raises(ValueError, match="smaller than the 7x7"):
        ssim(torch.rand(1, 6, 30), torch.rand(1, 6, 30))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
