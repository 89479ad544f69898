"""Reshapes that bring a layer output to the `[B, K, h, w]` grid a CAM needs, and their inference.

Token layers output `[B, N, D]`: N = P + h·w tokens, P leading class, distillation or register tokens,
then the patches row by row (`TokenGrid`). Swin stages and the per-pixel LayerNorm/MLP inside
ConvNeXt blocks output `[B, h, w, C]` (`ChannelsLast`). `infer_reshape` finds either from the model's
patch embedding and the input size; it never guesses a factorisation of N it cannot explain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .checks import positive_int

Reshape = Callable[[torch.Tensor], torch.Tensor]

MAX_PREFIX_TOKENS = 16  # class + distillation + register tokens a model may put before its patches
MERGE_FACTORS = (2, 4, 8, 16, 32)  # token grids after 1..5 patch-merging stages (Swin in token form)
# Modules that work on the last axis: a 4-D output of theirs is channels-last when its shape allows it.
_LAST_AXIS = (nn.Linear, nn.LayerNorm)
# Modules whose 4-D output is channels-first by construction.
_CHANNELS_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
)


@dataclass(frozen=True)
class TokenGrid:
    """`[B, N, D]` → `[B, D, h, w]`: drop the first `prefix_tokens`, lay the other N − P tokens on an
    h×w grid, row by row. Give `height` and/or `width`; with neither, N − P must be a square."""

    prefix_tokens: int = 1
    height: int | None = None
    width: int | None = None

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"token_grid expects [B, N, D] tokens, got shape {tuple(tokens.shape)}")
        batch, _, dim = tokens.shape
        rows, cols = self.grid(tokens.shape[1])
        return tokens[:, self.prefix_tokens :].reshape(batch, rows, cols, dim).permute(0, 3, 1, 2)

    def grid(self, tokens: int) -> tuple[int, int]:
        """(h, w) for a layer of `tokens` tokens; a ValueError if they do not fill the grid."""
        patches = tokens - self.prefix_tokens
        rows, cols = self.height, self.width
        if rows is None and cols is None:
            side = math.isqrt(max(patches, 0))
            if patches < 1 or side * side != patches:
                raise ValueError(
                    f"{tokens} tokens less {self.prefix_tokens} prefix tokens leave {patches}, not a square grid, "
                    "and a non-square grid is never guessed: pass its height, e.g. "
                    f"xw.token_grid(prefix_tokens={self.prefix_tokens}, height=...), or use "
                    "xw.reshape.infer_reshape(model, x.shape, layer, output_shape) to read it from the model"
                )
            return side, side
        rows = rows if rows is not None else patches // cols if cols and patches > 0 and patches % cols == 0 else None
        cols = cols if cols is not None else patches // rows if rows and patches > 0 and patches % rows == 0 else None
        if rows is None or cols is None or rows * cols != patches:
            raise ValueError(
                f"{tokens} tokens less {self.prefix_tokens} prefix tokens leave {patches}, which do not fill a "
                f"grid of height {self.height} and width {self.width}"
            )
        return rows, cols

    def grid_shape(self, output_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """`(K, h, w)` of the grid made from an output of shape `[B, N, D]`."""
        return (output_shape[2], *self.grid(output_shape[1]))


@dataclass(frozen=True)
class ChannelsLast:
    """`[B, h, w, C]` → `[B, C, h, w]`."""

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim != 4:
            raise ValueError(f"ChannelsLast expects [B, h, w, C], got shape {tuple(tensor.shape)}")
        return tensor.permute(0, 3, 1, 2)

    def grid_shape(self, output_shape: tuple[int, ...]) -> tuple[int, int, int]:
        return output_shape[3], output_shape[1], output_shape[2]


def token_grid(prefix_tokens: int = 1, height: int | None = None, width: int | None = None) -> TokenGrid:
    """Reshape for a token layer: drop `prefix_tokens` leading tokens (ViT's class token; 2 for DeiT's
    class and distillation tokens; 1 + R with R register tokens) and lay the rest on a height×width
    grid. The grid must be square unless `height` or `width` is given: 12 tokens may be 3×4 or 2×6."""
    if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int) or prefix_tokens < 0:
        raise ValueError(f"prefix_tokens must be an int >= 0, got {prefix_tokens!r}")
    return TokenGrid(
        prefix_tokens,
        None if height is None else positive_int("height", height),
        None if width is None else positive_int("width", width),
    )


def grid_shape(reshape: Reshape | None, output_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The `(K, h, w)` a layer's output of `output_shape` has after `reshape` (None: no reshape)."""
    if reshape is None:
        return tuple(output_shape[1:])
    if isinstance(reshape, (TokenGrid, ChannelsLast)):
        return reshape.grid_shape(tuple(output_shape))
    return tuple(reshape(torch.empty(output_shape, device="meta")).shape[1:])


def patch_embedding(model: nn.Module, channels: int) -> nn.Conv2d | None:
    """The patch embedding: the first convolution on the `channels` input channels whose kernel
    equals its stride (> 1), such as ViT's 16×16/16 or Swin's 4×4/4 projection."""
    for module in model.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.in_channels == channels
            and module.groups == 1
            and module.kernel_size == module.stride
            and module.stride != (1, 1)
        ):
            return module
    return None


