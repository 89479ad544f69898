"""Shapes with a small class cue at a random position off the object: a test of strategy discovery.

Unlike the corner watermark (`make_shortcut_shapes`), the cue sits anywhere the shapes leave room, so
its evidence moves from image to image and only features that follow it (latent channel shares) can
group the images that carry it. Two kinds, each a patch of 8 to 10 pixels whose look names a class:

- `"sticker"`: a disc of radius 4.6 px in a 10 x 10 box, in the class's colour (`STICKER_COLOURS[k]`) with a
  black rim (distance > 3.5 px from the centre); the box's corners stay background.
- `"tag"`: four vertical bars, each 2 px wide and 6 px tall, black or white; class k's bars are the
  k-th of the six codes with exactly two white bars (`tag_codes()`), so only the order of the bars,
  not the brightness, tells the classes apart.

The cue's box, grown by `CUE_GAP` pixels, never touches any shape's mask, so the masks of
`make_shapes` stay exact, and the cue is painted on `backgrounds` too (a mask is still exactly where
the image differs from its background). Positions are drawn uniformly among the boxes that fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import IMAGE_SIZE, SHAPE_CLASSES, ShapesBatch, make_shapes

CUE_KINDS: tuple[str, ...] = ("sticker", "tag")
CUE_MODES: tuple[str, ...] = ("label", "random", "none")
CUE_SIZE: dict[str, tuple[int, int]] = {"sticker": (10, 10), "tag": (6, 8)}  # (height, width) in pixels
CUE_GAP = 2  # pixels between the cue's box and any shape
CUE_SEED_OFFSET = 2_000_003  # the cues' stream, apart from the shapes' (seed) and the marks' (seed + 1_000_003)
STICKER_COLOURS = torch.tensor(
    [[1.0, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.3, 1.0], [1.0, 0.9, 0.1], [1.0, 0.2, 1.0], [0.1, 1.0, 1.0]]
)  # red, green, blue, yellow, magenta, cyan: class k's sticker


@dataclass(frozen=True)
class CueBatch(ShapesBatch):
    """Shapes with a cue: `cues[i]` is the class the cue of image i names (-1: no cue), `boxes[i]` its
    box `(x0, y0, x1, y1)` in pixels, end exclusive (all -1 without a cue)."""

    cues: Tensor  # [N] long
    boxes: Tensor  # [N, 4] long


def make_cue_shapes(
    n: int, seed: int, kind: str, cues: str = "label", fraction: float = 1.0, pair_fraction: float = 0.0
) -> CueBatch:
    """`make_shapes(n, seed, pair_fraction)` with a `kind` cue on a share `fraction` of the images, of
    class

    - `"label"`: the class of the image's (first) shape, so the cue alone gives the answer;
    - `"random"`: a class drawn uniformly, independently of the shapes: the cue carries no information;
    - `"none"`: no cue; the batch is exactly `make_shapes`'s.

    Which images carry a cue, where, and the random classes come from seed `seed + CUE_SEED_OFFSET` and
    are drawn whatever `cues` is, so the modes differ only in the cue's class.
    """
    if kind not in CUE_KINDS:
        raise ValueError(f"kind must be one of {CUE_KINDS}, got {kind!r}")
    if cues not in CUE_MODES:
        raise ValueError(f"cues must be one of {CUE_MODES}, got {cues!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    clean = make_shapes(n, seed, pair_fraction)
    g = torch.Generator().manual_seed(seed + CUE_SEED_OFFSET)
    on = torch.rand(n, generator=g) < fraction
    random_classes = torch.randint(len(SHAPE_CLASSES), (n,), generator=g)
    h, w = CUE_SIZE[kind]
    corners = _free_corners(clean.masks, h, w, g)  # [N, 2] (x0, y0)
    if cues == "label":
        classes = torch.where(on, clean.labels[:, 0], -1)
    elif cues == "random":
        classes = torch.where(on, random_classes, -1)
    else:
        classes = torch.full((n,), -1, dtype=torch.long)
    boxes = torch.cat([corners, corners + torch.tensor([w, h])], dim=1)
    boxes[classes < 0] = -1
    images, backgrounds = clean.images.clone(), clean.backgrounds.clone()
    cued = (classes >= 0).nonzero().squeeze(1)
    colours, painted = cue_patches(kind, classes[cued])
    rows = corners[cued, 1, None] + torch.arange(h)  # [M, h]
    cols = corners[cued, 0, None] + torch.arange(w)  # [M, w]
    index = (
        cued[:, None, None, None],
        torch.arange(3)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None],
    )
    for target in (images, backgrounds):
        target[index] = torch.where(painted[:, None], colours, target[index])
    return CueBatch(
        images=images, labels=clean.labels, masks=clean.masks, backgrounds=backgrounds, cues=classes, boxes=boxes
    )


def cue_patches(kind: str, classes: Tensor) -> tuple[Tensor, Tensor]:
    """The cue of each class in `classes`: colours `[M, 3, h, w]` and the painted pixels `[M, h, w]`."""
    h, w = CUE_SIZE[kind]
    m = classes.numel()
    if kind == "tag":
        bars = tag_codes()[classes].float()  # [M, 4]
        column = bars.repeat_interleave(2, dim=1)  # [M, 8]: each bar 2 px wide
        colours = column[:, None, None, :].expand(m, 3, h, w)
        return colours, torch.ones(m, h, w, dtype=torch.bool)
    y = torch.arange(h, dtype=torch.float32)[:, None] - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32)[None, :] - (w - 1) / 2
    d = x.hypot(y)  # distance of each pixel centre from the box's centre
    outer = h / 2 - 0.4  # the disc reaches the middle of each side of the box
    inner = (d <= outer - 1.1).expand(m, h, w)  # a rim about one pixel wide
    colours = torch.where(inner[:, None], STICKER_COLOURS[classes][:, :, None, None], torch.zeros(()))
    return colours, (d <= outer).expand(m, h, w)


def tag_codes() -> Tensor:
    """`[6, 4]` in {0, 1}: the six codes of four bars with exactly two white (1), in lexicographic order
    of the white bars' positions: (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)."""
    codes = torch.zeros(len(SHAPE_CLASSES), 4, dtype=torch.long)
    for k, white in enumerate(itertools.combinations(range(4), 2)):
        codes[k, list(white)] = 1
    return codes


