"""The Gallery's summary plots as plain data: a metric's distribution per method, and a per-class table.

Both describe a selection (the filtered rows; the sort does not matter) and read only the
table's column keys, so they cost a few array passes and no map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..checks import positive_int
from .columns import require_pandas
from .table import GalleryTable, Selection

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

CLASS_SUMMARY_COLUMNS: tuple[str, ...] = (
    "class",
    "class_name",
    "rows",
    "images",
    "accuracy",
    "metric_mean",
    "pointing_miss_rate",
)


@dataclass(frozen=True, eq=False)
class Distribution:
    """`values[i]`: the finite values of `metric` in group `groups[i]` (e.g. a method), in the
    selection's order: the data of a box or violin plot. `counts[i]`: their histogram over the
    shared bin `edges` (len(edges) = bins + 1), which is all a histogram needs to send.
    `below[i]` / `above[i]`: the group's values outside the bins (±inf included), and
    `missing[i]` its NaN values, so that a histogram can say what it leaves out."""

    metric: str
    groups: tuple[str | int | float, ...]
    values: tuple[np.ndarray, ...]
    edges: np.ndarray
    counts: np.ndarray
    below: np.ndarray
    above: np.ndarray
    missing: np.ndarray

    @property
    def outside(self) -> str:
        """What the bins leave out, in words ("" when nothing): e.g. "2 below the bins, 1 missing (NaN)"."""
        counts = ((self.below, "below the bins"), (self.above, "above the bins"), (self.missing, "missing (NaN)"))
        parts = [f"{int(n.sum())} {what}" for n, what in counts if n.sum()]
        return ", ".join(parts)


def distribution(selection: Selection, metric: str, *, by: str = "method", bins: int = 30) -> Distribution:
    """The distribution of the numeric column `metric` per value of the column `by`.

    The bins span the finite values inside Tukey's far fences, [Q1 - 3 IQR, Q3 + 3 IQR] (all of
    them for most data), so that one huge value (±1e308) or an infinite one cannot stretch the
    bins until every other value falls in one; what lies outside is counted in `below` /
    `above`, and NaN in `missing`. Groups follow the sorted values of `by`, and rows where `by` is
    missing are left out. With no finite value at all the edges span [0, 1].
    """
    bins = positive_int("bins", bins)
    table = selection.table
    values = table.values(metric)[selection.positions]
    group_keys = table.column(by)
    codes = group_keys.keys[selection.positions]
    present = np.unique(codes[~np.isnan(codes)])
    names = tuple(_label(group_keys.labels, code) for code in present)
    members = [codes == code for code in present]
    finite = np.isfinite(values)
    groups = tuple(values[finite & member] for member in members)
    edges = _edges(values[finite], bins)
    counts = np.array([np.histogram(g, bins=edges)[0] for g in groups], dtype=np.int64).reshape(len(groups), bins)
    with np.errstate(invalid="ignore"):
        below = np.array([np.sum(member & (values < edges[0])) for member in members], dtype=np.int64)
        above = np.array([np.sum(member & (values > edges[-1])) for member in members], dtype=np.int64)
    missing = np.array([np.sum(member & np.isnan(values)) for member in members], dtype=np.int64)
    return Distribution(metric, names, groups, edges, counts, below, above, missing)


def _edges(finite: np.ndarray, bins: int) -> np.ndarray:
    """`bins` + 1 equal-width edges over the finite values inside Tukey's far fences (see
    `distribution`; all of them when the IQR is 0 or overflows), computed as lo·(1 - t) + hi·t so
    that no step overflows, even over ±1e308."""
    if not len(finite):
        return np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        q1, q3 = np.quantile(finite, [0.25, 0.75])
        spread = 3.0 * (q3 - q1)
        if 0 < spread < np.inf:
            finite = finite[(finite >= q1 - spread) & (finite <= q3 + spread)]
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:  # one value: a window around it, kept finite
        half, top = 0.5 * max(1.0, abs(lo)), float(np.finfo(np.float64).max)
        lo, hi = max(lo - half, -top), min(hi + half, top)
    t = np.linspace(0.0, 1.0, bins + 1)
    edges = lo * (1.0 - t) + hi * t
    edges[0], edges[-1] = lo, hi
    return edges


def class_summary(selection: Selection, metric: str | None = None, *, by: str = "class") -> pd.DataFrame:
    """One row per value of `by` (the explained class by default; "label" for the true class) in
    the selection, sorted; `class` holds that value and `class_name` the table's name for it:

    - `rows`: rows (image × method × layer); `images`: distinct images;
    - `accuracy`: the share of its distinct labelled images with `correct` True (an image counts
      once, whatever the methods and layers; NaN when none is labelled);
    - `metric_mean`: the mean of the finite values of `metric` (NaN without a metric or a value);
    - `pointing_miss_rate`: 1 - the mean of the finite `pointing` hits (NaN where there are none).

    Rows where `by` is missing (e.g. an image that failed to load) are left out.
    """
    pd = require_pandas()
    table, positions = selection.table, selection.positions
    keys = table.column(by)
    raw = keys.keys[positions]
    kept = positions[~np.isnan(raw)]
    class_values, group = np.unique(keys.keys[kept], return_inverse=True)
    n = len(class_values)
    images, accuracy = _per_image(table, kept, group, n)
    classes = [_label(keys.labels, v) for v in class_values]
    return pd.DataFrame(
        {
            "class": classes,
            "class_name": _class_names(table, classes),
            "rows": np.bincount(group, minlength=n),
            "images": images,
            "accuracy": accuracy,
            "metric_mean": _group_mean(table.values(metric)[kept], group, n) if metric else np.full(n, np.nan),
            "pointing_miss_rate": (
                1.0 - _group_mean(table.values("pointing")[kept], group, n)
                if "pointing" in table.columns
                else np.full(n, np.nan)
            ),
        }
    )


def _per_image(table: GalleryTable, kept: np.ndarray, group: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct images per group, and the share of the labelled ones with `correct` True (read
    from one row of each image: its rows agree)."""
    image = table.column("image").keys[kept] if "image" in table.columns else kept.astype(np.float64)
    image_code = np.unique(np.nan_to_num(image, nan=-1.0), return_inverse=True)[1].astype(np.int64)
    _, first = np.unique(
        group.astype(np.int64) * (int(image_code.max(initial=0)) + 1) + image_code, return_index=True
    )  # one int key per (group, image) pair
    image_group = group[first]
    images = np.bincount(image_group, minlength=n)
    if "correct" not in table.columns:
        return images, np.full(n, np.nan)
    correct = table.column("correct").keys[kept[first]]
    return images, _group_mean(correct, image_group, n)


def _class_names(table: GalleryTable, classes: list) -> list:
    """The `class_name` the table gives each class (None where it names none)."""
    if not {"class", "class_name"} <= set(table.columns):
        return [None] * len(classes)
    pairs = table.frame[["class", "class_name"]].drop_duplicates("class")
    names = dict(zip(pairs["class"].tolist(), pairs["class_name"].tolist()))
    return [names.get(c) for c in classes]


def _group_mean(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """The mean of the finite `values` per group (NaN for a group with none)."""
    finite = np.isfinite(values)
    total = np.bincount(group[finite], weights=values[finite], minlength=n)
    count = np.bincount(group[finite], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _label(labels: np.ndarray | None, code: float) -> str | int | float:
    """A group's display value: the text for a text column, an int for an integral number."""
    if labels is not None:
        return str(labels[int(code)])
    return int(code) if float(code).is_integer() else float(code)
