"""The Gallery's table: filter, sort and page the evaluation table without touching a map.

`GalleryTable(frame)` holds one snapshot of the runner's table (one row per image × method ×
layer, keyed by the unique int `row`), ordered by `row`. Each column becomes a float64 key array
once (`columns.py`); the full order of each sort is computed once (a stable `np.argsort`, so ties
keep the `row` order and NaN goes last); a filter is a boolean mask, and a selection is the sorted
order with the mask applied, `order[mask[order]]`. Selections are cached per (Filter, Sort), so
going back to a view is a dictionary look-up. When rows arrive, build a new `GalleryTable`.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, TypeVar

import numpy as np

from ..checks import positive_int
from .columns import ColumnKeys, column_keys, error_flags, require_pandas
from .query import Filter, Sort, row_mask
from .twins import twin_positions

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, eq=False)
class Page:
    """One page of a selection. `index` is the clamped 0-based page index, `count` the number of
    pages (an empty selection has one, empty, page), `start` the offset of its first row in the
    selection, `total` the selection's length; `positions` index `table.frame`."""

    index: int
    size: int
    count: int
    start: int
    total: int
    positions: np.ndarray
    frame: pd.DataFrame

    @property
    def rows(self) -> np.ndarray:
        """The `row` keys shown, in order (the keys of the map store)."""
        return self.frame["row"].to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)


def page_bounds(total: int, size: int, index: int) -> tuple[int, int, int, int]:
    """(clamped index, page count, start, stop) for page `index` of `size` rows out of `total`:
    count = max(1, ceil(total / size)); an index below 0 becomes 0, one past the end the last page."""
    size = positive_int("page size", size)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"page index must be an int, got {index!r}")
    count = max(1, math.ceil(total / size))
    index = min(max(int(index), 0), count - 1)
    start = index * size
    return index, count, start, min(start + size, total)


class Selection:
    """The rows a (Filter, Sort) keeps, in display order: `positions` index `table.frame`."""

    def __init__(self, table: GalleryTable, filter: Filter, sort: Sort, positions: np.ndarray) -> None:
        positions.setflags(write=False)
        self.table, self.filter, self.sort, self.positions = table, filter, sort, positions

    def __len__(self) -> int:
        return len(self.positions)

    def page(self, index: int, size: int) -> Page:
        """Page `index` (clamped into range) of `size` rows."""
        index, count, start, stop = page_bounds(len(self), size, index)
        positions = self.positions[start:stop]
        return Page(index, size, count, start, len(self), positions, self.table.frame.iloc[positions])

    def frame(self) -> pd.DataFrame:
        """The selected rows, in display order, with every column."""
        return self.table.frame.iloc[self.positions]

    def to_csv(self, path: str | os.PathLike | None = None) -> str | None:
        """The selection as CSV (all columns, display order, no index): the text, or None after
        writing it to `path`."""
        return self.frame().to_csv(path, index=False)


