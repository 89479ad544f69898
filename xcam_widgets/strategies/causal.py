"""The causal check: does the model really use a cluster's evidence?

Every image of the cluster's group is shown to the model as it is, with the evidence removed, and with
a random control of the same size removed:

- how="occlude": the evidence is the image's hottest `area` of its own stored map (upsampled to the
  input, bilinear); the control is that same mask shifted circularly by a random offset (same shape
  and area). Removed pixels take the image's mean value per channel.
- how="channels": the evidence is the cluster's top channels, zeroed at the layer by a forward hook;
  the control is as many channels drawn at random from the others.

The drop of the explained class's logit, and accuracy, are reported for the cluster's members and the
group's other rows. The model runs in eval mode under its lock, without gradients; hooks are removed
and flags restored, also when something fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import Source
from ..layers import resolve_layer
from ..model_state import evaluation_mode
from ..targets import logits_of
from .features import top_region

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

HOWS: tuple[str, ...] = ("occlude", "channels")


@dataclass
class CausalCheck:
    """`table`: per `who` ("members", "non-members") × `removed` ("evidence", "random"): n, mean score
    before and after, `score_drop` (mean of before − after), accuracy before and after (NaN without
    labels) and `kept` (share still predicting the same class). `effect`: the members' score drop with
    the evidence removed minus with the control removed; `contrast`: members' minus non-members' drop
    with the evidence removed. `effect` above 0: the model uses this evidence for these images;
    `contrast` above 0 too: the evidence matters more to them than to the rest of their class."""

    table: pd.DataFrame
    how: str
    area: float
    channels: list[int]
    effect: float
    contrast: float


def occlusion_masks(maps: Sequence[np.ndarray], size: tuple[int, int], area: float) -> torch.Tensor:
    """bool `[B, H, W]`: each map upsampled to `size` (bilinear) and its hottest `area` fraction of pixels."""
    up = torch.stack(
        [
            F.interpolate(torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None], size=size, mode="bilinear")[
                0, 0
            ]
            for m in maps
        ]
    )
    return top_region(up, area)


def shifted(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each mask rolled by a random (dy, dx): the same shape and area elsewhere."""
    out = torch.empty_like(masks)
    h, w = masks.shape[1:]
    for i in range(len(masks)):
        dy = int(torch.randint(h, (1,), generator=generator))
        dx = int(torch.randint(w, (1,), generator=generator))
        out[i] = masks[i].roll((dy, dx), dims=(0, 1))
    return out


def occlude(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`x` `[B, C, H, W]` with the masked pixels set to the image's per-channel mean."""
    fill = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return torch.where(masks[:, None].to(x.device), fill, x)


class ZeroChannels:
    """Forward hook: the layer's output with `channels` zeroed (when `channels` is set), and its width seen."""

    def __init__(self) -> None:
        self.channels: list[int] = []
        self.width = 0

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError("how='channels' needs a layer whose output is [B, K, h, w]")
        self.width = int(output.shape[1])
        if not self.channels:
            return None
        output = output.clone()
        output[:, self.channels] = 0
        return output


def run_causal_check(
    rows: pd.DataFrame,
    maps: Mapping[int, np.ndarray],
    layer: str,
    channels: list[int],
    model: nn.Module,
    source: Source,
    how: str,
    area: float,
    seed: int,
    batch_size: int,
) -> CausalCheck:
    """The check over `rows` (columns row, image, class, label, member) of one group."""
    if not 0 < area < 1:
        raise ValueError(f"area must be in (0, 1), got {area}")
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, got {how!r}")
    generator = torch.Generator().manual_seed(seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    positions = [source.position(i) for i in rows["image"].tolist()]
    classes = torch.tensor(rows["class"].astype(int).tolist(), dtype=torch.long)
    hook = ZeroChannels()
    results: dict[str, list[torch.Tensor]] = {"before": [], "evidence": [], "random": []}
    predictions: dict[str, list[torch.Tensor]] = {k: [] for k in results}
    control: list[int] = []
    with evaluation_mode(model), torch.no_grad():
        handle = resolve_layer(model, layer)[1].register_forward_hook(hook) if how == "channels" else None
        try:
            for start in range(0, len(rows), batch_size):
                stop = min(start + batch_size, len(rows))
                x = source.take(positions[start:stop], strict=True).x.to(device)
                wanted = classes[start:stop]

                def run(inputs: torch.Tensor, zero: list[int], key: str, wanted: torch.Tensor = wanted) -> None:
                    hook.channels = zero
                    logits = logits_of(model(inputs)).float().cpu()
                    results[key].append(logits.gather(1, wanted[:, None])[:, 0])
                    predictions[key].append(logits.argmax(dim=1))

                run(x, [], "before")
                if how == "occlude":
                    size = (int(x.shape[2]), int(x.shape[3]))
                    masks = occlusion_masks([maps[int(r)] for r in rows["row"].iloc[start:stop]], size, area)
                    run(occlude(x, masks), [], "evidence")
                    run(occlude(x, shifted(masks, generator)), [], "random")
                else:
                    if not control:
                        others = [k for k in range(hook.width) if k not in channels]
                        pick = torch.randperm(len(others), generator=generator)[: len(channels)]
                        control = [others[int(i)] for i in pick]
                    run(x, list(channels), "evidence")
                    run(x, control, "random")
        finally:
            if handle is not None:
                handle.remove()
    return _summarise(rows, results, predictions, how, area, list(channels) if how == "channels" else [])


def _summarise(
    rows: pd.DataFrame,
    results: dict[str, list[torch.Tensor]],
    predictions: dict[str, list[torch.Tensor]],
    how: str,
    area: float,
    channels: list[int],
) -> CausalCheck:
    import pandas as pd

    score = {k: torch.cat(v).numpy() for k, v in results.items()}
    pred = {k: torch.cat(v).numpy() for k, v in predictions.items()}
    labels = rows["label"].to_numpy(dtype=int) if "label" in rows else np.full(len(rows), -1)
    labelled = labels >= 0
    member = rows["member"].to_numpy(dtype=bool)
    out = []
    for who, chosen in (("members", member), ("non-members", ~member)):
        known = chosen & labelled
        for removed in ("evidence", "random"):
            out.append(
                {
                    "who": who,
                    "removed": removed,
                    "n": int(chosen.sum()),
                    "score_before": float(score["before"][chosen].mean()) if chosen.any() else np.nan,
                    "score_after": float(score[removed][chosen].mean()) if chosen.any() else np.nan,
                    "score_drop": float((score["before"] - score[removed])[chosen].mean()) if chosen.any() else np.nan,
                    "accuracy_before": float((pred["before"] == labels)[known].mean()) if known.any() else np.nan,
                    "accuracy_after": float((pred[removed] == labels)[known].mean()) if known.any() else np.nan,
                    "kept": float((pred[removed] == pred["before"])[chosen].mean()) if chosen.any() else np.nan,
                }
            )
    table = pd.DataFrame(out)
    drop = table.set_index(["who", "removed"])["score_drop"]
    return CausalCheck(
        table,
        how,
        area,
        channels,
        effect=float(drop["members", "evidence"] - drop["members", "random"]),
        contrast=float(drop["members", "evidence"] - drop["non-members", "evidence"]),
    )


__all__ = ["HOWS", "CausalCheck", "occlude", "occlusion_masks", "run_causal_check", "shifted"]
