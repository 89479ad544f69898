"""Argument checks shared by the API, the runner and the CLI: one wording for each rule."""

from __future__ import annotations

import math
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """`value` if it is an int >= 1 (bools are not ints here), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def finite_non_negative(name: str, value: Any) -> float:
    """`value` as a float if it is a finite real number >= 0, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
