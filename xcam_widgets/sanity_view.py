"""What the Sanity tab shows, as plain data: per method, its maps along the cascading randomisation,
the similarity curves, the random-logit similarity and the verdict in words.

A pure function of a `SanityResult` computed with `keep_maps=True` for one image; `Session.sanity`
calls it, and any front end draws what it returns. The maps are the *displayed* maps (ReLU,
upsampled to the input, min-max scaled), the very maps whose SSIM the check reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .methods import REGISTRY
from .sanity import SanityResult
from .task_views import TargetKey

ORIGINAL = "original"


@dataclass(frozen=True)
class SanityStrip:
    """One method's row. `steps[i]` names what is randomised at strip position i: "original", then
    the layer added to the cascade at that step (output first). `maps[i]` is the displayed map
    `[H, W]` in [0, 1] there; `similarity[measure][i]` its similarity to the original (1 at i = 0).
    `random_maps[k]` is the map for the random class `random_classes[k]`; `random_logit` is the
    mean similarity of those maps to the target's (None if not run). `verdict` is in words."""

    method: str
    title: str
    steps: tuple[str, ...]
    maps: tuple[np.ndarray, ...]
    similarity: dict[str, tuple[float, ...]]
    random_classes: tuple[int, ...]
    random_maps: tuple[np.ndarray, ...]
    random_logit: dict[str, float] | None
    passes_cascading: bool | None
    passes_random_logit: bool | None
    verdict: str


@dataclass(frozen=True)
class SanityView:
    """The Sanity tab for one image, layer and class: one strip per method, in the order asked.
    `layers_after` parameterised layers run after `layer`; `threshold` is the verdicts' pass mark."""

    layer: str
    target: TargetKey
    layers_after: int
    threshold: float
    strips: tuple[SanityStrip, ...]


def sanity_view(result: SanityResult, target: TargetKey) -> SanityView:
    """The plain data of a one-image `SanityResult` that kept its maps (`keep_maps=True`)."""
    if not result.maps:
        raise ValueError("sanity_view needs a SanityResult computed with keep_maps=True")
    strips = tuple(_strip(result, method) for method in result.verdicts)
    threshold = next(iter(result.verdicts.values())).threshold
    return SanityView(result.layer, target, result.layers_after, threshold, strips)


def _strip(result: SanityResult, method: str) -> SanityStrip:
    rows = [r for r in result.rows if r["method"] == method and r["image"] == 0]
    cascade = sorted((r for r in rows if r["check"] == "cascading"), key=lambda r: r["step"])
    randoms = sorted((r for r in rows if r["check"] == "random_logit"), key=lambda r: r["step"])
    verdict = result.verdicts[method]
    return SanityStrip(
        method=method,
        title=REGISTRY[method].title,
        steps=tuple(ORIGINAL if r["step"] == 0 else str(r["layer"]) for r in cascade),
        maps=tuple(_map(result, method, "cascading", r["step"]) for r in cascade),
        similarity={m: tuple(float(r[m]) for r in cascade) for m in result.measures},
        random_classes=tuple(int(r["target_class"]) for r in randoms),
        random_maps=tuple(_map(result, method, "random_logit", r["step"]) for r in randoms),
        random_logit=None if verdict.random_logit is None else dict(verdict.random_logit),
        passes_cascading=verdict.passes_cascading,
        passes_random_logit=verdict.passes_random_logit,
        verdict=verdict.describe(),
    )


def _map(result: SanityResult, method: str, check: str, step: int) -> np.ndarray:
    return result.maps[(method, check, step)][0].float().cpu().numpy()
