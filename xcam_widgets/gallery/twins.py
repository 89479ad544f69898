"""Twin methods: pairs of methods whose maps are the same at some layers, so that a grid of both
shows every image twice.

At a layer followed by global average pooling and one linear layer (`split.gap_linear_head`,
`LayerInfo.gap_linear`), S_c = Σ_k W[c,k]·mean_xy(A_k) + b, so ∂S_c/∂A_k = W[c,k]/(hw) is the
same at every position: Grad-CAM's weights mean_xy(∂S_c/∂A_k) and XGrad-CAM's
Σ_xy(∂S_c/∂A_k · A_k) / Σ_xy A_k are both W[c,k]/(hw), and so are their maps.

A twin is written (kept method, merged method, layer). `Filter(merge=...)` leaves out a row of the
merged method when the row of the kept method for the same image, class and layer is kept:
one tile, labelled with both methods (`merged_label`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from torch import nn

from ..split import gap_linear_head
from .columns import require_pandas

TWIN_METHODS: tuple[tuple[str, str], ...] = (("gradcam", "xgradcam"),)
Twin = tuple[str, str, str]  # (kept method, merged method, layer)


def twins(model: nn.Module, methods: Iterable[str], layers: Iterable[str]) -> tuple[Twin, ...]:
    """The twins among `methods` at `layers` of `model`: for each pair of `TWIN_METHODS` that both
    run, each layer that feeds global average pooling then a linear layer (a layer the model
    does not have counts as none)."""
    names = set(methods)
    pairs = [pair for pair in TWIN_METHODS if set(pair) <= names]
    if not pairs:
        return ()
    modules = dict(model.named_modules())
    gap = [layer for layer in dict.fromkeys(layers) if layer in modules and gap_linear_head(model, layer) is not None]
    return tuple((kept, merged, layer) for kept, merged in pairs for layer in gap)


def merged_label(method: str, layer: str, merge: Iterable[Twin]) -> str:
    """`method` as a merged tile names it: "gradcam = xgradcam" for the kept method of a twin."""
    for kept, merged, at in merge:
        if (method, layer) == (kept, at):
            return f"{kept} = {merged}"
    return method


def twin_positions(frame: object, twin: Twin) -> tuple[np.ndarray, np.ndarray]:
    """(merged, kept): positions in `frame` (a DataFrame with `method`, `layer`, `image`, `class`)
    of the merged method's rows at the twin's layer, and of the kept method's row for the same
    image and class, pair by pair (rows without a partner are left out)."""
    pd = require_pandas()
    kept, merged, layer = twin
    wanted = {"method", "layer", "image", "class"}
    if not isinstance(frame, pd.DataFrame) or not wanted <= set(frame.columns):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = frame[["method", "layer", "image", "class"]].assign(position=np.arange(len(frame)))
    at = rows[rows["layer"] == layer]
    pairs = at[at["method"] == merged].merge(at[at["method"] == kept], on=["image", "class"], suffixes=("", "_kept"))
    return pairs["position"].to_numpy(np.int64), pairs["position_kept"].to_numpy(np.int64)


__all__ = ["TWIN_METHODS", "Twin", "merged_label", "twin_positions", "twins"]
