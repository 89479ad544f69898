"""Channel relevance vectors of a run's rows, recomputed with the model (for runs that stored none).

One forward and backward pass per batch through `xw.capture` (hooks removed, eval mode restored):
for each row, its image, its layer and its explained class (`class`) give A and G, and
`features.channel_relevance` gives the vectors over the whole map and over its hottest region.
Each channel's peak (where A_k is largest) is kept too, for the prototype crops. The runner stores
the same per row (`evaluation.latents`, `EvaluationResult.latents`), as float16.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..capture import capture
from ..evaluation.latents import Latents
from ..evaluation.sources import Source
from .features import REGIONS, channel_relevance

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from torch import nn

Progress = Callable[[str, int, int], None]


def compute_latents(
    table: pd.DataFrame,
    model: nn.Module,
    source: Source,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> Latents:
    """The latents of `table`'s rows (columns row, image, layer, class; one layer) from `model`'s A and G
    on `source`'s images (preprocessed as for the run)."""
    layers = table["layer"].unique().tolist()
    if len(layers) != 1:
        raise ValueError(f"latent vectors are computed for one layer at a time, got {layers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows = table["row"].to_numpy()
    positions = [source.position(i) for i in table["image"].tolist()]
    classes = table["class"].astype(int).tolist()
    parts: dict[str, list[torch.Tensor]] = {r: [] for r in REGIONS}
    peaks: list[torch.Tensor] = []
    grid = (0, 0)
    for start in range(0, len(rows), batch_size):
        stop = min(start + batch_size, len(rows))
        batch = source.take(positions[start:stop], strict=True)
        x = batch.x.to(device)
        cap = capture(model, x, layers[0], target=torch.tensor(classes[start:stop], device=device))
        A, G = cap.activations[layers[0]], cap.gradients[layers[0]]
        for region in REGIONS:
            parts[region].append(channel_relevance(A, G, region).cpu())
        peaks.append(A.flatten(2).argmax(dim=2).cpu())
        grid = (int(A.shape[2]), int(A.shape[3]))
        if progress is not None:
            progress("latent", stop, len(rows))
    return Latents(
        rows,
        {r: torch.cat(v).numpy().astype(np.float32) for r, v in parts.items()},
        torch.cat(peaks).numpy(),
        grid,
    )


__all__ = ["Latents", "Progress", "compute_latents"]