def _free_corners(masks: Tensor, h: int, w: int, g: torch.Generator) -> Tensor:
    """`[N, 2]` top-left corners `(x0, y0)` of an `h x w` box, drawn uniformly among those whose box,
    grown by `CUE_GAP` pixels, holds no shape pixel: the shapes' union is dilated by a max pool of
    size `2 CUE_GAP + 1`, and a box is free when its sum over the dilated union (an integral image)
    is 0."""
    n = masks.shape[0]
    union = masks.any(1, keepdim=True).float()
    grown = F.max_pool2d(union, 2 * CUE_GAP + 1, stride=1, padding=CUE_GAP)[:, 0]
    integral = F.pad(grown.cumsum(1).cumsum(2), (1, 0, 1, 0))  # [N, 65, 65]
    box_sum = integral[:, h:, w:] - integral[:, :-h, w:] - integral[:, h:, :-w] + integral[:, :-h, :-w]
    free = (box_sum == 0).flatten(1).float()  # [N, (64 - h + 1) * (64 - w + 1)]
    crowded = (free.sum(1) == 0).nonzero().squeeze(1)
    if crowded.numel():
        raise ValueError(f"no room for a {h}x{w} cue beside the shapes of images {crowded.tolist()[:5]}")
    if n == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    pick = torch.multinomial(free, 1, generator=g)[:, 0]
    across = IMAGE_SIZE - w + 1
    return torch.stack([pick % across, pick // across], dim=1)


__all__ = [
    "CUE_KINDS",
    "CUE_MODES",
    "CUE_SIZE",
    "CueBatch",
    "STICKER_COLOURS",
    "cue_patches",
    "make_cue_shapes",
    "tag_codes",
]
