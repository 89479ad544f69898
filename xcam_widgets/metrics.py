"""Faithfulness and localisation metrics of CAMs: batched, in torch, on the model's device.

Each function returns one value per image (`[B]`); the mean over a dataset is the caller's (see
`evaluate`). Maps are `[B, H, W]` in [0, 1] (`Explanation.map`), `x` the *preprocessed* input.

Faithfulness (the class probability is the softmax of the logits, class `classes[i]` for image i):
- `average_drop_increase` (Chattopadhyay et al. 2018, Grad-CAM++): with Y the probability on the
  image and O on the image multiplied by the map, Average Drop's term is max(0, Y − O) / Y and
  Increase in Confidence's indicator is [O > Y].
- `deletion_auc` / `insertion_auc` (Petsiuk et al. 2018, RISE): the probability while the pixels,
  most salient first, are replaced by a baseline (deletion; lower is better) or copied from the
  image onto a baseline (insertion; higher is better); the area under that curve by the
  trapezoid rule, over the fraction of pixels changed in [0, 1].

Where the map multiplies the input. `x * map` multiplies the *preprocessed* tensor, so a pixel
with map value 0 becomes 0 in the model's input space: the normalisation mean colour (mid-grey for
ImageNet statistics, 0.5 grey for the shapes nets), not black. We keep that convention because
(1) it is what pytorch-grad-cam (`multiply_tensor_with_cam`) and torchcam (`ClassificationMetric`)
do, so our numbers compare with theirs; (2) the metrics then need no knowledge of the
preprocessing; (3) the mean colour is less out-of-distribution than black. In general the masked
input is the blend `baseline + map · (x − baseline)`: `baseline=0` gives `x * map`, and the
pixel-space product `(pixels · map)` is exactly `baseline = preprocess(black)`, i.e. `−mean/std`
per channel for a normalising preprocess (`pixel_space_baseline`).

Deletion and insertion baselines follow RISE: deletion replaces pixels by zeros (again the mean
colour in input space), insertion starts from a strongly blurred copy of the image (a Gaussian of
σ = `BLUR_SIGMA` px, kernel `BLUR_KERNEL`, replicate padding), since inserting sharp pixels into a
flat image rewards edges rather than evidence. Both accept "zeros", "blur", a number or a tensor
that broadcasts to `x`.

Localisation (`masks` `[B, H, W]` bool, the ground-truth region of the class):
- `pointing_game`: is the map's maximum inside the mask dilated by `tolerance` px?
- `energy_in_mask`: the share of the map's sum that falls inside the mask.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .checks import positive_int
from .inputs import prepare_input
from .model_state import evaluation_mode
from .targets import logits_of

Baseline = Union[str, float, torch.Tensor]

BLUR_KERNEL = 11  # RISE's insertion substrate: Gaussian blur, kernel 11, sigma 5
BLUR_SIGMA = 5.0
POINTING_TOLERANCE_224 = 15  # Zhang et al. (2016): 15 px on a 224 px image
DEFAULT_STEPS = 50
DEFAULT_BATCH_SIZE = 64


def average_drop_increase(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Sequence[int] | int,
    *,
    baseline: Baseline = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, Average Drop's term max(0, Y − O) / Y (`[B]` float) and Increase in
    Confidence's indicator [O > Y] (`[B]` bool). Their means over a dataset are the paper's
    metrics (the paper prints them in percent).

    Y = softmax(model(x))[c], O = softmax(model(baseline + map · (x − baseline)))[c]; the default
    `baseline=0` is `x * map` in preprocessed space (module docstring). A probability Y of 0 gives
    a drop of 0. The 2B inputs run `batch_size` at a time, without gradients.
    """
    positive_int("batch_size", batch_size)
    x, maps, classes = _check(model, x, maps, classes)
    base = _baseline(baseline, x, "baseline")
    masked = base + maps[:, None] * (x - base)
    probs = _probabilities(model, torch.cat([x, masked]), classes.repeat(2), batch_size)
    y, o = probs[: len(x)], probs[len(x) :]
    safe = torch.where(y > 0, y, torch.ones_like(y))
    drop = torch.where(y > 0, (y - o).clamp(min=0) / safe, torch.zeros_like(y))
    return drop, o > y


