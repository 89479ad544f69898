"""What the Gallery shows: a filter and a sort, as small frozen (hashable) values.

Being hashable, a (Filter, Sort) pair is the key of the table's cache of selections: asking again
for the same view costs a dictionary look-up, and nothing ever recomputes a map.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np

OUTCOMES: tuple[str, ...] = ("all", "correct", "misclassified", "unlabelled")
ERRORS: tuple[str, ...] = ("all", "only", "none")
Outcome = Literal["all", "correct", "misclassified", "unlabelled"]
ErrorRows = Literal["all", "only", "none"]


@dataclass(frozen=True)
class Range:
    """Keep rows whose `column` lies in [low, high] (both inclusive); NaN never lies in a range."""

    column: str
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.column, str):
            raise ValueError(f"a range's column must be a column name, got {self.column!r}")
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"range {name} on {self.column!r} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.low > self.high:
            raise ValueError(f"range on {self.column!r} is empty: low {self.low} > high {self.high}")


@dataclass(frozen=True)
class Filter:
    """Which rows to keep; every field left at its default keeps everything.

    `classes`, `methods`, `layers`: keep rows whose `class`, `method`, `layer` is one of these
    (None: any). `outcome`: "correct" / "misclassified" keep labelled rows with `correct` True /
    False, "unlabelled" the rows without a label. `errors`: "only" keeps the rows with an error
    message, "none" those without. `ranges`: numeric ranges, all of which must hold. `rows`: keep
    only these `row` keys (None: any), e.g. a selection in the Strategies view. `merge`:
    twins (kept method, merged method, layer) whose maps are the same (`twins.py`): a row of the
    merged method is left out when its twin row of the kept method is kept.
    Sequences are stored as sorted tuples, so equal filters are equal keys.
    """

    classes: tuple[int, ...] | None = None
    methods: tuple[str, ...] | None = None
    layers: tuple[str, ...] | None = None
    outcome: Outcome = "all"
    errors: ErrorRows = "all"
    ranges: tuple[Range, ...] = field(default=())
    merge: tuple[tuple[str, str, str], ...] = field(default=())
    rows: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _choices("classes", self.classes, int))
        object.__setattr__(self, "rows", _row_keys(self.rows))
        object.__setattr__(self, "methods", _choices("methods", self.methods, str))
        object.__setattr__(self, "layers", _choices("layers", self.layers, str))
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.errors not in ERRORS:
            raise ValueError(f"errors must be one of {ERRORS}, got {self.errors!r}")
        ranges = (self.ranges,) if isinstance(self.ranges, Range) else tuple(self.ranges)
        for item in ranges:
            if not isinstance(item, Range):
                raise ValueError(f"ranges must hold Range values, got {item!r}")
        object.__setattr__(self, "ranges", tuple(sorted(set(ranges), key=lambda r: (r.column, r.low, r.high))))
        merge = tuple(tuple(twin) for twin in self.merge)
        for twin in merge:
            if len(twin) != 3 or not all(isinstance(name, str) for name in twin):
                raise ValueError(f"merge must hold (kept method, merged method, layer) names, got {twin!r}")
        object.__setattr__(self, "merge", tuple(sorted(set(merge))))


def row_mask(filter: Filter, rows: np.ndarray) -> np.ndarray | None:
    """Which of the table's `row` keys `rows` the filter's row set keeps (None: it keeps them all)."""
    if filter.rows is None:
        return None
    return np.isin(np.asarray(rows), np.asarray(filter.rows, dtype=np.int64))


@dataclass(frozen=True)
class Sort:
    """Order by `column`, ascending unless `descending`; NaN (and missing) values always come last,
    and equal values keep the order of the `row` key (a stable sort)."""

    column: str | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        if self.column is not None and not isinstance(self.column, str):
            raise ValueError(f"sort column must be a column name or None, got {self.column!r}")
        if not isinstance(self.descending, bool):
            raise ValueError(f"descending must be a bool, got {self.descending!r}")


def _row_keys(rows: Iterable[Any] | None) -> tuple[int, ...] | None:
    """None, or the row keys as a sorted tuple of distinct ints (a numpy array is taken whole)."""
    if rows is None:
        return None
    values = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
    if values.ndim != 1 or (len(values) and (values.dtype.kind not in "iu")):
        raise ValueError(f"rows must be row keys (ints), got {rows!r:.80}")
    return tuple(int(v) for v in np.unique(values))


def _choices(name: str, values: Iterable[Any] | None, kind: type) -> tuple | None:
    """None, or the values as a sorted tuple of `kind` (a bare str or int counts as one value;
    numpy integers count as ints)."""
    if values is None:
        return None
    if isinstance(values, (str, numbers.Integral)):
        values = (values,)
    wanted = numbers.Integral if kind is int else kind
    items = tuple(values)
    for value in items:
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ValueError(f"{name} must hold {kind.__name__} values, got {value!r}")
    return tuple(sorted({kind(value) for value in items}))
