"""The comparison table: two runs' tables joined on `row` (the image position × method), with similarities.

Columns, in order:

| column | meaning |
|---|---|
| row, image, method | the runs' key (both runs share it: one layer each), the image id, the method |
| layer_a, layer_b | each model's CAM layer |
| class, class_name | the class both maps explain (A's row) |
| label | the true class, -1 where unknown |
| predicted_a, predicted_b | each model's top-1 class |
| score_a, score_b | each model's logit of `class` |
| similarity | the chosen measure (`similarity.DEFAULT_MEASURE` unless `measure=`) |
| spearman, cosine, iou, ssim | every measure (`similarity`); NaN where either run has no map |
| confidence_a/_b, correct_a/_b | each model's top-1 probability and label == predicted |
| <metric>_a, <metric>_b, <metric>_delta | each metric column of the runs (energy, deletion, ...), delta = b − a |
| error_a, error_b | each run's `error` ("" when fine) |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..evaluation.table import ERROR_COLUMN
from .similarity import MEASURES, similarities

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SHARED: tuple[str, ...] = ("row", "image", "method", "class", "class_name", "label")
PER_MODEL: tuple[str, ...] = ("layer", "predicted", "score", "confidence", "correct", ERROR_COLUMN)


def metric_columns(table: pd.DataFrame) -> list[str]:
    """A run's value columns other than the key, the prediction and the score: its metrics."""
    return [c for c in table.columns if c not in (*SHARED, *PER_MODEL)]


def join_runs(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    maps_a: Mapping[int, np.ndarray],
    maps_b: Mapping[int, np.ndarray],
    measure: str,
    top: float,
) -> pd.DataFrame:
    """The comparison table (module docstring) of the rows both runs hold, sorted by `row`."""
    import pandas as pd

    if table_a["row"].duplicated().any() or table_b["row"].duplicated().any():
        raise ValueError("each run must hold one row per image × method (one layer per model)")
    a = table_a.rename(columns={c: f"{c}_a" for c in table_a.columns if c not in SHARED})
    keep_b = [c for c in table_b.columns if c not in SHARED or c == "row"]
    b = table_b[keep_b].rename(columns={c: f"{c}_b" for c in keep_b if c != "row"})
    joined = a.merge(b, on="row", how="inner").sort_values("row", kind="stable").reset_index(drop=True)
    values = [
        similarities(maps_a[row], maps_b[row], top) if row in maps_a and row in maps_b else dict.fromkeys(MEASURES)
        for row in joined["row"].tolist()
    ]
    measured = pd.DataFrame(values, columns=list(MEASURES), index=joined.index, dtype=float)
    metrics = [c for c in metric_columns(table_a) if c in table_b.columns]
    out = joined[["row", "image", "method", "layer_a", "layer_b", "class", "class_name", "label"]].copy()
    out["predicted_a"], out["predicted_b"] = joined["predicted_a"], joined["predicted_b"]
    out["score_a"], out["score_b"] = joined["score_a"], joined["score_b"]
    out["similarity"] = measured[measure]
    for name in MEASURES:
        out[name] = measured[name]
    for name in ("confidence", "correct"):
        out[f"{name}_a"], out[f"{name}_b"] = joined[f"{name}_a"], joined[f"{name}_b"]
    for name in metrics:
        first, second = joined[f"{name}_a"], joined[f"{name}_b"]
        out[f"{name}_a"], out[f"{name}_b"] = first, second
        numeric = [pd.to_numeric(column, errors="coerce").astype(float) for column in (first, second)]
        out[f"{name}_delta"] = numeric[1] - numeric[0]  # 0/1 columns (increase, pointing): -1, 0 or 1
    out["error_a"], out["error_b"] = joined[f"{ERROR_COLUMN}_a"], joined[f"{ERROR_COLUMN}_b"]
    return out


__all__ = ["join_runs", "metric_columns"]
