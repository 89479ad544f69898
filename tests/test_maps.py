"""From raw maps to displayed maps: a map with no range stays all zeros (maps.display_map)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xcam_widgets as xw
from xcam_widgets.maps import FLAT_RTOL, display_map


class FlatNet(nn.Module):
    """Replicate padding and a GAP→linear head: on a constant image every activation and gradient is
    the same at every position, so every map is constant up to float rounding."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def test_constant_raw_map_stays_zero_after_upsampling():
    """Bilinear 3×3 → 8×8 of a constant rounds into a pattern that min-max scaling stretched to {0, ½, 1}."""
    shown = display_map(torch.full((1, 3, 3), 0.1234567), (8, 8))
    assert torch.equal(shown, torch.zeros(1, 8, 8))


def test_rounding_level_pattern_is_flat_but_a_real_one_is_shown():
    base = torch.full((2, 4, 4), 3.0)
    noisy = base.clone()
    noisy[0, 1, 2] = torch.nextafter(torch.tensor(3.0), torch.tensor(4.0))  # one ulp: rounding, not evidence
    noisy[1, 1, 2] += 3.0 * 10 * FLAT_RTOL  # ten times the tolerance: a (faint) real peak
    shown = display_map(noisy, (8, 8))
    assert torch.equal(shown[0], torch.zeros(8, 8))
    assert float(shown[1].max()) == 1.0 and float(shown[1].min()) == 0.0
    # the peak is where the raw map has it: rows 2-3 and columns 4-5 of the 8×8 upsampling of cell (1, 2)
    assert shown[1, 2:4, 4:6].min() > 0.5


def test_tolerance_is_relative_to_the_map_scale():
    """The same relative pattern at any scale gives the same display (flatness has no absolute epsilon)."""
    torch.manual_seed(0)
    raw = torch.rand(1, 5, 5)
    for scale in (1e-12, 1.0, 1e12):
        torch.testing.assert_close(display_map(raw * scale, (10, 10)), display_map(raw, (10, 10)))


@pytest.mark.parametrize("method", ["layercam", "gradcam++", "scorecam"])
@pytest.mark.parametrize("value", [0.7, 0.3, -1.2])
def test_methods_on_a_constant_image_give_an_all_zero_map(method, value):
    torch.manual_seed(0)
    net = FlatNet().eval()
    res = xw.explain(net, torch.full((1, 3, 28, 28), value), "features", method=method, target=1)
    assert res.raw.shape == (1, 7, 7)
    assert (res.raw.max() - res.raw.min()) <= FLAT_RTOL * res.raw.abs().max()  # flat up to rounding
    assert torch.equal(res.map, torch.zeros_like(res.map))
