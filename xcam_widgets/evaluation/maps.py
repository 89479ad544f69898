"""Small raw maps per table row, so that thumbnails come from the run, not from the network.

Each row's map is its method's raw map at the layer's resolution (no ReLU, no upsampling; the sum
over channels of the contributions), reduced by adaptive average pooling to at most `MAX_SIDE`
pixels a side and stored as float16 (values clipped to float16's finite range). Maps of
different sizes fit in one store: on disk, one flat float16 buffer with each map's row key,
offset into it and shape (`ARRAY_NAMES`), in an `.npz` file read without pickle.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .files import save_arrays

MAX_SIDE = 32
FLOAT16_MAX = float(np.finfo(np.float16).max)
ARRAY_NAMES: tuple[str, ...] = ("map_rows", "map_offsets", "map_shapes", "map_values")


def low_resolution(raw: torch.Tensor, max_side: int = MAX_SIDE) -> np.ndarray:
    """`[B, h, w]` raw maps -> `[B, min(h, max_side), min(w, max_side)]` float16 (adaptive average
    pooling: each output pixel is the mean of the input pixels it covers)."""
    raw = raw.detach().float()
    if raw.ndim == 2:  # a token layer without a grid: one row of tokens
        raw = raw[:, None]
    if raw.ndim != 3:
        raise ValueError(f"raw maps must be [B, h, w], got shape {tuple(raw.shape)}")
    size = (min(raw.shape[1], max_side), min(raw.shape[2], max_side))
    pooled = F.adaptive_avg_pool2d(raw[:, None], size)[:, 0]
    return pooled.clamp(-FLOAT16_MAX, FLOAT16_MAX).cpu().numpy().astype(np.float16)


class MapStore(Mapping[int, np.ndarray]):
    """row -> float16 `[h, w]` map (read-only arrays). Loaded stores keep the flat buffer and
    index into it, so opening 50,000 maps builds no per-map array."""

    def __init__(self, maps: Mapping[int, np.ndarray] | None = None) -> None:
        self._rows = np.zeros(0, np.int64)
        self._values = np.zeros(0, np.float16)
        self._offsets = np.zeros(1, np.int64)
        self._shapes = np.zeros((0, 2), np.int64)
        self._flat: dict[int, int] = {}  # row -> index into the flat arrays
        self._added: dict[int, np.ndarray] = {}
        if maps:
            self.update(maps)

    def update(self, maps: Mapping[int, np.ndarray]) -> None:
        """Add (or replace) maps: `[h, w]` arrays, stored as float16."""
        for row, value in maps.items():
            array = np.asarray(value, dtype=np.float16)
            if array.ndim != 2:
                raise ValueError(f"map of row {row} must be [h, w], got shape {array.shape}")
            array.setflags(write=False)
            self._added[int(row)] = array
            self._flat.pop(int(row), None)

    def __getitem__(self, row: int) -> np.ndarray:
        key = int(row)
        if key in self._added:
            return self._added[key]
        i = self._flat.get(key)
        if i is None:
            raise KeyError(f"no map for row {row}")
        h, w = self._shapes[i]
        return self._values[self._offsets[i] : self._offsets[i + 1]].reshape(h, w)

    def __len__(self) -> int:
        return len(self._flat) + len(self._added)

    def __iter__(self) -> Iterator[int]:
        yield from self._flat
        yield from self._added

    def __contains__(self, row: object) -> bool:
        return isinstance(row, (int, np.integer)) and (int(row) in self._added or int(row) in self._flat)

    def __repr__(self) -> str:
        return f"MapStore({len(self)} maps)"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The store as `ARRAY_NAMES` arrays, rows ascending: keys, offsets (one more than the
        maps), shapes `[n, 2]` and the flat float16 values."""
        if not self._added and len(self._flat) == len(self._rows) and bool(np.all(np.diff(self._rows) > 0)):
            return dict(zip(ARRAY_NAMES, (self._rows, self._offsets, self._shapes, self._values)))  # as loaded
        rows = np.array(sorted(self), dtype=np.int64)
        maps = [self[int(r)] for r in rows]
        shapes = np.array([m.shape for m in maps], dtype=np.int64).reshape(-1, 2)
        offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))]).astype(np.int64)
        values = np.concatenate([m.ravel() for m in maps]) if maps else np.zeros(0, np.float16)
        return dict(zip(ARRAY_NAMES, (rows, offsets, shapes, values.astype(np.float16))))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MapStore:
        """The store of `to_arrays`'s output (e.g. from an `.npz` file); checks that it is whole."""
        rows, offsets, shapes, values = (np.asarray(arrays[name]) for name in ARRAY_NAMES)
        n = len(rows)
        if (
            offsets.shape != (n + 1,)
            or shapes.shape != (n, 2)
            or int(offsets[-1]) != len(values)
            or (n and not np.array_equal(np.diff(offsets), shapes.prod(axis=1)))
        ):
            raise ValueError("the maps' offsets, shapes and values do not fit together: the file is damaged")
        store = cls()
        store._rows, store._offsets, store._shapes = rows.astype(np.int64), offsets, shapes
        store._values = values.astype(np.float16, copy=False)
        store._values.setflags(write=False)
        store._flat = dict(zip(rows.tolist(), range(n)))  # a row given twice: the last one
        return store

    @classmethod
    def concat(cls, stores: Sequence[MapStore]) -> MapStore:
        """One store of several (a later store's map wins where a row repeats), without a per-map copy."""
        arrays = [store.to_arrays() for store in stores]
        if not arrays:
            return cls()
        shapes = np.concatenate([a["map_shapes"] for a in arrays]).reshape(-1, 2)
        return cls.from_arrays(
            {
                "map_rows": np.concatenate([a["map_rows"] for a in arrays]),
                "map_offsets": np.concatenate([[0], np.cumsum(shapes.prod(axis=1))]).astype(np.int64),
                "map_shapes": shapes,
                "map_values": np.concatenate([a["map_values"] for a in arrays]),
            }
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the store to `path` (an `.npz` file), whole or not at all (a temporary file, then a rename)."""
        save_arrays(path, self.to_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MapStore:
        """The store saved at `path`."""
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in ARRAY_NAMES if name not in data.files]
            if missing:
                raise ValueError(f"{str(path)!r} is not a map store: it lacks {missing}")
            return cls.from_arrays({name: data[name] for name in ARRAY_NAMES})


__all__ = ["MAX_SIDE", "MapStore", "low_resolution"]