def deletion_auc(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Sequence[int] | int,
    *,
    steps: int = DEFAULT_STEPS,
    baseline: Baseline = "zeros",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """RISE's deletion score per image (`[B]`, in [0, 1]; lower is more faithful): the area
    under the class probability as the pixels, in order of decreasing map value, are replaced by
    `baseline` in `steps` equal steps (see `causal_curve`)."""
    curve = causal_curve(model, x, maps, classes, "deletion", steps=steps, baseline=baseline, batch_size=batch_size)
    return auc(*curve)


def insertion_auc(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Sequence[int] | int,
    *,
    steps: int = DEFAULT_STEPS,
    baseline: Baseline = "blur",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """RISE's insertion score per image (`[B]`, in [0, 1]; higher is more faithful): the area
    under the class probability as the pixels, in order of decreasing map value, are copied from
    the image onto `baseline` (default: the blurred image) in `steps` equal steps."""
    curve = causal_curve(model, x, maps, classes, "insertion", steps=steps, baseline=baseline, batch_size=batch_size)
    return auc(*curve)


def causal_curve(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Sequence[int] | int,
    mode: str,
    *,
    steps: int = DEFAULT_STEPS,
    baseline: Baseline | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The deletion or insertion curve: `(fractions [S+1], probabilities [B, S+1])`.

    Step k changes the n_k = ⌊k·HW/S⌋ most salient pixels (all channels), S = min(steps, HW);
    fractions are n_k / HW, from 0 to 1. Ties in the map keep row-major order (a stable sort), so
    the curve is deterministic. All B·(S+1) perturbed inputs are built by masking with the pixel
    ranks (no loop over pixels) and run `batch_size` at a time, without gradients.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    x, maps, classes = _check(model, x, maps, classes)
    if baseline is None:
        baseline = "zeros" if mode == "deletion" else "blur"
    base = _baseline(baseline, x, "baseline")
    batch, _, height, width = x.shape
    pixels = height * width
    steps = min(steps, pixels)
    counts = torch.arange(steps + 1, device=x.device) * pixels // steps  # n_k, exact integers
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=x.device).expand(batch, -1))
    start, end = (x, base) if mode == "deletion" else (base, x)
    start, end = start.expand_as(x), end.expand_as(x)

    total = batch * (steps + 1)
    probs = torch.empty(total, device=x.device, dtype=torch.float32)
    with evaluation_mode(model), torch.no_grad():
        for first in range(0, total, batch_size):
            flat = torch.arange(first, min(first + batch_size, total), device=x.device)
            image, step = flat // (steps + 1), flat % (steps + 1)
            changed = (ranks[image] < counts[step, None]).view(-1, 1, height, width)
            inputs = torch.where(changed, end[image], start[image])
            probs[flat] = _softmax_at(model(inputs), classes[image], check=first == 0)
    return counts.float() / pixels, probs.view(batch, steps + 1)


def auc(fractions: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Area under `curve` `[B, S+1]` over `fractions` `[S+1]` (from 0 to 1) by the trapezoid rule."""
    return torch.trapezoid(curve, fractions.to(curve.dtype), dim=-1)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int | None = None) -> torch.Tensor:
    """Per image (`[B]` bool): does the map's maximum lie in the mask dilated by `tolerance` px?

    Dilation is a (2t+1)×(2t+1) max-pool, so "within t px" means Chebyshev distance ≤ t.
    `tolerance=None` scales Zhang et al.'s 15 px on a 224 px image to the mask's size:
    round(15 · min(H, W) / 224), e.g. 4 px on the 64 px shapes. The maximum is the first in
    row-major order when tied. A constant map (e.g. all zeros) points nowhere: False, as is an
    empty mask. Maps of another size are resized bilinearly to the masks'.
    """
    maps, masks = _check_localisation(maps, masks)
    if tolerance is None:
        tolerance = round(POINTING_TOLERANCE_224 * min(masks.shape[-2:]) / 224)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an int >= 0 (pixels) or None, got {tolerance!r}")
    region = masks.float()[:, None]
    if tolerance > 0:
        region = F.max_pool2d(region, 2 * tolerance + 1, stride=1, padding=tolerance)
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    hit = region.flatten(1).gather(1, peak[:, None]).squeeze(1) > 0
    return hit & (flat.amax(1) > flat.amin(1))


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image (`[B]` float in [0, 1]): Σ map·mask / Σ map. An all-zero map gives 0, never NaN.
    Maps of another size are resized bilinearly to the masks'."""
    maps, masks = _check_localisation(maps, masks)
    maps = maps.float().clamp(min=0)
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, inside / safe, torch.zeros_like(total))


def pixel_space_baseline(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The preprocessed value of a black pixel, −mean/std per channel (`[C, 1, 1]`): pass it as
    `baseline` to multiply the map in [0, 1] pixel space instead of the preprocessed input."""
    mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    return (-mean_t / std_t).reshape(-1, 1, 1)


def blur(x: torch.Tensor, sigma: float = BLUR_SIGMA, kernel_size: int = BLUR_KERNEL) -> torch.Tensor:
    """Separable Gaussian blur of `[B, C, H, W]` with replicate padding (a constant image stays constant)."""
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


# ---------------------------------------------------------------------------------------------
# Checks and shared steps


def _check(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, classes: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x on the model's device and dtype; maps `[B, H, W]` resized to x; classes a `[B]` long tensor."""
    x = prepare_input(model, x)
    batch, _, height, width = x.shape
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch.Tensor [B, H, W], got {type(maps).__name__}")
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] != batch:
        raise ValueError(f"maps must have shape [B, H, W] with B = {batch} (as x), got {tuple(maps.shape)}")
    maps = _resize(maps.to(device=x.device, dtype=x.dtype), (height, width))
    if isinstance(classes, bool):
        raise TypeError("classes must be an int, a sequence of ints or a [B] integer tensor, got a bool")
    classes = torch.as_tensor(classes, device=x.device)
    if classes.ndim == 0:  # one class for every image
        classes = classes.expand(batch)
    if classes.dtype.is_floating_point or classes.dtype == torch.bool or classes.shape != (batch,):
        raise ValueError(
            f"classes must be {batch} integer class indices (one per image), got {tuple(classes.shape)} {classes.dtype}"
        )
    return x, maps, classes.long()


def _check_localisation(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for value, name in ((maps, "maps"), (masks, "masks")):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, H, W], got {type(value).__name__}")
    maps, masks = (maps[None] if maps.ndim == 2 else maps), (masks[None] if masks.ndim == 2 else masks)
    if maps.ndim != 3 or masks.ndim != 3 or maps.shape[0] != masks.shape[0]:
        raise ValueError(
            f"maps and masks must be [B, H, W] with the same B, got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    maps = _resize(maps.to(masks.device).float(), (int(masks.shape[-2]), int(masks.shape[-1])))
    return maps, masks.bool()


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _baseline(baseline: Baseline, x: torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        if baseline == "blur":
            return blur(x)
        raise ValueError(f"{name} must be 'zeros', 'blur', a number or a tensor, got {baseline!r}")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be 'zeros', 'blur', a number or a tensor, got {type(baseline).__name__}")
    value = torch.as_tensor(baseline, device=x.device, dtype=x.dtype)
    try:
        return torch.broadcast_to(value, x.shape)
    except RuntimeError as err:
        raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to x {tuple(x.shape)}") from err


def _softmax_at(output: Any, classes: torch.Tensor, check: bool = False) -> torch.Tensor:
    logits = logits_of(output)
    if check:  # once per call: an out-of-range index would be a device-side assert on CUDA
        low, high = int(classes.min()), int(classes.max())
        if low < 0 or high >= logits.shape[1]:
            bad = low if low < 0 else high
            classes_n = logits.shape[1]
            raise ValueError(f"class {bad} is out of range: the model has {classes_n} classes (0..{classes_n - 1})")
    return torch.softmax(logits.float(), dim=1).gather(1, classes[:, None]).squeeze(1)


def _probabilities(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    with evaluation_mode(model), torch.no_grad():
        return torch.cat(
            [
                _softmax_at(model(chunk), cls, check=i == 0)
                for i, (chunk, cls) in enumerate(zip(inputs.split(batch_size), classes.split(batch_size)))
            ]
        )


__all__ = [
    "BLUR_KERNEL",
    "BLUR_SIGMA",
    "average_drop_increase",
    "auc",
    "blur",
    "causal_curve",
    "deletion_auc",
    "energy_in_mask",
    "insertion_auc",
    "pixel_space_baseline",
    "pointing_game",
]