def patch_grids(model: nn.Module, conv: nn.Conv2d, height: int, width: int) -> set[tuple[int, int]]:
    """The patch grid of an input of height×width: (⌊H/p⌋, ⌊W/p⌋) for a plain convolution, also
    (⌈H/p⌉, ⌈W/p⌉) where the model pads its input to whole patches (timm's `dynamic_img_pad`)."""
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    grids = {((height + 2 * ph - kh) // kh + 1, (width + 2 * pw - kw) // kw + 1)}
    if any(getattr(module, "dynamic_img_pad", False) is True for module in model.modules()):
        grids.add((-(-height // kh), -(-width // kw)))
    return {(h, w) for h, w in grids if h > 0 and w > 0}


def declared_prefix_tokens(model: nn.Module) -> int | None:
    """The prefix token count a model declares (timm's `num_prefix_tokens`), if any."""
    for module in model.modules():
        value = getattr(module, "num_prefix_tokens", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def infer_token_grid(
    model: nn.Module, x_shape: tuple[int, ...], layer: str, output_shape: tuple[int, ...]
) -> TokenGrid:
    """The `TokenGrid` of a `[B, N, D]` layer output: N = P + h·w with (h, w) the patch grid of the input
    and 0 ≤ P ≤ MAX_PREFIX_TOKENS (or the model's declared count), or N = h·w on a grid merged 2^k
    times (P = 0). Exactly one solution, or a ValueError that says what was seen."""
    tokens = output_shape[1]
    conv = patch_embedding(model, x_shape[1])
    seen = f"layer {layer!r} outputs tokens of shape {tuple(output_shape)} for an input of shape {tuple(x_shape)}"
    if output_shape[0] != x_shape[0]:
        raise ValueError(f"{seen}: the first axis is not the batch; pass reshape= to bring it to [B, K, h, w]")
    if conv is None:
        raise ValueError(
            f"{seen}, and the model has no patch embedding (a convolution whose kernel equals its stride) to "
            "read the token grid from; pass reshape=xw.token_grid(prefix_tokens=P, height=h) with the layer's grid"
        )
    declared = declared_prefix_tokens(model)
    solutions = set()
    for rows, cols in patch_grids(model, conv, x_shape[2], x_shape[3]):
        prefix = tokens - rows * cols
        if prefix == declared or (declared is None and 0 <= prefix <= MAX_PREFIX_TOKENS):
            solutions.add(TokenGrid(prefix, rows, cols))
        merged = ((-(-rows // f), -(-cols // f)) for f in MERGE_FACTORS)  # ceil: odd sizes are padded to merge
        solutions.update(TokenGrid(0, h, w) for h, w in merged if h * w == tokens)
    if len(solutions) != 1:
        grids = sorted(patch_grids(model, conv, x_shape[2], x_shape[3]))
        found = "several grids fit: " + ", ".join(map(str, sorted(solutions, key=str))) if solutions else "none fits"
        raise ValueError(
            f"{seen}; the patch embedding ({conv.kernel_size[0]}×{conv.kernel_size[1]}, stride "
            f"{conv.stride[0]}) gives the patch grid(s) {grids}, {found}. Pass "
            "reshape=xw.token_grid(prefix_tokens=P, height=h, width=w) with the layer's grid"
        )
    return solutions.pop()


def is_channels_last(module: nn.Module, x_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> bool:
    """Whether a 4-D output is `[B, h, w, C]`: (h, w) follows the input's shape by one stride and the
    channels-first reading does not, or the module works on the last axis (Linear, LayerNorm) and
    the channels-last reading fits. A module that is channels-first by construction never is."""
    if isinstance(module, _CHANNELS_FIRST):
        return False
    height, width = x_shape[2], x_shape[3]
    last = _same_stride(height, width, output_shape[1], output_shape[2])
    first = _same_stride(height, width, output_shape[2], output_shape[3])
    return last and (not first or isinstance(module, _LAST_AXIS))


def _same_stride(height: int, width: int, rows: int, cols: int) -> bool:
    """Whether one integer stride s takes height×width to rows×cols (each ⌊·/s⌋ or ⌈·/s⌉)."""
    low = max(1, min(height // (rows + 1), width // (cols + 1)))
    high = max(height // max(rows - 1, 1), width // max(cols - 1, 1)) + 1
    return any(
        rows in (height // s, -(-height // s)) and cols in (width // s, -(-width // s)) for s in range(low, high + 1)
    )


def infer_reshape(
    model: nn.Module, x_shape: tuple[int, ...], layer: str, output_shape: tuple[int, ...]
) -> Reshape | None:
    """The reshape that brings layer `layer`'s output (`output_shape`, for an input of `x_shape`
    `[B, C, H, W]`) to `[B, K, h, w]`: a `TokenGrid` for `[B, N, D]` tokens, `ChannelsLast` for a
    `[B, h, w, C]` map, None for a `[B, K, h, w]` map or an output that has no grid at all. Raises a
    ValueError for tokens whose grid cannot be read from the model."""
    x_shape, output_shape = tuple(x_shape), tuple(output_shape)
    if len(output_shape) == 3:
        return infer_token_grid(model, x_shape, layer, output_shape)
    if len(output_shape) == 4 and is_channels_last(model.get_submodule(layer), x_shape, output_shape):
        return ChannelsLast()
    return None


def inferred_grid_shape(
    model: nn.Module, x_shape: tuple[int, ...], layer: str, output_shape: tuple[int, ...]
) -> tuple[int, ...] | None:
    """`(K, h, w)` of a layer's output after `infer_reshape`; None for an output with no grid, such as
    logits, or tokens whose grid cannot be read from the model (candidate layers skip those)."""
    if len(output_shape) not in (3, 4):
        return None
    try:
        reshape = infer_reshape(model, x_shape, layer, output_shape)
    except ValueError:
        return None
    return grid_shape(reshape, tuple(output_shape))
