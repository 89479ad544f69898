"""The user's own per-row columns (`Gallery.add_column`): checked once, kept by `row`, and joined
onto every snapshot of the run's table, so that they sort, filter and export like the runner's
columns and follow rows that arrive later (a row without a value gets NaN)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .columns import require_pandas

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


class ExtraColumns:
    """Extra numeric columns by `row` key. `version` grows with every column added."""

    def __init__(self) -> None:
        self.columns: dict[str, pd.Series] = {}
        self.version = 0

    def add(self, name: str, values: Any, frame: pd.DataFrame) -> None:
        """Add column `name`: `values` is a Series indexed by `row` (rows of `frame` it lacks get
        NaN), or a sequence with one value per row of `frame` in its order (by `row`). The values
        must be numbers (bool, int, float; NaN or None for missing). A ValueError names what is
        wrong, and nothing is added then."""
        pd = require_pandas()
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a column name must be a non-empty str, got {name!r}")
        if name in frame.columns or name in self.columns:
            raise ValueError(f"column {name!r} exists already; the table has {list(frame.columns)}")
        rows = frame["row"].to_numpy(dtype=np.int64)
        if isinstance(values, pd.Series):
            series = self._by_row(name, values, rows)
        elif isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, (str, bytes)):
            if len(values) != len(rows):
                raise ValueError(
                    f"column {name!r} has {len(values)} values for {len(rows)} rows; give one per row in "
                    "table order, or a Series indexed by row"
                )
            series = pd.Series(_numbers(name, list(values)), index=rows, dtype=np.float64)
        else:
            raise TypeError(
                f"column {name!r}: values must be a Series indexed by row or a sequence, got {type(values).__name__}"
            )
        self.columns[name] = series
        self.version += 1

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with the extra columns joined on `row` (NaN where a row has no value)."""
        if not self.columns:
            return frame
        rows = frame["row"]
        return frame.assign(**{name: series.reindex(rows).to_numpy() for name, series in self.columns.items()})

    @staticmethod
    def _by_row(name: str, values: pd.Series, rows: np.ndarray) -> pd.Series:
        index = values.index
        if not index.is_unique:
            raise ValueError(f"column {name!r}: its index repeats rows {sorted(set(index[index.duplicated()]))[:5]}")
        unknown = index.difference(rows)
        if len(unknown):
            raise ValueError(f"column {name!r}: rows {list(unknown[:5])} are not in the table (index it by `row`)")
        numbers_by_row = _numbers(name, values.tolist())
        return require_pandas().Series(numbers_by_row, index=index.astype(np.int64), dtype=np.float64)


def _numbers(name: str, values: list) -> list[float]:
    """The values as floats (None -> NaN); a ValueError names the first value that is not a number."""
    out = []
    for i, value in enumerate(values):
        if value is None:
            out.append(np.nan)
        elif isinstance(value, (numbers.Real, np.bool_)):
            out.append(float(value))
        else:
            raise ValueError(f"column {name!r} must hold numbers; value {i} is {value!r}")
    return out


__all__ = ["ExtraColumns"]
