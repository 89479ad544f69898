"""Faithfulness and localisation metrics against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xcam_widgets import metrics as M


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


class LinearTwoClass(nn.Module):
    """logits = [Σ x, 0], so p_0 = sigmoid(Σ x) and p_1 = 1 − p_0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


class MeanProbability(nn.Module):
    """logits = [log m, log(1 − m)] with m the mean of x, so p_0 = m exactly (x in [0, 1])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([m.log(), (1 - m).log()], dim=1)


# ---------------------------------------------------------------- Average Drop / Increase

QUARTER = torch.full((2, 1, 4, 4), 0.25)  # Σ x = 4: Y_0 = sigmoid(4)
CORNER = torch.zeros(4, 4)
CORNER[:2, :2] = 1.0  # keeps 4 pixels: Σ x·map = 1
HALF = torch.full((4, 4), 0.5)  # Σ x·map = 2


def test_average_drop_and_increase_by_hand():
    drop, increase = M.average_drop_increase(LinearTwoClass(), QUARTER, torch.stack([CORNER, HALF]), [0, 1])
    y0, o0 = sigmoid(4), sigmoid(1)  # class 0 loses confidence on the masked image
    y1, o1 = 1 - sigmoid(4), 1 - sigmoid(2)  # class 1 gains it: drop 0, increase
    expected = torch.tensor([(y0 - o0) / y0, 0.0])
    torch.testing.assert_close(drop, expected, rtol=1e-5, atol=1e-7)
    assert increase.tolist() == [o0 > y0, o1 > y1] == [False, True]


def test_average_drop_blend_baseline_is_pixel_space_product():
    """baseline b: the input is b + map·(x − b); the corner keeps 4·0.25, the rest becomes −1."""
    drop, increase = M.average_drop_increase(LinearTwoClass(), QUARTER[:1], CORNER[None], 0, baseline=-1.0)
    y, o = sigmoid(4), sigmoid(1 - 12)
    torch.testing.assert_close(drop, torch.tensor([(y - o) / y]), rtol=1e-5, atol=1e-7)
    assert not increase.item()
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    torch.testing.assert_close(M.pixel_space_baseline(mean, std), torch.full((3, 1, 1), -2.0))


def test_average_drop_identity_map_is_zero_and_batching_does_not_matter():
    ones = torch.ones(2, 4, 4)
    drop, increase = M.average_drop_increase(LinearTwoClass(), QUARTER, ones, 0)
    assert drop.tolist() == [0.0, 0.0] and increase.tolist() == [False, False]
    maps = torch.stack([CORNER, HALF])
    whole = M.average_drop_increase(LinearTwoClass(), QUARTER, maps, [0, 1])
    chunked = M.average_drop_increase(LinearTwoClass(), QUARTER, maps, [0, 1], batch_size=1)
    torch.testing.assert_close(whole[0], chunked[0])


# ---------------------------------------------------------------- deletion / insertion

STRIP = torch.tensor([0.4, 0.3, 0.2, 0.1]).view(1, 1, 1, 4)  # a 1x4 image, mean 0.25
ORDER_MAP = torch.tensor([0.1, 0.9, 0.5, 0.3]).view(1, 1, 4)  # most salient: pixels 1, 2, 3, then 0


def trapezoid(values: list[float]) -> float:
    step = 1 / (len(values) - 1)
    return sum(step * (a + b) / 2 for a, b in zip(values, values[1:]))


def test_auc_of_a_staircase():
    fractions = torch.linspace(0, 1, 5)
    curve = torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.0]])
    torch.testing.assert_close(M.auc(fractions, curve), torch.tensor([0.25 * (1 + 0.75 + 0.5 + 0.25)]))


def test_deletion_curve_and_auc_by_hand():
    fractions, curve = M.causal_curve(MeanProbability(), STRIP, ORDER_MAP, 0, "deletion", steps=4)
    expected = [0.25, 0.175, 0.125, 0.1, 0.0]  # means after zeroing pixels 1, 2, 3, 0 in turn
    torch.testing.assert_close(fractions, torch.tensor([0, 0.25, 0.5, 0.75, 1]))
    torch.testing.assert_close(curve, torch.tensor([expected]))
    auc = M.deletion_auc(MeanProbability(), STRIP, ORDER_MAP, 0, steps=4)
    torch.testing.assert_close(auc, torch.tensor([trapezoid(expected)]))
    assert trapezoid(expected) == pytest.approx(0.13125)


def test_insertion_auc_by_hand_with_zero_baseline():
    auc = M.insertion_auc(MeanProbability(), STRIP, ORDER_MAP, 0, steps=4, baseline="zeros")
    expected = [0.0, 0.075, 0.125, 0.15, 0.25]  # pixels 1, 2, 3, 0 copied onto zeros
    torch.testing.assert_close(auc, torch.tensor([trapezoid(expected)]))
    assert trapezoid(expected) == pytest.approx(0.11875)


def test_coarse_steps_change_several_pixels_at_once():
    """Two steps of two pixels: 0.25 → 0.125 → 0; steps beyond the pixel count are clamped."""
    auc = M.deletion_auc(MeanProbability(), STRIP, ORDER_MAP, 0, steps=2)
    torch.testing.assert_close(auc, torch.tensor([trapezoid([0.25, 0.125, 0.0])]))
    many = M.deletion_auc(MeanProbability(), STRIP, ORDER_MAP, 0, steps=1000)
    torch.testing.assert_close(many, M.deletion_auc(MeanProbability(), STRIP, ORDER_MAP, 0, steps=4))


def test_insertion_onto_the_blur_of_a_constant_image_is_flat():
    """The default insertion baseline is the blurred image; a constant image blurs to itself."""
    x = torch.full((2, 3, 8, 8), 0.3)
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(M.blur(x), x)
    torch.testing.assert_close(M.insertion_auc(MeanProbability(), x, maps, 0, steps=5), torch.full((2,), 0.3))


def test_chunks_and_ties_give_the_same_curves():
    """Chunking the B·(S+1) inputs changes nothing; tied map values keep row-major order."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 6, 6, generator=g)
    maps = (torch.rand(3, 6, 6, generator=g) * 4).round() / 4  # many ties
    one = M.causal_curve(MeanProbability(), x, maps, 0, "deletion", steps=9, batch_size=1)[1]
    big = M.causal_curve(MeanProbability(), x, maps, 0, "deletion", steps=9, batch_size=64)[1]
    torch.testing.assert_close(one, big)
    flat = M.causal_curve(MeanProbability(), x, torch.zeros(3, 6, 6), 0, "deletion", steps=6)[1]
    rows = torch.stack([x[:, :, r:].sum((1, 2, 3)) / x[0].numel() for r in range(7)], 1)  # row by row
    torch.testing.assert_close(flat, rows)


