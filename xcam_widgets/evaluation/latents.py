"""Per-row channel relevance vectors ("latents"), stored by the runner beside the low-res maps.

For a row of a `LATENT_METHODS` method at a `[B, K, h, w]` layer: XGrad-CAM's channel shares
p_k = Σ_{xy ∈ R} α_k A_k(x, y), α_k = Σ A_k G_k / Σ A_k, of the row's image and explained class, over
the whole map (`"all"`) and over its hottest `TOP_FRACTION` of pixels (`"top"`), each `[K]` float16,
and each channel's peak (the flat index of A_k's maximum on the layer's grid, for prototype crops).
They depend on the image, layer and class only, so the rows of all such methods of one image × layer
share them; they come from one extra forward and backward pass per batch (`batch_latents`).

Cost per row: 2 · K float16 + K peaks (uint16 up to 65,536 grid cells): 384 bytes at K = 64 (the
shapes nets' `features.block4`; 413 B/row measured in the parts), and at K = 1,280 (EfficientNet-Lite0's
`features.head`) 5 kB of vectors and 2.5 kB of peaks (7.8 kB/row measured), against ≤ 2 kB for the
map. Time (CPU, one thread): +1-2 ms per row on the shapes nets, +38 ms on EfficientNet-Lite0, about
a third more for a run with only cheap metrics, and little beside deletion and insertion's passes.
`evaluate(..., latents=False)` stores none. On disk, per layer index `l` of the
run: `latents_l<l>_rows`, `_all`, `_top`, `_peaks` and `_grid`, in an `.npz` read without pickle (the
run's `results.latents.npz`, and beside the maps in each part file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..capture import capture
from ..methods.gradient import xgradcam
from .files import save_arrays
from .table import row_key

REGIONS: tuple[str, ...] = ("all", "top")
TOP_FRACTION = 0.1  # "top": the hottest 10% of the map's pixels
# Methods whose maps come from one capture's A and G at the layer: their rows carry the latents.
LATENT_METHODS: tuple[str, ...] = ("gradcam", "xgradcam", "gradcam++", "hirescam", "gradcam-elementwise", "layercam")
_FIELDS = ("rows", "all", "top", "peaks", "grid")
PREFIX = "latents_l"  # array names: PREFIX + layer index + "_" + field


def top_region(maps: torch.Tensor, fraction: float = TOP_FRACTION) -> torch.Tensor:
    """`[B, h, w]` maps -> bool `[B, h, w]`: each map's ceil(fraction · h · w) highest pixels (ties
    broken by position, so exactly that many)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    b, h, w = maps.shape
    count = max(1, int(np.ceil(fraction * h * w)))
    index = maps.reshape(b, -1).topk(count, dim=1).indices
    region = torch.zeros(b, h * w, dtype=torch.bool, device=maps.device)
    region.scatter_(1, index, True)
    return region.reshape(b, h, w)


def channel_relevance(
    activations: torch.Tensor, gradients: torch.Tensor, region: str = "all", fraction: float = TOP_FRACTION
) -> torch.Tensor:
    """`[B, K, h, w]` A and G -> `[B, K]` XGrad-CAM channel shares p_k = Σ_{xy ∈ R} α_k A_k(x, y).

    R is every pixel (`region="all"`: Σ_k p_k = Σ_xy M, the XGrad-CAM map M = Σ_k α_k A_k) or the
    hottest `fraction` of M's pixels (`"top"`: Σ_k p_k = Σ_{xy ∈ R} M)."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if activations.ndim != 4 or activations.shape != gradients.shape:
        raise ValueError(
            f"activations and gradients must both be [B, K, h, w]; got {tuple(activations.shape)} and "
            f"{tuple(gradients.shape)}"
        )
    contributions = xgradcam(activations.float(), gradients.float()).contributions  # α_k A_k
    if region == "all":
        return contributions.sum(dim=(2, 3))
    inside = top_region(contributions.sum(dim=1), fraction)
    return (contributions * inside[:, None]).sum(dim=(2, 3))


@dataclass
class Latents:
    """Per row (in `rows` order): `vectors[region]` `[n, K]` channel shares, `peaks` `[n, K]` the flat
    index of each channel's activation maximum on the layer's grid `grid` (h, w)."""

    rows: np.ndarray
    vectors: dict[str, np.ndarray]
    peaks: np.ndarray
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        unknown = set(self.vectors) - set(REGIONS)
        if unknown:
            raise ValueError(f"latent regions must be among {REGIONS}, got {sorted(unknown)}")

    def take(self, rows: np.ndarray) -> Latents:
        """The same for `rows` (a subset, in that order)."""
        where = {int(r): i for i, r in enumerate(self.rows)}
        missing = [int(r) for r in rows if int(r) not in where]
        if missing:
            raise ValueError(f"no latent vector for {len(missing)} rows (first: row {missing[0]})")
        index = np.array([where[int(r)] for r in rows], dtype=np.int64)
        return Latents(np.asarray(rows), {k: v[index] for k, v in self.vectors.items()}, self.peaks[index], self.grid)


def layer_latents(activations: torch.Tensor, gradients: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One layer's `[B, K, h, w]` A and G -> (float16 `[B, K]` vectors per region, `[B, K]` peaks)."""
    vectors = {r: channel_relevance(activations, gradients, r).cpu().numpy().astype(np.float16) for r in REGIONS}
    cells = activations.shape[2] * activations.shape[3]
    peaks = activations.flatten(2).argmax(dim=2).cpu().numpy()
    return vectors, peaks.astype(np.uint16 if cells <= 2**16 else np.int64)


