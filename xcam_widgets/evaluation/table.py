"""The evaluation table: its columns, the row key, the summary with 95% intervals, the output paths.

Summary: one row per method × layer × value column with `n` (non-missing values), `mean`, `ci_low`
and `ci_high`. The 95% interval is the normal approximation mean ± 1.96·s/√n for continuous
columns, and Wilson's score interval for the 0/1 columns (`correct`, `increase`, `pointing`, and
`error`, the share of rows whose image could not be read), which stays inside [0, 1] and keeps
its coverage near 0 and 1. Both are closed-form and deterministic; with n < 30 the normal
interval is somewhat too narrow (no t correction).

Metrics: `METRICS` are the accepted names; `DEFAULT_METRICS`, all but the sanity checks, are what
`metrics=None` runs (with `pointing` and `energy` only where masks exist). The sanity checks
(`SANITY_METRICS`, `xw.sanity_check` per image: `sanity_columns`) are asked for by name because
each costs several more passes per image and layer. Their columns, Spearman's ρ of raw maps:
`mprt`, the map once every parameterised layer after the CAM layer is randomised (cascading)
against the original map; `random_logit`, the mean over 3 random other classes of their map
against the row's class's map. Low values pass (the map depends on the weights, on the class).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

METRICS: tuple[str, ...] = (
    "diagnostics",
    "average_drop",
    "deletion",
    "insertion",
    "pointing",
    "energy",
    "mprt",
    "random_logit",
)
LOCALISATION: tuple[str, ...] = ("pointing", "energy")
SANITY_METRICS: tuple[str, ...] = ("mprt", "random_logit")
DEFAULT_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m not in SANITY_METRICS)
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "diagnostics": ("conservation_error", "sensitivity_error", "sensitivity_r"),
    "average_drop": ("average_drop", "increase"),
    "deletion": ("deletion",),
    "insertion": ("insertion",),
    "pointing": ("pointing",),
    "energy": ("energy",),
    "mprt": ("mprt",),
    "random_logit": ("random_logit",),
}
# Identify a row; not summarised. `row` is the key: (position · methods + method) · layers + layer.
KEY_COLUMNS: tuple[str, ...] = ("row", "image", "method", "layer", "class", "class_name", "label", "predicted")
ID_COLUMNS: tuple[str, ...] = ("row", "image", "method", "layer", "class", "class_name", "score")
PREDICTION_COLUMNS: tuple[str, ...] = ("label", "predicted", "confidence", "correct")
ERROR_COLUMN = "error"
TEXT_COLUMNS: tuple[str, ...] = ("class_name", ERROR_COLUMN)  # may hold empty strings
NAME_COLUMNS: tuple[str, ...] = ("image", "method", "layer")  # strings (or ints) that are never missing
# pandas' default NA strings (`read_csv`'s `na_values`), for the numeric columns only.
NA_STRINGS: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
BINARY_COLUMNS: tuple[str, ...] = ("correct", "increase", "pointing", ERROR_COLUMN)
SUMMARY_COLUMNS: tuple[str, ...] = ("method", "layer", "metric", "n", "mean", "ci_low", "ci_high")
Z_95 = 1.959963984540054


class RunPaths(NamedTuple):
    """Every file of a run with `out`: `results.csv` -> `results.summary.csv`, `results.maps.npz`,
    `results.meta.json`, the per-batch folder `results.parts/` and `results.latents.npz`."""

    table: Path
    summary: Path
    maps: Path
    meta: Path
    parts: Path
    latents: Path


def run_paths(out: str | os.PathLike) -> RunPaths:
    """The paths of a run written to `out` (".csv" is appended when `out` has another suffix)."""
    path = Path(out)
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    side = path.with_name
    return RunPaths(
        path,
        side(path.stem + ".summary.csv"),
        side(path.stem + ".maps.npz"),
        side(path.stem + ".meta.json"),
        side(path.stem + ".parts"),
        side(path.stem + ".latents.npz"),
    )


def output_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(table path, summary path): `results.csv` -> `results.csv`, `results.summary.csv`."""
    paths = run_paths(out)
    return paths.table, paths.summary