# ---------------------------------------------------------------- pointing game and energy


def block_mask() -> torch.Tensor:
    mask = torch.zeros(1, 7, 7, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    return mask


def peak_at(row: int, col: int, size: int = 7) -> torch.Tensor:
    maps = torch.full((1, size, size), 0.1)
    maps[0, row, col] = 1.0
    return maps


@pytest.mark.parametrize(
    "row, col, hit0, hit1",
    [(3, 3, True, True), (3, 5, False, True), (1, 1, False, True), (5, 5, False, True), (3, 6, False, False)],
)
def test_pointing_game_tolerance(row, col, hit0, hit1):
    """One pixel outside the mask (also diagonally: Chebyshev distance) needs tolerance 1."""
    assert M.pointing_game(peak_at(row, col), block_mask(), tolerance=0).item() is hit0
    assert M.pointing_game(peak_at(row, col), block_mask(), tolerance=1).item() is hit1


def test_pointing_game_default_tolerance_scales_15px_at_224():
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 20:30, 20:30] = True
    assert M.pointing_game(peak_at(25, 33, 64), mask).item()  # 4 px right: round(15·64/224) = 4
    assert not M.pointing_game(peak_at(25, 34, 64), mask).item()


def test_pointing_game_flat_map_and_empty_mask_miss():
    mask = block_mask()
    assert not M.pointing_game(torch.zeros(1, 7, 7), mask, tolerance=3).item()
    assert not M.pointing_game(torch.ones(1, 7, 7), mask, tolerance=0).item()
    assert not M.pointing_game(peak_at(3, 3), torch.zeros(1, 7, 7, dtype=torch.bool), tolerance=2).item()


def test_energy_in_mask_by_hand_and_zero_map():
    maps = torch.tensor([[[1.0, 0.5], [0.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[True, False], [False, True]]] * 2)
    energy = M.energy_in_mask(maps, masks)
    torch.testing.assert_close(energy, torch.tensor([0.75, 0.0]))
    assert not energy.isnan().any()


def test_maps_of_another_size_are_resized_to_the_masks():
    small = torch.ones(1, 2, 2)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    torch.testing.assert_close(M.energy_in_mask(small, mask), torch.tensor([0.5]))


# ---------------------------------------------------------------- bad arguments


def test_bad_arguments_are_named():
    net, x, maps = MeanProbability(), STRIP, ORDER_MAP
    with pytest.raises(ValueError, match="steps"):
        M.deletion_auc(net, x, maps, 0, steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        M.insertion_auc(net, x, maps, 0, batch_size=0)
    with pytest.raises(ValueError, match="out of range"):
        M.deletion_auc(net, x, maps, 2)
    with pytest.raises(ValueError, match="baseline"):
        M.deletion_auc(net, x, maps, 0, baseline="black")
    with pytest.raises(ValueError, match="maps"):
        M.average_drop_increase(net, x, torch.ones(2, 1, 4), 0)
    with pytest.raises(ValueError, match="classes"):
        M.average_drop_increase(net, x, maps, [0, 1])
    with pytest.raises(ValueError, match="tolerance"):
        M.pointing_game(peak_at(3, 3), block_mask(), tolerance=-1)
    with pytest.raises(ValueError, match="mode"):
        M.causal_curve(net, x, maps, 0, "both")