def batch_latents(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str],
    layers: Sequence[str],
    classes: torch.Tensor,
    positions: Sequence[int],
) -> dict[int, Latents]:
    """The latents of a batch by layer index (one extra forward and backward pass): every row of a
    `LATENT_METHODS` method gets its image's vectors at its layer. A layer that `capture` cannot give
    as `[B, K, h, w]`, and a run without such a method, get none."""
    chosen = [m for m, method in enumerate(methods) if method in LATENT_METHODS]
    if not chosen or not len(positions):
        return {}
    cap = capture(model, x, list(layers), target=classes)
    out: dict[int, Latents] = {}
    for l_index, layer in enumerate(layers):
        A, G = cap.activations[layer].detach(), cap.gradients[layer].detach()
        if A.ndim != 4:
            continue
        vectors, peaks = layer_latents(A, G)
        keys = [row_key(p, m, l_index, len(methods), len(layers)) for p in positions for m in chosen]
        out[l_index] = Latents(
            np.asarray(keys, dtype=np.int64),
            {r: np.repeat(v, len(chosen), axis=0) for r, v in vectors.items()},
            np.repeat(peaks, len(chosen), axis=0),
            (int(A.shape[2]), int(A.shape[3])),
        )
    return out


class LatentStore:
    """A run's latents by layer index `l` (their `K` and grid differ by layer); `take(rows)` gives the
    `Latents` of rows of one layer, as `strategies.discover` reads them."""

    def __init__(self, layers: Mapping[int, Latents] | None = None) -> None:
        self._pieces: dict[int, list[Latents]] = {i: [latents] for i, latents in (layers or {}).items()}

    @property
    def layers(self) -> dict[int, Latents]:
        """Layer index -> its rows' `Latents` (pieces added batch by batch are joined on first use)."""
        for index, pieces in self._pieces.items():
            if len(pieces) > 1:
                self._pieces[index] = [joined_latents(pieces)]
        return {index: pieces[0] for index, pieces in self._pieces.items()}

    def __len__(self) -> int:
        return sum(len(latents.rows) for latents in self.layers.values())

    def __repr__(self) -> str:
        return f"LatentStore({len(self)} rows, layers {sorted(self._pieces)})"

    def update(self, latents: Mapping[int, Latents]) -> None:
        """Add rows per layer index (a row given again keeps its latest vectors)."""
        for index, piece in latents.items():
            self._pieces.setdefault(index, []).append(piece)

    def covers(self, rows: Sequence[int]) -> bool:
        """Whether every one of `rows` has stored latents."""
        have = {int(r) for latents in self.layers.values() for r in latents.rows}
        return all(int(r) in have for r in rows)

    def take(self, rows: Sequence[int]) -> Latents:
        """The latents of `rows`, in that order (all of one layer: a layer's K is its own)."""
        wanted = {int(r) for r in rows}
        for latents in self.layers.values():
            if wanted & {int(r) for r in latents.rows}:
                return latents.take(np.asarray(rows))
        raise ValueError(f"no latent vector for {len(wanted)} rows (first: row {min(wanted, default=-1)})")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """`latents_l<l>_rows`, `_all`, `_top`, `_peaks`, `_grid` per layer index `l`, rows ascending."""
        arrays: dict[str, np.ndarray] = {}
        for index, latents in sorted(self.layers.items()):
            order = np.argsort(latents.rows, kind="stable")
            values: tuple[np.ndarray, ...] = (
                latents.rows[order].astype(np.int64),
                latents.vectors["all"][order].astype(np.float16),
                latents.vectors["top"][order].astype(np.float16),
                latents.peaks[order],
                np.asarray(latents.grid, dtype=np.int64),
            )
            arrays.update({f"{PREFIX}{index}_{name}": value for name, value in zip(_FIELDS, values)})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LatentStore:
        """The store of `to_arrays`'s output; checks that each layer's arrays fit together."""
        indices = sorted({int(name[len(PREFIX) :].split("_")[0]) for name in arrays if name.startswith(PREFIX)})
        layers = {}
        for index in indices:
            rows, all_, top, peaks, grid = (np.asarray(arrays[f"{PREFIX}{index}_{name}"]) for name in _FIELDS)
            n = len(rows)
            if all_.ndim != 2 or all_.shape[0] != n or top.shape != all_.shape or peaks.shape != all_.shape:
                raise ValueError(f"the latents of layer {index} do not fit together: the file is damaged")
            layers[index] = Latents(rows, {"all": all_, "top": top}, peaks, (int(grid[0]), int(grid[1])))
        return cls(layers)

    @classmethod
    def concat(cls, stores: Sequence[LatentStore]) -> LatentStore:
        """One store of several (a later store's rows win where a row repeats)."""
        out = cls()
        for store in stores:
            out.update(store.layers)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the store to `path` (an `.npz` file), whole or not at all."""
        save_arrays(path, self.to_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatentStore:
        """The store saved at `path`."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays({name: data[name] for name in data.files})


def joined_latents(pieces: Sequence[Latents]) -> Latents:
    """One layer's pieces (batches, or groups of a batch) as one `Latents` (the last piece's vectors
    where a row repeats)."""
    rows = np.concatenate([p.rows for p in pieces]).astype(np.int64)
    _, last = np.unique(rows[::-1], return_index=True)
    keep = np.sort(len(rows) - 1 - last)
    return Latents(
        rows[keep],
        {r: np.concatenate([p.vectors[r] for p in pieces])[keep] for r in REGIONS},
        np.concatenate([p.peaks for p in pieces])[keep],
        pieces[-1].grid,
    )


__all__ = [
    "LATENT_METHODS",
    "REGIONS",
    "TOP_FRACTION",
    "LatentStore",
    "Latents",
    "batch_latents",
    "channel_relevance",
    "joined_latents",
    "layer_latents",
    "top_region",
]
