"""What a model-aware method may use beyond A and G: the model, the input, the tail after the layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import torch
from torch import nn

from ..capture import Capture, Reshape
from ..split import Tail, gap_linear_head, make_tail


@dataclass
class MethodContext:
    """One layer of one `explain` call. Built inside the model's eval-mode block."""

    model: nn.Module
    x: torch.Tensor
    layer: str
    capture: Capture
    reshape: Reshape | None = None
    progress: Callable[[int, int], None] | None = None
    traced: bool | None = field(default=None, init=False)

    def report(self, done: int, total: int) -> None:
        """Tell the caller how far a long method got; the callback may raise to cancel it."""
        if self.progress is not None:
            self.progress(done, total)

    @property
    def A(self) -> torch.Tensor:
        return self.capture.activations[self.layer]

    @property
    def G(self) -> torch.Tensor:
        return self.capture.gradients[self.layer]

    @property
    def classes(self) -> torch.Tensor | None:
        return self.capture.scorer.classes

    def score_rows(self, output: object, image: int) -> torch.Tensor:
        """Scores of a batch whose rows are all copies of image `image`."""
        return self.capture.scorer(output, image)

    @property
    def layer_reshape(self) -> Reshape | None:
        """The reshape this layer's A and G went through: the caller's, or the one capture inferred."""
        return self.capture.reshapes.get(self.layer, self.reshape)

    @cached_property
    def head(self) -> nn.Linear | None:
        """The Linear of a GAP→linear head after the layer (see `split.gap_linear_head`)."""
        return None if self.layer_reshape is not None else gap_linear_head(self.model, self.layer)

    @cached_property
    def tail(self) -> Tail:
        """The network after the layer, checked against the captured scores."""
        if self.layer_reshape is not None:
            raise ValueError("ablation-based methods and true drops do not support reshape= (token layers) yet")
        tail, self.traced = make_tail(self.model, self.layer, self.x, self._reproduces_scores)
        return tail

    def _reproduces_scores(self, tail: Tail) -> bool:
        with torch.no_grad():
            for image in range(self.x.shape[0]):
                score = self.score_rows(tail(self.A[image : image + 1].to(self.x.dtype, copy=True), image), image)
                expected = self.capture.score[image]
                tolerance = 1e-3 if self.x.dtype in (torch.float32, torch.float64) else 3e-2
                if abs(float(score[0]) - float(expected)) > tolerance * (1 + abs(float(expected))):
                    return False
        return True
