"""The shapes benchmark named by a string: "shapes:N[:SEED]" and "shapes_shortcut:N[:SEED[:MARKS]]"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..shapes.constants import HELDOUT_SEED
from ..shapes.dataset import MARK_MODES, ShapesBatch, make_shapes, make_shortcut_shapes

SHAPES_SPEC = re.compile(r"^shapes:(\d+)(?::(\d+))?$")
SHORTCUT_SPEC = re.compile(r"^shapes_shortcut:(\d+)(?::(\d+)(?::(\w+))?)?$")
SPEC_PREFIXES: tuple[str, ...] = ("shapes:", "shapes_shortcut:")


def shapes_from_spec(spec: str) -> ShapesBatch:
    """The images a "shapes:N[:SEED]" or "shapes_shortcut:N[:SEED[:MARKS]]" spec names (SEED defaults
    to the held-out seed, MARKS to "label")."""
    if spec.startswith("shapes:"):
        match = SHAPES_SPEC.match(spec)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"images {spec!r}: the shapes benchmark is 'shapes:N' or 'shapes:N:SEED' with N >= 1")
        seed = int(match.group(2)) if match.group(2) else HELDOUT_SEED
        return make_shapes(int(match.group(1)), seed=seed)
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


def is_shapes(images: Any) -> bool:
    """Whether `images` is the shapes benchmark (a ShapesBatch, or a "shapes:" or "shapes_shortcut:"
    spec that is no existing path)."""
    if isinstance(images, ShapesBatch):
        return True
    return isinstance(images, str) and images.startswith(SPEC_PREFIXES) and not Path(images).exists()
