"""Which rows `discover` clusters: the source's run, one method × layer, the groups, the error rows.

A source is an `EvaluationResult`, a finished run's CSV or its parts folder (`open_result`), or a
Gallery (anything whose `.result` or `.run.result` is an `EvaluationResult`; its `.source` gives the
images and its `.model` the model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..evaluation import EvaluationResult, open_result

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

GROUPINGS: tuple[str, ...] = ("predicted", "label", "all")
DEFAULT_METHOD = "xgradcam"
ALL_GROUP = -1  # the group value of by="all"


@dataclass
class Resolved:
    """The run, and what the source knows of its images and model (None where it knows nothing)."""

    result: EvaluationResult
    images: Any = None
    model: Any = None


def resolve(source: Any) -> Resolved:
    """An `EvaluationResult`, a path to a run (CSV or parts folder) or a Gallery -> `Resolved`."""
    if isinstance(source, EvaluationResult):
        return Resolved(source)
    if isinstance(source, (str, os.PathLike)):
        return Resolved(open_result(source))
    result = getattr(source, "result", None)
    run = getattr(source, "run", None)
    if result is None and run is not None:
        result = getattr(run, "result", None)
        if result is None and hasattr(run, "snapshot"):
            raise ValueError("the Gallery's run has not finished yet: wait for it (gallery.run.join()) and try again")
    if isinstance(result, EvaluationResult):
        model = getattr(source, "bundle", None) or getattr(source, "model", None)  # the bundle keeps the preprocess
        return Resolved(result, getattr(source, "source", None), model)
    raise TypeError(
        "source must be an EvaluationResult (xw.evaluate), a finished run's CSV or parts folder, or a Gallery; "
        f"got {type(source).__name__}"
    )


def pick(values: list[str], wanted: str | None, what: str, default: str | None = None) -> str:
    """`wanted` if the run has it; else `default` if present, else the only one (or the first, for a method)."""
    if not values:
        raise ValueError(f"the run has no rows, so no {what} to pick")
    if wanted is not None:
        if wanted not in values:
            raise ValueError(f"{what} {wanted!r} is not in the run; it has {values}")
        return wanted
    if default is not None:
        return default if default in values else values[0]
    if len(values) > 1:
        raise ValueError(f"the run has several {what}s {values}; pass {what}= one of them")
    return values[0]


def select_rows(
    table: pd.DataFrame, method: str | None, layer: str | None, by: str
) -> tuple[pd.DataFrame, str, str, dict[str, int]]:
    """The rows of one method × layer without error rows (and, by label, without unlabelled rows), with a
    `group` column -> (rows, method, layer, rows left out by reason: "error", "no label")."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, got {by!r}")
    method = pick(list(dict.fromkeys(table["method"].tolist())), method, "method", DEFAULT_METHOD)
    chosen = table[table["method"] == method]
    layer = pick(list(dict.fromkeys(chosen["layer"].tolist())), layer, "layer")
    chosen = chosen[chosen["layer"] == layer]
    failed = (
        (chosen["error"].fillna("").astype(str) != "").to_numpy() if "error" in chosen else np.zeros(len(chosen), bool)
    )
    rows = chosen[~failed].copy()
    excluded = {"error": int(failed.sum())}
    if by == "all":
        rows["group"] = ALL_GROUP
    else:
        rows["group"] = rows[by].astype(int)
        if by == "label":
            if len(rows) and (rows["group"] < 0).all():
                raise ValueError("by='label' needs true labels, and this run has none (label -1); use by='predicted'")
            excluded["no label"] = int((rows["group"] < 0).sum())
        rows = rows[rows["group"] >= 0]
    return rows.reset_index(drop=True), method, layer, excluded


def group_name(group: int, categories: list[str] | None) -> str:
    """A group's display name: the class name where known."""
    if group == ALL_GROUP:
        return "all"
    if categories and 0 <= group < len(categories):
        return str(categories[group])
    return str(group)


__all__ = ["ALL_GROUP", "DEFAULT_METHOD", "GROUPINGS", "Resolved", "group_name", "pick", "resolve", "select_rows"]