class GalleryTable:
    """A snapshot of the evaluation table with cached column keys, sort orders and selections.
    Its caches are not locked: query it from one thread (the widget's), and hand a background
    runner's new rows over as a new table."""

    def __init__(self, frame: pd.DataFrame, *, cache_size: int = 32) -> None:
        pandas = require_pandas()
        if not isinstance(frame, pandas.DataFrame):
            raise ValueError(f"the Gallery needs the evaluation table as a DataFrame, got {type(frame).__name__}")
        if "row" not in frame.columns:
            raise ValueError(f"the evaluation table needs a 'row' column (the row key); it has {list(frame.columns)}")
        rows = frame["row"]
        if not pandas.api.types.is_integer_dtype(rows.dtype) and len(rows):
            raise ValueError(f"the 'row' column must hold integers, got dtype {rows.dtype}")
        if not rows.is_unique:
            raise ValueError(f"the 'row' column must be unique; repeated: {sorted(set(rows[rows.duplicated()]))[:5]}")
        if not rows.is_monotonic_increasing:
            frame = frame.sort_values("row", kind="stable")
        self.frame: pd.DataFrame = frame.reset_index(drop=True)
        self._cache_size = positive_int("cache_size", cache_size)
        self._keys: dict[str, ColumnKeys] = {}
        self._errors: np.ndarray | None = None
        self._twin_positions: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._orders: OrderedDict[Sort, np.ndarray] = OrderedDict()
        self._selections: OrderedDict[tuple[Filter, Sort], Selection] = OrderedDict()

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.frame.columns)

    def column(self, name: str) -> ColumnKeys:
        """The key array of column `name` (built once); a ValueError names the columns there are."""
        if name not in self._keys:
            if name not in self.frame.columns:
                raise ValueError(f"unknown column {name!r}; the table has {list(self.columns)}")
            self._keys[name] = column_keys(self.frame[name])
        return self._keys[name]

    def numeric_columns(self) -> tuple[str, ...]:
        """The columns a Range can filter and a metric summary can use."""
        return tuple(c for c in self.columns if self.column(c).numeric)

    def values(self, name: str) -> np.ndarray:
        """A column's numeric values as float64 (NaN where missing); a ValueError for text columns."""
        keys = self.column(name)
        if not keys.numeric:
            raise ValueError(f"column {name!r} is not numeric")
        return keys.keys

    def record(self, row: int) -> dict:
        """The row whose key is `row`, as a dict of its columns (a binary search: the frame is
        sorted by `row`); a ValueError when there is none."""
        keys = self.frame["row"].to_numpy()
        at = int(np.searchsorted(keys, row)) if isinstance(row, (int, np.integer)) else len(keys)
        if isinstance(row, bool) or at >= len(keys) or keys[at] != row:
            raise ValueError(f"row {row!r} is not in the table (it has {len(keys)} rows)")
        return self.frame.iloc[at].to_dict()

    def select(self, filter: Filter | None = None, sort: Sort | None = None) -> Selection:
        """The rows `filter` keeps in `sort`'s order; cached, so asking again costs nothing."""
        filter, sort = filter or Filter(), sort or Sort()
        if not isinstance(filter, Filter) or not isinstance(sort, Sort):
            raise ValueError(f"select takes a Filter and a Sort, got {filter!r} and {sort!r}")
        key = (filter, sort)
        cached = _lookup(self._selections, key)
        if cached is not None:
            return cached
        order = self._order(sort)
        mask = self.mask(filter)
        if mask is None:
            positions = order.copy()
        else:
            positions = np.flatnonzero(mask) if sort.column is None else order[mask[order]]
        return _store(self._selections, key, Selection(self, filter, sort, positions), self._cache_size)

    def mask(self, filter: Filter) -> np.ndarray | None:
        """The rows `filter` keeps as a boolean array, or None when it keeps everything."""
        mask: np.ndarray | None = None

        def narrow(keep: np.ndarray) -> None:
            nonlocal mask
            mask = keep if mask is None else mask & keep

        for column, wanted in (("class", filter.classes), ("method", filter.methods), ("layer", filter.layers)):
            if wanted is not None:
                keys = self.column(column)
                narrow(np.isin(keys.keys, keys.codes_of(wanted)))
        if filter.outcome != "all":
            correct = self.column("correct").keys if "correct" in self.frame.columns else np.full(len(self), np.nan)
            target = {"correct": 1.0, "misclassified": 0.0}.get(filter.outcome)
            narrow(np.isnan(correct) if target is None else correct == target)
        if filter.errors != "all":
            if self._errors is None:
                self._errors = error_flags(self.frame.get("error"), len(self))
            narrow(self._errors if filter.errors == "only" else ~self._errors)
        for r in filter.ranges:
            values = self.values(r.column)
            with np.errstate(invalid="ignore"):
                narrow((values >= r.low) & (values <= r.high))
        rows = row_mask(filter, self.frame["row"].to_numpy())  # before merging: a twin outside the set hides nothing
        if rows is not None:
            narrow(rows)
        if filter.merge:
            kept = np.ones(len(self), dtype=bool) if mask is None else mask
            hide = np.zeros(len(self), dtype=bool)
            for twin in filter.merge:
                merged, partner = self._twins(twin)
                hide[merged[kept[partner]]] = True
            narrow(~hide)
        return mask

    def _twins(self, twin: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray]:
        """`twin_positions` of this table, computed once per twin."""
        if twin not in self._twin_positions:
            self._twin_positions[twin] = twin_positions(self.frame, twin)
        return self._twin_positions[twin]

    def _order(self, sort: Sort) -> np.ndarray:
        """All positions in `sort`'s order: a stable argsort of the keys (negated when descending;
        -NaN is NaN, so missing values stay last), ties left in `row` order."""
        if sort.column is None:
            return np.arange(len(self))
        cached = _lookup(self._orders, sort)
        if cached is not None:
            return cached
        keys = self.column(sort.column).keys
        order = np.argsort(-keys if sort.descending else keys, kind="stable")
        order.setflags(write=False)
        return _store(self._orders, sort, order, self._cache_size)


def _lookup(cache: OrderedDict[K, V], key: K) -> V | None:
    """The cached value (now the most recent), or None."""
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _store(cache: OrderedDict[K, V], key: K, value: V, size: int) -> V:
    """Cache `value`, dropping the least recently used entries beyond `size`."""
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)
    return value
