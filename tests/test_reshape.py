"""Token grids and channels-last maps: `token_grid` never guesses a non-square grid, `infer_reshape`
reads the grid from the patch embedding and the input size, and says what it saw when it cannot."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xcam_widgets as xw
from xcam_widgets.reshape import ChannelsLast, TokenGrid, grid_shape, infer_reshape, inferred_grid_shape, token_grid


def _tokens(batch: int, count: int, dim: int) -> torch.Tensor:
    return torch.arange(batch * count * dim, dtype=torch.float32).reshape(batch, count, dim)


def test_token_grid_square_by_hand():
    tokens = _tokens(2, 1 + 9, 4)
    grid = xw.token_grid()(tokens)
    assert grid.shape == (2, 4, 3, 3)
    assert torch.equal(grid[:, :, 1, 2], tokens[:, 1 + 1 * 3 + 2])  # patch (1, 2) is token 1 + 5


def test_token_grid_never_guesses_a_non_square_grid():
    """12 patches may be 3x4 or 2x6: without a height or width, that is an error, not 3x4."""
    tokens = _tokens(1, 1 + 12, 2)
    with pytest.raises(ValueError, match="leave 12, not a square grid.*height"):
        xw.token_grid()(tokens)
    grid = xw.token_grid(height=2)(tokens)
    assert grid.shape == (1, 2, 2, 6)
    assert torch.equal(grid[0, :, 1, 0], tokens[0, 1 + 6])  # row 1 starts at patch 6
    assert torch.equal(xw.token_grid(width=6)(tokens), grid)
    assert torch.equal(xw.token_grid(height=2, width=6)(tokens), grid)


def test_token_grid_bad_grids():
    with pytest.raises(ValueError, match="do not fill a grid of height 5"):
        xw.token_grid(height=5)(_tokens(1, 13, 2))
    with pytest.raises(ValueError, match="height must be a positive int"):
        xw.token_grid(height=0)
    with pytest.raises(ValueError, match="prefix_tokens must be an int >= 0"):
        xw.token_grid(prefix_tokens=-1)
    with pytest.raises(ValueError, match="expects \\[B, N, D\\]"):
        xw.token_grid()(torch.zeros(1, 2, 3, 4))


def test_channels_last_by_hand():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    grid = ChannelsLast()(x)
    assert grid.shape == (2, 5, 3, 4) and torch.equal(grid[1, 4, 2, 3], x[1, 2, 3, 4])


class TinyViT(nn.Module):
    """Patch embedding (conv p×p, stride p), `prefix` learned tokens in front, one linear mixer."""

    def __init__(self, patch: int = 8, dim: int = 6, prefix: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.prefix = nn.Parameter(torch.randn(1, prefix, dim))
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.prefix.expand(x.shape[0], -1, -1), patches], dim=1)
        return self.head(self.mix(self.norm(tokens)).mean(dim=1))


def test_infer_token_grid_non_square_with_prefix_tokens():
    """A 16x48 input with 8x8 patches is a 2x6 grid of 12 patches: never 3x4."""
    model = TinyViT(prefix=3)
    reshape = infer_reshape(model, (2, 3, 16, 48), "norm", (2, 15, 6))
    assert reshape == TokenGrid(prefix_tokens=3, height=2, width=6)
    assert grid_shape(reshape, (2, 15, 6)) == (6, 2, 6)


def test_inferred_grid_gives_the_hand_written_map():
    torch.manual_seed(0)
    model = TinyViT(prefix=1).eval()
    x = torch.randn(2, 3, 16, 48)
    inferred = infer_reshape(model, tuple(x.shape), "norm", (2, 13, 6))

    def by_hand(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(t.shape[0], 2, 6, t.shape[2]).permute(0, 3, 1, 2)

    ours = xw.explain(model, x, "norm", method="gradcam", reshape=inferred)
    hand = xw.explain(model, x, "norm", method="gradcam", reshape=by_hand)
    assert ours.raw.shape == (2, 2, 6)
    assert torch.equal(ours.raw, hand.raw) and torch.equal(ours.map, hand.map)


def test_infer_reshape_leaves_channels_first_maps_alone():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    assert infer_reshape(conv, (1, 3, 32, 48), "0", (1, 8, 16, 24)) is None
    assert infer_reshape(conv, (1, 3, 32, 48), "2", (1, 8, 16, 24)) is None
    # a conv output whose channel count happens to fit a stride is still channels-first by construction
    assert infer_reshape(conv, (1, 3, 32, 32), "0", (1, 16, 16, 16)) is None
    assert infer_reshape(conv, (1, 3, 32, 48), "1", (1, 10)) is None  # no grid at all: to_grid says so


def test_infer_reshape_channels_last():
    mlp = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Linear(8, 8), nn.GELU())
    assert infer_reshape(mlp, (1, 3, 32, 48), "1", (1, 8, 12, 8)) == ChannelsLast()
    assert infer_reshape(mlp, (1, 3, 32, 48), "2", (1, 8, 12, 8)) == ChannelsLast()  # shape alone decides


def test_infer_token_grid_after_patch_merging():
    """Swin in token form (Hugging Face): 16x24 patches merged twice are 4x6 = 24 tokens, no prefix."""
    model = TinyViT(patch=4)
    assert infer_reshape(model, (1, 3, 64, 96), "norm", (1, 24, 6)) == TokenGrid(0, 4, 6)


def test_infer_token_grid_errors_say_what_was_seen():
    model = TinyViT(patch=8)
    seen = r"outputs tokens of shape \(1, 40, 6\).*\(1, 3, 16, 48\).*\(2, 6\).*none fits.*"
    with pytest.raises(ValueError, match=seen + r"reshape=xw.token_grid\(prefix_tokens=P, height=h, width=w\)"):
        infer_reshape(model, (1, 3, 16, 48), "norm", (1, 40, 6))
    mixer = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Flatten(2), nn.Linear(16 * 16, 16 * 16))
    with pytest.raises(ValueError, match="no patch embedding.*reshape=xw.token_grid"):
        infer_reshape(mixer, (1, 3, 16, 16), "2", (1, 6, 256))
    with pytest.raises(ValueError, match="first axis is not the batch"):
        infer_reshape(model, (2, 3, 16, 48), "norm", (13, 2, 6))


def test_token_grid_is_exported():
    assert xw.token_grid is token_grid


def test_inferred_grid_shape_for_candidate_layers():
    model = TinyViT(prefix=2)
    assert inferred_grid_shape(model, (1, 3, 16, 48), "norm", (1, 14, 6)) == (6, 2, 6)
    assert inferred_grid_shape(model, (1, 3, 16, 48), "patch_embed", (1, 6, 2, 6)) == (6, 2, 6)
    assert inferred_grid_shape(model, (1, 3, 16, 48), "mix", (1, 40, 6)) is None  # tokens of no known grid
    assert inferred_grid_shape(model, (1, 3, 16, 48), "head", (1, 3)) is None
    assert grid_shape(lambda t: t.permute(0, 2, 1)[..., None], (1, 14, 6)) == (6, 14, 1)  # any reshape, on meta
