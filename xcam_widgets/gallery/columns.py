"""One evaluation-table column as a float64 key array: what sorting and filtering work on.

Numbers stay numbers; booleans become 0/1; text becomes its rank among the column's distinct
values in sorted order, so that sorting the keys sorts the text. Anything missing is NaN, which
`np.argsort` puts last. Built once per column and reused by every sort and filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_NUMBER_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "decimal", "empty"})


def require_pandas() -> Any:
    """The pandas module, or an ImportError that says how to get it (the Gallery's table needs it)."""
    try:
        import pandas
    except ImportError as err:  # pragma: no cover - pandas is in the dev extra
        raise ImportError("the Gallery needs pandas: pip install pandas (or xcam-widgets[dev])") from err
    return pandas


@dataclass(frozen=True)
class ColumnKeys:
    """`keys`: float64 per row (NaN = missing). `labels`: for a text column, the sorted distinct
    values, `keys` holding indices into it; None for a numeric or boolean column."""

    name: str
    keys: np.ndarray
    labels: np.ndarray | None = None

    @property
    def numeric(self) -> bool:
        return self.labels is None

    def codes_of(self, values: tuple) -> np.ndarray:
        """The keys that stand for `values` (values the column does not hold are left out)."""
        if self.labels is None:
            return np.asarray(values, dtype=np.float64)
        position = {label: i for i, label in enumerate(self.labels.tolist())}
        return np.asarray([position[v] for v in values if v in position], dtype=np.float64)


def column_keys(series: pd.Series) -> ColumnKeys:
    """The key array of one column (see the module docstring)."""
    pd = require_pandas()
    name = str(series.name)
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return ColumnKeys(name, _read_only(series.to_numpy(dtype=np.float64, na_value=np.nan)))
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in _NUMBER_KINDS:
        return ColumnKeys(name, _read_only(pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)))
    if kind == "boolean":
        keys = series.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else np.nan)
        return ColumnKeys(name, _read_only(keys.to_numpy(dtype=np.float64)))
    present = series.notna().to_numpy()
    codes, labels = pd.factorize(series[present].astype(str), sort=True)
    keys = np.full(len(series), np.nan)
    keys[present] = codes
    return ColumnKeys(name, _read_only(keys), _read_only(np.asarray(labels, dtype=object)))


def error_flags(series: pd.Series | None, length: int) -> np.ndarray:
    """True where the row carries an error message; a missing column or empty/NaN cell means none
    (a CSV reads an empty message back as NaN)."""
    if series is None:
        return np.zeros(length, dtype=bool)
    text = series.fillna("").astype(str).str.strip()
    return _read_only(text.ne("").to_numpy(dtype=bool))


def _read_only(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values
