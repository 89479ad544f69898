"""The runner's sanity-check columns, `mprt` and `random_logit`: one `xw.sanity_check` per image × layer.

Both are Spearman's ρ of raw maps (no ReLU, at the layer's resolution), so 1 means the same ranking:

- `mprt`: the map after the cascading randomisation of every parameterised layer *after* the CAM
  layer (Adebayo et al. 2018; the sanity check's verdict step) against the original map. NaN when no
  parameterised layer follows the CAM layer, or where a map is constant.
- `random_logit`: the mean over `RANDOM_CLASSES` random other classes (fewer if the model has fewer)
  of the similarity between that class's map and the map of the row's class (Sixt et al. 2020).

Each image is checked alone, with the seed `image_seed(position)`: its random weights and classes
depend on its position in the run only, not on the batch size, the batch's other images or a resumed
run. The check works on a deep copy of the model (`xcam_widgets.sanity`), so the model is untouched.
Cost per image × layer: a copy of the model, one pass for the original maps, one tail re-run per
layer after the CAM layer (a whole pass for methods that re-run the model) and one per random class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..sanity import sanity_check
from ..sanity.result import SanityResult, nanmean
from .table import SANITY_METRICS

RANDOM_CLASSES = 3
SIMILARITY = "spearman"
CHECKS: Mapping[str, str] = {"mprt": "cascading", "random_logit": "random_logit"}

# {(method, layer): {column: one value per image of the batch}}
SanityColumns = dict[tuple[str, str], dict[str, list[float]]]


def image_seed(position: int) -> int:
    """The sanity-check seed of the image at `position` in the run: the position itself."""
    return position


def sanity_columns(
    model: nn.Module,
    x: torch.Tensor,
    positions: Sequence[int],
    classes: Sequence[int],
    methods: Sequence[str],
    layers: Sequence[str],
    metrics: Sequence[str],
    num_classes: int,
    options: Mapping[str, Mapping[str, Any]],
) -> SanityColumns:
    """The chosen sanity columns (`SANITY_METRICS` in `metrics`) for the prepared batch `x`, whose
    image i sits at run position `positions[i]` and is explained for class `classes[i]`."""
    wanted = [m for m in SANITY_METRICS if m in metrics]
    random_classes = min(RANDOM_CLASSES, num_classes - 1)  # 0: one class, no random-logit check
    checks = [CHECKS[m] for m in wanted if m != "random_logit" or random_classes > 0]
    columns: SanityColumns = {(m, layer): {name: [] for name in wanted} for m in methods for layer in layers}
    if not wanted:
        return columns
    method_options = {m: dict(options.get(m, {})) for m in methods if options.get(m)}
    for layer in layers:
        for i, (position, target) in enumerate(zip(positions, classes)):
            result = None
            if checks:
                result = sanity_check(
                    model,
                    x[i : i + 1],
                    layer,
                    methods=list(methods),
                    target=int(target),
                    checks=checks,
                    similarity=SIMILARITY,
                    seed=image_seed(position),
                    steps="tail",
                    random_classes=max(random_classes, 1),
                    options=method_options,  # max: a valid value if unused
                )
            for method in methods:
                for name, value in image_values(result, method, wanted).items():
                    columns[(method, layer)][name].append(value)
    return columns


def image_values(result: SanityResult | None, method: str, wanted: Sequence[str]) -> dict[str, float]:
    """`mprt` and `random_logit` of `method` from a one-image sanity check (NaN where not run)."""
    rows = [] if result is None else [r for r in result.rows if r["method"] == method]
    values = {name: math.nan for name in wanted}
    if result is not None and "mprt" in wanted and result.layers_after > 0:
        at_step = [r[SIMILARITY] for r in rows if r["check"] == "cascading" and r["step"] == result.layers_after]
        values["mprt"] = nanmean(at_step)
    if "random_logit" in wanted:
        values["random_logit"] = nanmean([r[SIMILARITY] for r in rows if r["check"] == "random_logit"])
    return values


__all__ = ["CHECKS", "RANDOM_CLASSES", "SIMILARITY", "SanityColumns", "image_seed", "image_values", "sanity_columns"]
