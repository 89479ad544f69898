"""Synthetic shapes on textured backgrounds, with exact per-class masks.

Each 64x64 image holds one shape, or two shapes of different classes that do not touch. A shape is
a filled region of a unit-scale geometry test (signed-distance style) applied to rotated, rescaled
pixel coordinates, so every mask is exact and drawing is vectorised over images and pixels.

Colours are chosen so that the answer is unambiguous: the background is a base colour b plus a
texture of amplitude at most 0.15, and each channel of a shape's colour lies at least 0.35 from b,
so every shape pixel differs from the background beneath it by at least 0.2 in every channel.

The shortcut variant (`make_shortcut_shapes`) adds a watermark: a small black-and-white pattern in
the top-left corner that, in the training set, names the image's class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")
IMAGE_SIZE = 64
RADIUS_RANGE = (8.0, 14.0)  # circumradius in pixels
MAX_ROTATION = math.pi / 12  # shapes are upright up to +-15 degrees
GAP = 6.0  # minimum distance in pixels between the bounding circles of two shapes
TEXTURE_AMPLITUDE = 0.15  # 0.12 pattern + 0.03 grain
MIN_CONTRAST = 0.35
MARK_SIZE = 8  # the watermark covers pixels [0, 8) x [0, 8), top-left: a 4x4 pattern of 2x2-pixel cells
MARK_MODES: tuple[str, ...] = ("label", "random", "none")
MARK_SEED_OFFSET = 1_000_003  # random marks come from seed + this, a stream apart from the shapes'


@dataclass(frozen=True)
class ShapesBatch:
    """Images with their shape labels and masks.

    `labels` is `[N, 2]`: the class of each shape, -1 where an image has only one.
    `masks[i, c]` is True on the pixels of image i covered by its shape of class c.
    """

    images: Tensor  # [N, 3, 64, 64] float in [0, 1]
    labels: Tensor  # [N, 2] long
    masks: Tensor  # [N, 6, 64, 64] bool
    backgrounds: Tensor  # [N, 3, 64, 64] float in [0, 1]: the images before any shape was drawn

    @property
    def present(self) -> Tensor:
        """`[N, 6]` multi-hot float: 1 for each class that appears in the image."""
        return self.masks.flatten(2).any(2).float()

    def __len__(self) -> int:
        return self.images.shape[0]


def make_shapes(n: int, seed: int, pair_fraction: float = 0.0) -> ShapesBatch:
    """Draw `n` images; each holds two shapes with probability `pair_fraction`, else one.

    The same `(n, seed, pair_fraction)` gives the same batch, bit for bit.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= pair_fraction <= 1.0:
        raise ValueError(f"pair_fraction must be in [0, 1], got {pair_fraction}")
    g = torch.Generator().manual_seed(seed)
    pairs = torch.rand(n, generator=g) < pair_fraction
    labels = _sample_labels(n, pairs, g)
    centres, radii = _sample_placement(n, pairs, g)
    angles = (2 * torch.rand(n, 2, generator=g) - 1) * MAX_ROTATION
    base = 0.15 + 0.7 * torch.rand(n, 3, generator=g)
    offsets = MIN_CONTRAST + (1 - 2 * MIN_CONTRAST) * torch.rand(n, 2, 3, generator=g)
    colours = torch.remainder(base[:, None] + offsets, 1.0)  # |colour - base| >= MIN_CONTRAST per channel
    backgrounds = base[:, :, None, None] + _textures(n, g)

    regions = torch.zeros(n, 2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)  # per shape slot
    for c, inside in enumerate(_UNIT_SHAPES):
        img, slot = (labels == c).nonzero(as_tuple=True)
        regions[img, slot] = inside(*_local_coords(centres[img, slot], radii[img, slot], angles[img, slot]))
    images = torch.where(regions[:, 0, None], colours[:, 0, :, None, None], backgrounds)
    images = torch.where(regions[:, 1, None], colours[:, 1, :, None, None], images)
    masks = torch.zeros(n, len(SHAPE_CLASSES), IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    img, slot = (labels >= 0).nonzero(as_tuple=True)
    masks[img, labels[img, slot]] = regions[img, slot]
    return ShapesBatch(images=images, labels=labels, masks=masks, backgrounds=backgrounds)


@dataclass(frozen=True)
class ShortcutBatch(ShapesBatch):
    """Shapes with a watermark: `marks[i]` is the class whose mark image i bears, -1 for none.

    The mark is painted on `backgrounds` too and `masks` are cleared under it, so a mask is still
    exactly where the image differs from its background.
    """

    marks: Tensor  # [N] long


def make_shortcut_shapes(n: int, seed: int, marks: str = "label", pair_fraction: float = 0.0) -> ShortcutBatch:
    """`make_shapes(n, seed, pair_fraction)` with the class-`k` watermark `mark_patterns()[k]` painted
    over pixels `[0, MARK_SIZE)` (rows and columns) of image i, where k is

    - `"label"`: the class of its (first) shape, so the mark alone gives the answer: the training set;
    - `"random"`: a class drawn uniformly, independently of the shapes (seed `seed + MARK_SEED_OFFSET`);
    - `"none"`: no mark (k = -1); the batch is exactly `make_shapes`'s.

    Outside the mark the images are `make_shapes`'s. A shape reaches into the mark's corner in about
    0.4% of images; the mark hides that part, and its mask loses it.
    """
    if marks not in MARK_MODES:
        raise ValueError(f"marks must be one of {MARK_MODES}, got {marks!r}")
    clean = make_shapes(n, seed, pair_fraction)
    if marks == "label":
        kinds = clean.labels[:, 0].clone()
    elif marks == "random":
        g = torch.Generator().manual_seed(seed + MARK_SEED_OFFSET)
        kinds = torch.randint(len(SHAPE_CLASSES), (n,), generator=g)
    else:
        kinds = torch.full((n,), -1, dtype=torch.long)
    images, backgrounds, masks = clean.images.clone(), clean.backgrounds.clone(), clean.masks.clone()
    marked = (kinds >= 0).nonzero().squeeze(1)
    pattern = mark_patterns()[kinds[marked]][:, None]  # [M, 1, 8, 8], the same in every channel
    for target in (images, backgrounds):
        target[marked, :, :MARK_SIZE, :MARK_SIZE] = pattern
    masks[marked, :, :MARK_SIZE, :MARK_SIZE] = False
    return ShortcutBatch(images=images, labels=clean.labels, masks=masks, backgrounds=backgrounds, marks=kinds)


def mark_patterns() -> Tensor:
    """`[6, 8, 8]` in {0, 1}: class c's mark is row c + 1 of the 16x16 Sylvester-Hadamard matrix
    (H[i, j] = (-1)^popcount(i & j)) laid out row by row on a 4x4 grid of 2x2-pixel cells, black
    for -1 and white for +1.

    Any two differ in exactly 8 of their 16 cells, and each is half white, so only the pattern (stripes
    or checks), not the brightness, tells them apart.
    """
    j = torch.arange(16)
    rows = torch.arange(1, len(SHAPE_CLASSES) + 1)
    parity = torch.zeros(len(rows), len(j), dtype=torch.long)
    for bit in range(4):
        parity += (rows[:, None] >> bit) & (j[None] >> bit) & 1
    cells = (1 - parity % 2).float().reshape(len(rows), 4, 4)
    return cells.repeat_interleave(2, 1).repeat_interleave(2, 2)


def _sample_labels(n: int, pairs: Tensor, g: torch.Generator) -> Tensor:
    """Two distinct classes per image; the second becomes -1 where the image holds one shape."""
    k = len(SHAPE_CLASSES)
    first = torch.randint(k, (n,), generator=g)
    second = (first + torch.randint(1, k, (n,), generator=g)) % k  # any class but the first
    return torch.stack([first, torch.where(pairs, second, -1)], dim=1)


def _sample_placement(n: int, pairs: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Centres `[N, 2, 2]` (x, y) and radii `[N, 2]` that keep shapes inside the image and apart.

    Rejection sampling over whole images: redraw those whose two bounding circles come closer than
    `GAP`. Each round is vectorised; few rounds are needed because most draws fit.
    """
    lo, hi = RADIUS_RANGE
    radii = torch.empty(n, 2)
    centres = torch.empty(n, 2, 2)
    todo = torch.arange(n)
    for _ in range(100):
        m = todo.numel()
        if m == 0:
            return centres, radii
        r = lo + (hi - lo) * torch.rand(m, 2, generator=g)
        margin = r[..., None] + 1.0  # the shape stays one pixel clear of the border
        c = margin + (IMAGE_SIZE - 1 - 2 * margin) * torch.rand(m, 2, 2, generator=g)
        radii[todo], centres[todo] = r, c
        apart = (c[:, 0] - c[:, 1]).norm(dim=1) >= r.sum(1) + GAP
        todo = todo[pairs[todo] & ~apart]
    raise RuntimeError("could not place two non-overlapping shapes")  # pragma: no cover


def _local_coords(centres: Tensor, radii: Tensor, angles: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates `[M, 64, 64]` rotated by each shape's angle and divided by its radius."""
    grid = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    r = radii[:, None, None]
    return (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r


def _circle(u: Tensor, v: Tensor) -> Tensor:
    return u.hypot(v) <= 0.85


def _square(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.68


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    """Equilateral, circumradius 1: inside all three half-planes n_k . p <= 1/2."""
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(3):
        a = math.pi / 2 + 2 * math.pi * k / 3
        inside &= u * math.cos(a) + v * math.sin(a) <= 0.5
    return inside


def _cross(u: Tensor, v: Tensor) -> Tensor:
    au, av = u.abs(), v.abs()
    return ((au <= 0.25) & (av <= 0.95)) | ((av <= 0.25) & (au <= 0.95))


def _ring(u: Tensor, v: Tensor) -> Tensor:
    d = u.hypot(v)
    return (d >= 0.5) & (d <= 0.95)


def _star(u: Tensor, v: Tensor, points: int = 5, inner: float = 0.45) -> Tensor:
    """Star polygon with outer radius 1: fold the angle into one half-sector, then test the point
    against the edge from the tip (1, 0) to the inner vertex at angle pi/points."""
    sector = 2 * math.pi / points
    phi = torch.remainder(torch.atan2(v, u), sector) - sector / 2
    phi = sector / 2 - phi.abs()  # 0 at a tip, pi/points at an inner vertex
    rho = u.hypot(v)
    px, py = rho * phi.cos(), rho * phi.sin()
    ex, ey = inner * math.cos(sector / 2) - 1.0, inner * math.sin(sector / 2)
    # cross(e, p - tip) has the origin's sign (positive) on the inside
    return ex * py - ey * (px - 1.0) >= 0


_UNIT_SHAPES = (_circle, _square, _triangle, _cross, _ring, _star)


def _textures(n: int, g: torch.Generator) -> Tensor:
    """`[N, 3, 64, 64]` zero-centred textures bounded by `TEXTURE_AMPLITUDE`.

    One kind per image, chosen at random: smooth noise (uniform noise on an 8x8 grid, upsampled
    bilinearly, so still in [-1, 1]), stripes, or a linear gradient; the last two are coloured by a
    random per-channel mix in [-1, 1]. Scaled by an amplitude <= 0.12, plus uniform grain <= 0.03.
    """
    s = IMAGE_SIZE
    kind = torch.randint(3, (n,), generator=g)
    grid = torch.linspace(-1, 1, s)
    theta = torch.rand(n, 1, 1, generator=g) * math.pi
    along = (theta.cos() * grid[None, None, :] + theta.sin() * grid[None, :, None]) / math.sqrt(2)
    freq = 2 + 6 * torch.rand(n, 1, 1, generator=g)  # cycles across the image
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    field = torch.where(kind[:, None, None] == 1, torch.sin(math.pi * math.sqrt(2) * freq * along + phase), along)
    mix = 2 * torch.rand(n, 3, 1, 1, generator=g) - 1
    texture = mix * field[:, None]
    noisy = (kind == 0).nonzero().squeeze(1)
    coarse = torch.empty(noisy.numel(), 3, 8, 8).uniform_(-1, 1, generator=g)
    up = _upsampling_matrix(8, s)
    texture[noisy] = up @ coarse @ up.T  # bilinear upsampling, done separably as two matmuls
    amplitude = 0.04 + 0.08 * torch.rand(n, 1, 1, 1, generator=g)
    grain = torch.empty(n, 3, s, s).uniform_(-0.03, 0.03, generator=g)
    return texture.mul_(amplitude).add_(grain)


def _upsampling_matrix(src: int, dst: int) -> Tensor:
    """`[dst, src]` matrix U with U @ v equal to 1-d linear interpolation of v (align_corners=False)."""
    eye = torch.eye(src)[:, None, :]  # src signals of length src
    return F.interpolate(eye, size=dst, mode="linear", align_corners=False)[:, 0, :].T