def table_columns(metrics: Sequence[str], has_masks: bool = True) -> list[str]:
    """The table's columns, in order, for the chosen metrics."""
    metric_columns = [
        column
        for metric in METRICS
        if metric in metrics and (has_masks or metric not in LOCALISATION)
        for column in COLUMNS[metric]
    ]
    return [*ID_COLUMNS, *PREDICTION_COLUMNS, *metric_columns, ERROR_COLUMN]


def row_key(position: int, method: int, layer: int, methods: int, layers: int) -> int:
    """The `row` of image `position` × method index × layer index: unique, and the same in every
    engine, batch size and resumed run. A complete table is sorted by it and its index equals it."""
    return (position * methods + method) * layers + layer


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per method × layer × value column: n (non-missing), mean, and the 95% interval
    (Wilson for the 0/1 columns, normal approximation otherwise; module docstring)."""
    pd = pandas()
    value_columns = [c for c in table.columns if c not in KEY_COLUMNS]
    records = []
    for (method, layer), group in table.groupby(["method", "layer"], sort=False):
        for column in value_columns:
            values = failed(group) if column == ERROR_COLUMN else group[column].dropna().astype(float)
            n = len(values)
            mean = float(values.mean()) if n else math.nan
            if column in BINARY_COLUMNS:
                low, high = wilson_interval(mean, n)
            else:
                half = Z_95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
                low, high = mean - half, mean + half
            records.append(
                {
                    "method": method,
                    "layer": layer,
                    "metric": column,
                    "n": n,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(records, columns=list(SUMMARY_COLUMNS))


def failed(table: pd.DataFrame) -> pd.Series:
    """1.0 for the rows whose image could not be read (a non-empty `error`), else 0.0."""
    return (table[ERROR_COLUMN].fillna("").astype(str) != "").astype(float)


def wilson_interval(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion p out of n trials (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def rows_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """The table of `rows` (plain dicts), sorted by `row`, with the dtypes that construction
    from Python values gives (the same in both engines)."""
    pd = pandas()
    return pd.DataFrame(sorted(rows, key=lambda r: r["row"]), columns=list(columns))


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by `evaluate(out=...)`, read back as it was. A plain `pd.read_csv` reads the
    empty `error` and `class_name` strings, and class names such as "NA", "None", "null", "nan" or
    "N/A", as NaN. Here the text columns keep every string, the name columns (`image`, `method`,
    `layer`) read only an empty field as missing, and the numeric columns keep pandas' NA strings."""
    pd = pandas()
    header = pd.read_csv(path, nrows=0).columns
    missing = {
        column: [] if column in TEXT_COLUMNS else [""] if column in NAME_COLUMNS else list(NA_STRINGS)
        for column in header
    }
    return pd.read_csv(path, dtype={column: str for column in TEXT_COLUMNS}, keep_default_na=False, na_values=missing)


def pandas() -> Any:
    """pandas, which the runner needs (it is in the dev extra, not a core dependency)."""
    try:
        import pandas
    except ImportError as err:  # pragma: no cover - pandas is in the dev extra
        raise ImportError("xw.evaluate needs pandas: pip install pandas (or xcam-widgets[dev])") from err
    return pandas


__all__ = [
    "BINARY_COLUMNS",
    "COLUMNS",
    "DEFAULT_METRICS",
    "ERROR_COLUMN",
    "ID_COLUMNS",
    "KEY_COLUMNS",
    "LOCALISATION",
    "METRICS",
    "PREDICTION_COLUMNS",
    "SANITY_METRICS",
    "RunPaths",
    "output_paths",
    "read_table",
    "row_key",
    "rows_frame",
    "run_paths",
    "summarize",
    "table_columns",
    "wilson_interval",
]
