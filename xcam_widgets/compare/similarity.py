"""How alike two raw CAM maps are, on a common grid: the measures of `xw.compare`'s table.

Each measure takes two raw maps (`[h, w]`, no ReLU, as the runner stores them) and returns a value
in [-1, 1] or [0, 1], 1 for identical maps:

| name | formula |
|---|---|
| spearman | Pearson's r of the ranks of all cells (ties get their average rank) |
| cosine | <a⁺, b⁺> / (‖a⁺‖ ‖b⁺‖), a⁺ = max(a, 0): where the positive evidence lies |
| iou | \\|T_a ∩ T_b\\| / \\|T_a ∪ T_b\\|, T = the ⌈q·n/100⌉ hottest cells (q = 10: `TOP_PERCENT`) |
| ssim | skimage's structural similarity of the two maps, each min-max scaled to [0, 1] (data_range 1) |

Maps of different sizes are compared on the finer grid (the larger height and the larger width):
the coarser map is resized by bilinear interpolation (`F.interpolate`, align_corners=False), which
keeps its values and spreads each cell over the cells it covers. Where a measure is undefined (a
constant map: no ranks, no norm, no range), it is 1 if the two maps are equal and 0 otherwise, so
that a model against itself gives 1 on every row.

Measured on a pair where the truth is known (`benchmarks/bench_compare.py`, results in
`benchmarks/results/compare_cpu.md`): `shapes_shortcut` (A) against `shapes_gap` (B: same architecture,
trained without the mark), both at `features.block4` (16×16), XGrad-CAM, target the label, on 96 held-out
images with the corner mark of their label ("shapes_shortcut:96:7:label") and the same 96 images without
it ("shapes_shortcut:96:7:none"). The evidence moved on the marked ones: A's energy in the shape is 0.06
there (0.32 unmarked), B's 0.26 on both. Ranked from least to most similar, the share of marked images on
the first page (24) and the AUROC for "marked" (ties count half):

| measure | first page precision | AUROC |
|---|---|---|
| spearman | 0.29 | 0.600 |
| cosine | 0.92 | 0.880 |
| iou | 0.92 | 0.897 |
| ssim | 0.33 | 0.602 |

Spearman over the whole map does badly, as the issue expected: most cells are background, and their ranks
carry the correlation whatever the hottest cells do. Checked: Spearman over only the cells in either map's
hottest 25 % reaches 0.71 / 0.826 (the benchmark's "spearman_hot"). SSIM, which also weighs every cell's
structure, does no better. `DEFAULT_MEASURE` is "iou": it ties cosine on the first page and ranks best overall.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

TOP_PERCENT = 10.0
MEASURES: tuple[str, ...] = ("spearman", "cosine", "iou", "ssim")
DEFAULT_MEASURE = "iou"
SSIM_WINDOW = 7  # skimage's default window; smaller grids use their smaller odd side


def common_grid(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` as float64 on the finer grid (max height × max width), bilinear resizing."""
    a, b = _as_map(a, "a"), _as_map(b, "b")
    size = (max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1]))
    return _resized(a, size), _resized(b, size)


def _as_map(value: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"map {name} must be a non-empty [h, w] array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"map {name} holds NaN or infinite values")
    return array


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if array.shape == size:
        return array
    tensor = torch.from_numpy(array)[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _degenerate(a: np.ndarray, b: np.ndarray) -> float:
    """An undefined measure's value: 1 for equal maps, else 0 (module docstring)."""
    return 1.0 if np.array_equal(a, b) else 0.0


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened `values`, ties given the mean of the ranks they span."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], flat.size] - 1
    result = np.empty(flat.size)
    result[order] = (first[group] + last[group]) / 2 + 1
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ over every cell: the Pearson correlation of the two maps' ranks."""
    a, b = common_grid(a, b)
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / norm if norm > 0 else _degenerate(a, b)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the ReLU'd maps, <a⁺, b⁺> / (‖a⁺‖ ‖b⁺‖)."""
    a, b = common_grid(a, b)
    pa, pb = np.maximum(a, 0).ravel(), np.maximum(b, 0).ravel()
    norm = math.sqrt(float(pa @ pa) * float(pb @ pb))
    return float(pa @ pb) / norm if norm > 0 else _degenerate(pa, pb)


def hottest(values: np.ndarray, top: float = TOP_PERCENT) -> np.ndarray:
    """Flat indices of the ⌈top·n/100⌉ highest cells (ties: the earlier cell first)."""
    if not 0 < top <= 100:
        raise ValueError(f"top must be a percentage in (0, 100], got {top!r}")
    flat = values.ravel()
    k = math.ceil(top * flat.size / 100)
    return np.argsort(-flat, kind="stable")[:k]


def iou(a: np.ndarray, b: np.ndarray, top: float = TOP_PERCENT) -> float:
    """Intersection over union of the two maps' hottest `top` % of cells."""
    a, b = common_grid(a, b)
    ta, tb = set(hottest(a, top).tolist()), set(hottest(b, top).tolist())
    return len(ta & tb) / len(ta | tb)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (skimage) of the maps min-max scaled to [0, 1]; the window is 7 cells, or
    the grid's smaller side made odd where the grid is smaller; a side under 3 cells has no SSIM (NaN)."""
    a, b = common_grid(a, b)
    side = min(a.shape)
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 3:
        return math.nan
    sa, sb = _scaled(a), _scaled(b)
    if sa is None or sb is None:
        return _degenerate(a, b)
    from skimage.metrics import structural_similarity  # scikit-image loads only when maps are compared

    return float(structural_similarity(sa, sb, win_size=window, data_range=1.0))


def _scaled(values: np.ndarray) -> np.ndarray | None:
    """`values` min-max scaled to [0, 1]; None for a constant map."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else None


MEASURE_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "spearman": spearman,
    "cosine": cosine,
    "iou": iou,
    "ssim": ssim,
}


def similarities(a: np.ndarray, b: np.ndarray, top: float = TOP_PERCENT) -> dict[str, float]:
    """Every measure of `MEASURES` for one pair of maps (`top`: iou's percentage)."""
    values = {name: function(a, b) for name, function in MEASURE_FUNCTIONS.items() if name != "iou"}
    values["iou"] = iou(a, b, top)
    return {name: values[name] for name in MEASURES}


__all__ = [
    "DEFAULT_MEASURE",
    "MEASURES",
    "MEASURE_FUNCTIONS",
    "TOP_PERCENT",
    "common_grid",
    "cosine",
    "hottest",
    "iou",
    "ranks",
    "similarities",
    "spearman",
    "ssim",
]
