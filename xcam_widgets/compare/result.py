"""`Comparison`: what `xw.compare` returns, the joined table and each model's run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..evaluation import EvaluationResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class Comparison:
    """`table`: one row per image × method that both runs hold (columns: `compare.table`); `run_a`,
    `run_b`: each model's `EvaluationResult` (their tables, summaries and maps); `measure`: the
    measure in the `similarity` column; `complete`: False where a run stopped early (`stop`);
    `paths`: with `out`, the files of A's run, B's run and the comparison table."""

    table: pd.DataFrame
    run_a: EvaluationResult
    run_b: EvaluationResult | None
    measure: str
    complete: bool = True
    paths: dict[str, Path] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def maps_a(self) -> dict[int, np.ndarray]:
        """Model A's low-resolution raw maps (float16 `[h, w]`, at most 32×32) by the table's `row`."""
        return _maps_of(self.run_a, self.table)

    @property
    def maps_b(self) -> dict[int, np.ndarray]:
        """Model B's low-resolution raw maps by the table's `row`."""
        return _maps_of(self.run_b, self.table)

    def ranked(self, measure: str | None = None) -> pd.DataFrame:
        """The table from the least similar row to the most (by `measure`, default the `similarity`
        column): where the evidence moved comes first; rows without maps come last."""
        column = "similarity" if measure is None else measure
        if column not in self.table.columns:
            raise ValueError(f"no column {column!r} in the comparison table")
        return self.table.sort_values([column, "row"], kind="stable", na_position="last")


def _maps_of(run: EvaluationResult | None, table: pd.DataFrame) -> dict[int, np.ndarray]:
    if run is None:
        return {}
    return {row: run.maps[row] for row in table["row"].tolist() if row in run.maps}


__all__ = ["Comparison"]
