"""What a sanity check returns: tidy rows, a verdict per method, and (on request) the maps.

Verdict threshold. Adebayo et al. (NeurIPS 2018) and Sixt et al. (ICML 2020) judge the similarity
curves by eye and fix no pass mark; Quantus reports the similarities without one. We state one:
THRESHOLD = 0.5, Cohen's (1988, "Statistical Power Analysis for the Behavioral Sciences", §3.2)
lower bound of a *large* correlation. A method passes a check when the mean similarity over images
(and random classes) is below it for every measure asked for: a map that still correlates that
strongly with the original after the randomisation does not depend on what was randomised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..methods import REGISTRY

THRESHOLD = 0.5


@dataclass(frozen=True)
class Verdict:
    """One method's outcome. `cascading`: mean similarity per measure once every layer after the
    CAM layer is randomised (None if not run, or if no parameterised layer follows the CAM layer);
    `random_logit`: mean similarity between the target class's map and other classes' maps.
    `passes_*` is None where the check was not run or its similarity is undefined (NaN)."""

    method: str
    layer: str
    threshold: float
    cascading: Mapping[str, float] | None
    random_logit: Mapping[str, float] | None
    layers_after: int

    @property
    def passes_cascading(self) -> bool | None:
        return _passes(self.cascading, self.threshold)

    @property
    def passes_random_logit(self) -> bool | None:
        return _passes(self.random_logit, self.threshold)

    def describe(self) -> str:
        """The verdict in words, for a panel or a report."""
        title = REGISTRY[self.method].title
        sentences = []
        if self.cascading is not None:
            outcome = {True: "passes", False: "fails", None: "is undecided on"}[self.passes_cascading]
            sentences.append(
                f"{title} {outcome} the cascading randomisation check: with the {self.layers_after} "
                f"parameterised layer(s) after {self.layer} randomised, its map's similarity to the original "
                f"is {_values(self.cascading)} (pass: below {self.threshold:g})."
            )
        if self.random_logit is not None:
            outcome = {True: "passes", False: "fails", None: "is undecided on"}[self.passes_random_logit]
            meaning = {
                True: "the map depends on the class",
                False: "the map depends too little on the class",
                None: "a map is constant, so the similarity is undefined",
            }[self.passes_random_logit]
            sentences.append(
                f"{title} {outcome} the random-logit check: its maps for random other classes have "
                f"{_values(self.random_logit)} with the target class's map, so {meaning}."
            )
        return " ".join(sentences)


def _passes(similarities: Mapping[str, float] | None, threshold: float) -> bool | None:
    if similarities is None or any(math.isnan(v) for v in similarities.values()):
        return None
    return all(v < threshold for v in similarities.values())


def _values(similarities: Mapping[str, float]) -> str:
    names = {"spearman": "Spearman", "ssim": "SSIM"}
    return ", ".join(f"{names[k]} {v:.2f}" for k, v in similarities.items())


@dataclass
class SanityResult:
    """`rows`: one dict per method × check × step × image with the keys of `COLUMNS` plus one per
    similarity measure. `step` counts along `layers` (output first): for "cascading", layers
    1..step are randomised (step 0 is the original model); for "independent", layer `step` alone;
    for "random_logit", step k is the k-th random class (`target_class`). `after_layer` says
    whether every randomised layer runs after the CAM layer. `maps[(method, check, step)]` holds
    the displayed maps `[B, H, W]` when asked for (`keep_maps=True`). `path`: "tail" when some steps
    re-ran only the network after the CAM layer (the split path), "full" when every step re-ran the
    whole model; `path_note` says which steps took which path and why."""

    layer: str
    layers: tuple[str, ...]
    layers_after: int
    measures: tuple[str, ...]
    rows: list[dict[str, Any]]
    verdicts: dict[str, Verdict]
    maps: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)
    path: str = "full"
    path_note: str = ""

    COLUMNS = ("method", "check", "step", "layer", "after_layer", "image", "target_class")

    def image_scores(self, method: str) -> dict[str, list[float]]:
        """Per image, for runner columns: `mprt_<measure>`, the similarity after the full cascade
        (every layer randomised), and `random_logit_<measure>`, the mean over the random classes.
        A key is present only where its check ran (for "mprt", up to the last layer)."""
        if method not in self.verdicts:
            raise ValueError(f"method {method!r} was not checked; checked: {list(self.verdicts)}")
        wanted = {
            "mprt": lambda r: r["check"] == "cascading" and r["step"] == len(self.layers),
            "random_logit": lambda r: r["check"] == "random_logit",
        }
        scores: dict[str, list[float]] = {}
        for name, keep in wanted.items():
            rows = [r for r in self.rows if r["method"] == method and keep(r)]
            if not rows:
                continue
            images = sorted({r["image"] for r in rows})
            for measure in self.measures:
                scores[f"{name}_{measure}"] = [nanmean([r[measure] for r in rows if r["image"] == i]) for i in images]
        return scores

    def table(self) -> Any:
        """The rows as a pandas DataFrame (pandas is needed here only)."""
        return _pandas().DataFrame(self.rows, columns=[*self.COLUMNS, *self.measures])

    def summary(self) -> Any:
        """One row per method: the verdicts' similarities and outcomes, as a pandas DataFrame."""
        records = []
        for verdict in self.verdicts.values():
            record: dict[str, Any] = {"method": verdict.method}
            for check, values in (("cascading", verdict.cascading), ("random_logit", verdict.random_logit)):
                for measure in self.measures:
                    record[f"{check}_{measure}"] = None if values is None else values[measure]
            record["passes_cascading"] = verdict.passes_cascading
            record["passes_random_logit"] = verdict.passes_random_logit
            records.append(record)
        return _pandas().DataFrame(records)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:  # optional: the core runs without it
        raise ImportError("SanityResult.table() and .summary() need pandas: pip install pandas") from error
    return pandas


def nanmean(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN; NaN if none is."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else math.nan


def mean_similarity(rows: Sequence[Mapping[str, Any]], measures: Sequence[str]) -> dict[str, float] | None:
    """Mean of each measure over `rows`, ignoring NaN (NaN if all are); None for no rows."""
    if not rows:
        return None
    return {measure: nanmean([r[measure] for r in rows]) for measure in measures}
