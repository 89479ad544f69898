"""The shapes benchmark named by a string: "shapes:N[:SEED]", "shapes_shortcut:N[:SEED[:MARKS]]" and the
random-position cues "shapes_sticker:N[:SEED[:MODE]]", "shapes_tag:N[:SEED[:MODE]]"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..shapes.constants import HELDOUT_SEED
from ..shapes.cues import CUE_KINDS, make_cue_shapes
from ..shapes.dataset import MARK_MODES, ShapesBatch, make_shapes, make_shortcut_shapes

SHAPES_SPEC = re.compile(r"^shapes:(\d+)(?::(\d+))?$")
SHORTCUT_SPEC = re.compile(r"^shapes_shortcut:(\d+)(?::(\d+)(?::(\w+))?)?$")
CUE_SPEC = re.compile(r"^shapes_(\w+?):(\d+)(?::(\d+)(?::(\w+))?)?$")
# a cue spec's MODE -> make_cue_shapes's (cues, fraction): the label's cue on all or half of the images
# (half: a validation set that mixes cue-driven and shape-driven images), a random class's, or none
CUE_SPEC_MODES: dict[str, tuple[str, float]] = {
    "label": ("label", 1.0),
    "half": ("label", 0.5),
    "random": ("random", 1.0),
    "mixed": ("random", 0.5),
    "none": ("none", 0.0),
}
SPEC_PREFIXES: tuple[str, ...] = ("shapes:", "shapes_shortcut:", *(f"shapes_{kind}:" for kind in CUE_KINDS))


def shapes_from_spec(spec: str) -> ShapesBatch:
    """The images a "shapes:N[:SEED]", "shapes_shortcut:N[:SEED[:MARKS]]" or "shapes_KIND:N[:SEED[:MODE]]"
    spec names (SEED defaults to the held-out seed, MARKS and MODE to "label"; KIND is a cue kind)."""
    if spec.startswith("shapes:"):
        match = SHAPES_SPEC.match(spec)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"images {spec!r}: the shapes benchmark is 'shapes:N' or 'shapes:N:SEED' with N >= 1")
        seed = int(match.group(2)) if match.group(2) else HELDOUT_SEED
        return make_shapes(int(match.group(1)), seed=seed)
    if not spec.startswith("shapes_shortcut:"):
        return cue_shapes_from_spec(spec)
    match = SHORTCUT_SPEC.match(spec)
    if not match or int(match.group(1)) < 1:
        raise ValueError(
            f"images {spec!r}: the watermarked shapes are 'shapes_shortcut:N', 'shapes_shortcut:N:SEED' "
            f"or 'shapes_shortcut:N:SEED:MARKS' with N >= 1 and MARKS one of {MARK_MODES}"
        )
    marks = match.group(3) or "label"
    if marks not in MARK_MODES:
        raise ValueError(f"images {spec!r}: MARKS must be one of {MARK_MODES}, got {marks!r}")
    seed = int(match.group(2)) if match.group(2) else HELDOUT_SEED
    return make_shortcut_shapes(int(match.group(1)), seed=seed, marks=marks)


def cue_shapes_from_spec(spec: str) -> ShapesBatch:
    """The `CueBatch` of "shapes_KIND:N[:SEED[:MODE]]", MODE one of `CUE_SPEC_MODES` (default "label")."""
    match = CUE_SPEC.match(spec)
    if not match or match.group(1) not in CUE_KINDS or int(match.group(2)) < 1:
        raise ValueError(
            f"images {spec!r}: the cue shapes are 'shapes_KIND:N', 'shapes_KIND:N:SEED' or "
            f"'shapes_KIND:N:SEED:MODE' with KIND one of {CUE_KINDS}, N >= 1 and MODE one of {tuple(CUE_SPEC_MODES)}"
        )
    mode = match.group(4) or "label"
    if mode not in CUE_SPEC_MODES:
        raise ValueError(f"images {spec!r}: MODE must be one of {tuple(CUE_SPEC_MODES)}, got {mode!r}")
    seed = int(match.group(3)) if match.group(3) else HELDOUT_SEED
    cues, fraction = CUE_SPEC_MODES[mode]
    return make_cue_shapes(int(match.group(2)), seed, match.group(1), cues, fraction)


def is_shapes(images: Any) -> bool:
    """Whether `images` is the shapes benchmark (a ShapesBatch, or a "shapes:", "shapes_shortcut:" or cue
    spec that is no existing path)."""
    if isinstance(images, ShapesBatch):
        return True
    return isinstance(images, str) and images.startswith(SPEC_PREFIXES) and not Path(images).exists()
