"""The contract of the ready-made targets: one score per row of a model output, per-image specifications."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Any

import torch

RowsOf = torch.Tensor | int | None


class OutputTarget(ABC):
    """A callable target `output -> [rows]` scores that knows which image each row copies.

    `xw.explain` binds the target to the clean pass's output once (`bind`): what that pass decides
    (a default mask, the detection that matches a box) then stays fixed for every later pass on
    copies of the images (noisy samples, masked inputs). Later passes give `rows_of`: a `[rows]`
    index tensor, or one int when all rows copy one image (see `Scorer`). Called as a plain
    function, `target(output)`, a target scores the batch as the clean pass would.
    """

    def bind(self, output: Any) -> OutputTarget:
        """The target with whatever the clean pass fixes filled in; itself by default."""
        return self

    @abstractmethod
    def __call__(self, output: Any, rows_of: RowsOf = None) -> torch.Tensor:
        """`[rows]` scores, differentiable with respect to the model's activations."""


def rows_of_spec(spec: torch.Tensor, rows: int, rows_of: RowsOf, what: str) -> torch.Tensor:
    """Row r's entry of a per-image `spec` (`[n, ...]`): entry 0 for every row when n = 1, else the
    image row r copies (`rows_of`), or row r itself on the clean pass, which must then have n rows."""
    if spec.shape[0] == 1:
        return spec.expand(rows, *spec.shape[1:])
    if rows_of is None:
        if spec.shape[0] != rows:
            raise ValueError(f"{what} is given for {spec.shape[0]} images but the batch has {rows}")
        return spec
    if isinstance(rows_of, int):
        return spec[rows_of].expand(rows, *spec.shape[1:])
    return spec[rows_of.to(spec.device)]


def class_index(name: str, value: Any) -> int:
    """`value` if it is an int >= 0 (a class index; bools are not), else a TypeError or ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a class index (an int), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a class index >= 0, got {value}")
    return int(value)
