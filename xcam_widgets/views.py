"""What a view shows, as plain data: the photo, maps at the layer's resolution, layer picks, bars.

Pure functions with no widgets and no model; `Session` calls them on its cached results, and any
front end (the Explorer, a gallery, a sanity-check tab) draws what they return.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
import torchvision.transforms.v2 as v2
from PIL import Image
from torch import nn

from .checks import positive_int
from .discovery import LayerInfo
from .maps import scale_unit
from .task_views import TargetKey

SWEEP_LAYERS = 12


@dataclass(frozen=True)
class Conservation:
    """Conservation bars at one layer for one class: Σ_xy M of each method's raw map, and S_c."""

    layer: str
    target: TargetKey
    methods: tuple[str, ...]
    sums: tuple[float, ...]
    score: float


def low_res_map(raw: torch.Tensor) -> np.ndarray:
    """ReLU of the first raw map of `[B, h, w]`, min-max scaled to [0, 1] at the layer's resolution
    (a constant map is all zeros): what a browser upsamples and draws, `[h, w]` float32."""
    return scale_unit(raw[:1].clamp(min=0).float())[0].cpu().numpy()


def spread_layers(layers: Sequence[LayerInfo], last: str, count: int = SWEEP_LAYERS) -> list[str]:
    """Up to `count` layers spread evenly through `layers` up to `last`, first and last of them
    included, at the shallowest nesting depth that offers at least four (all depths otherwise)."""
    positive_int("count", count)
    names_all = [info.name for info in layers]
    if last not in names_all:
        raise ValueError(f"layer {last!r} is not a candidate layer")
    upto = layers[: names_all.index(last) + 1]
    names: list[str] = []
    for depth in range(0, max(info.depth for info in upto) + 1):
        names = [info.name for info in upto if info.depth <= depth]
        if len(names) >= 4:
            break
    picks = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
    return [names[i] for i in picks]


@dataclass(frozen=True)
class DisplayFrame:
    """What a view draws under the maps: `pixels`, `[H, W, 3]` uint8 in the frame of the model's input;
    `note`: None when they are the photo resized and cropped as the preprocess does, else a sentence
    saying that (and why) they are the model's own input, de-normalised, for the view to show."""

    pixels: np.ndarray
    note: str | None = None


def display_image(
    preprocess: Callable[[Image.Image], torch.Tensor],
    image: Image.Image,
    size: tuple[int, int],
    *,
    model_input: torch.Tensor | None = None,
) -> np.ndarray:
    """The photo as the model sees it, before normalisation: `[H, W, 3]` uint8 (`display_frame`'s pixels)."""
    return display_frame(preprocess, image, size, model_input=model_input).pixels


def display_frame(
    preprocess: Callable[[Image.Image], torch.Tensor],
    image: Image.Image,
    size: tuple[int, int],
    *,
    model_input: torch.Tensor | None = None,
) -> DisplayFrame:
    """The photo in the frame of the model's input of size `size` (H, W), and a note where it is not
    the photo itself.

    The geometry of the preprocess (`frame_geometry`) is replayed on the PIL image. Where it is
    unknown, or gives another size than `size`, the model's own input is shown (`model_input`, the
    `[3, H, W]` tensor the model got, else `preprocess(image)` run again), de-normalised with the
    preprocess's Normalize (or image processor's mean and std) when it has one; a preprocess whose
    input is the photo squashed to its size, up to a per-channel affine map, shows that photo."""
    steps = frame_geometry(preprocess)
    if not isinstance(steps, str):
        frame = image.convert("RGB")
        for step in steps:
            frame = step(frame)
        if frame.size == (size[1], size[0]):
            return DisplayFrame(np.asarray(frame, dtype=np.uint8))
        steps = f"its resize and crop give {frame.height}x{frame.width}, not the model's {size[0]}x{size[1]}"
    return _model_input_frame(preprocess, image, size, steps, model_input)


Step = Callable[[Image.Image], Image.Image]

_PRESETS = "torchvision.transforms._presets"  # the module of torchvision weights' `.transforms()`
_CONTAINERS = (T.Compose, v2.Compose, nn.Sequential)
_GEOMETRY = (T.Resize, T.CenterCrop, v2.Resize, v2.CenterCrop)
_PIXEL_ONLY = (  # change values or types, never which pixel is where
    T.ToTensor,
    T.PILToTensor,
    T.ConvertImageDtype,
    T.Normalize,
    v2.ToImage,
    v2.ToDtype,
    v2.ToPureTensor,
    v2.PILToTensor,
    v2.ToTensor,
    v2.ConvertImageDtype,
    v2.Normalize,
    v2.Identity,
    nn.Identity,
)


def frame_geometry(preprocess: Callable) -> list[Step] | str:
    """The geometric steps of a preprocess as PIL operations, or why they are unknown.

    Understood: torchvision v1 and v2 `Resize` and `CenterCrop` in a `Compose` (or `nn.Sequential`,
    nested) in any order with steps that only change values (ToTensor, PILToTensor, ToImage, ToDtype,
    ConvertImageDtype, Normalize); a resize on a tensor puts the pixels where it does on a PIL image.
    torchvision weights' transforms (resize then crop); Hugging Face image processors (`do_resize` with
    `size` {height, width} or {shortest_edge}, then `do_center_crop` with `crop_size`)."""
    return _geometry(_unwrapped(preprocess))


def _unwrapped(preprocess: Callable) -> Any:
    """The transform inside `models.bundle.Preprocess` and the processor inside
    `models.hf_models.ProcessorTransform` (attributes, not methods: a v2 transform has a `transform` method)."""
    for attribute in ("transform", "processor"):
        inner = getattr(preprocess, attribute, None)
        if inner is not None and not inspect.ismethod(inner):
            preprocess = inner
    return preprocess


def _geometry(transform: Any) -> list[Step] | str:
    if isinstance(transform, _CONTAINERS):
        steps: list[Step] = []
        for part in transform.transforms if isinstance(transform, (T.Compose, v2.Compose)) else transform:
            inner = _geometry(part)
            if isinstance(inner, str):
                return inner
            steps += inner
        return steps
    if isinstance(transform, _GEOMETRY):
        return [transform]
    if isinstance(transform, _PIXEL_ONLY):
        return []
    preset = type(transform).__name__ if type(transform).__module__ == _PRESETS else None
    if preset == "ImageClassification":
        resize = partial(TF.resize, size=transform.resize_size, interpolation=transform.interpolation)
        return [resize, partial(TF.center_crop, output_size=transform.crop_size)]
    if preset == "SemanticSegmentation":
        size = transform.resize_size
        return [partial(TF.resize, size=size, interpolation=transform.interpolation)] if size else []
    if preset == "ObjectDetection":
        return []
    if hasattr(transform, "do_resize") and hasattr(transform, "size"):
        return _processor_geometry(transform)
    return f"the geometry of {type(transform).__name__} is unknown"


def _size_field(size: object, key: str) -> int:
    """`size[key]` of a processor's size (a dict, or transformers' SizeDict); 0 where it is unset."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return 0 if value is None else int(value)


_SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")


def _processor_geometry(processor: object) -> list[Step] | str:
    """A Hugging Face image processor's resize (HF's rule: {height, width} exactly; {shortest_edge} as
    torchvision's `Resize(int)`) and centre crop (offset ⌊(side − crop) / 2⌋, zero padding)."""
    name = type(processor).__name__
    if getattr(processor, "do_pad", False) or getattr(processor, "crop_pct", None) is not None:
        return f"{name} pads or crops by a percentage, which is not replayed"
    steps: list[Step] = []
    size = getattr(processor, "size", None)
    if getattr(processor, "do_resize", False):
        keys = {k for k in _SIZE_KEYS if _size_field(size, k)}
        resample = Image.Resampling(int(getattr(processor, "resample", None) or Image.Resampling.BILINEAR))
        if keys == {"height", "width"}:
            target = (_size_field(size, "width"), _size_field(size, "height"))
            steps.append(lambda image: image.resize(target, resample))
        elif keys == {"shortest_edge"}:
            steps.append(partial(_resize_shortest, edge=_size_field(size, "shortest_edge"), resample=resample))
        else:
            return f"{name} resizes by size={size!r}, which is not replayed"
    if getattr(processor, "do_center_crop", False):
        crop = getattr(processor, "crop_size", None)
        height, width = _size_field(crop, "height"), _size_field(crop, "width")
        if not height or not width:
            return f"{name} crops by crop_size={crop!r}, which is not replayed"
        steps.append(partial(_hf_center_crop, height=height, width=width))
    return steps


def _resize_shortest(image: Image.Image, edge: int, resample: Image.Resampling) -> Image.Image:
    """The short side to `edge`, the long one to ⌊edge · long / short⌋ (HF's and torchvision's rule)."""
    short, long = sorted(image.size)
    other = int(edge * long / short)
    return image.resize((edge, other) if image.width <= image.height else (other, edge), resample)


def _hf_center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    """HF's centre crop: a larger crop pads ⌊(crop − side) / 2⌋ zeros before the image, a smaller
    one starts at ⌊(side − crop) / 2⌋."""

    def start(side: int, crop: int) -> int:
        return -((crop - side) // 2) if crop > side else (side - crop) // 2

    left, top = start(image.width, width), start(image.height, height)
    return image.crop((left, top, left + width, top + height))


def _normalisation(preprocess: Callable) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean, std, scale) with model input x = (pixel / scale − mean) / std, from the preprocess's
    (last) Normalize or an image processor's image_mean, image_std and rescale_factor; None if unknown."""
    transform = _unwrapped(preprocess)
    if hasattr(transform, "image_mean") and hasattr(transform, "do_normalize"):
        scale = 1 / float(transform.rescale_factor) if getattr(transform, "do_rescale", False) else 1.0
        if not getattr(transform, "do_normalize", False):
            return np.zeros(3), np.ones(3), scale
        return np.asarray(transform.image_mean, float), np.asarray(transform.image_std, float), scale
    parts = list(transform.transforms) if isinstance(transform, (T.Compose, v2.Compose)) else [transform]
    found = [p for p in parts if isinstance(p, (T.Normalize, v2.Normalize))]
    if not found:
        return None
    return np.asarray(found[-1].mean, float), np.asarray(found[-1].std, float), 255.0


def _model_input_frame(
    preprocess: Callable, image: Image.Image, size: tuple[int, int], why: str, x: torch.Tensor | None
) -> DisplayFrame:
    """The model's input `x` (or `preprocess(image)`) shown as a photo (see `display_frame`); `why`
    the geometry was not replayed."""
    squashed = np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.uint8)
    x = preprocess(image) if x is None else x
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4) or tuple(x.shape[-3:]) != (3, *size):
        note = f"The photo is resized to the model's input, not cropped as the preprocess does: {why}."
        return DisplayFrame(squashed, note)
    x = x.reshape(3, *size).detach().float().cpu()
    if _affine_per_channel(squashed, x):
        return DisplayFrame(squashed)
    known = _normalisation(preprocess)
    if known is None and 0 <= float(x.min()) and float(x.max()) <= 1:  # already a [0, 1] photo: shown as it is
        note = f"The model's own input is shown: {why}."
        return DisplayFrame((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), note)
    if known is None:
        note = f"The model's own input is shown, min-max scaled (its normalisation is unknown): {why}."
        return DisplayFrame(tensor_display(x), note)
    mean, std, scale = known
    pixels = (x.permute(1, 2, 0).numpy() * std + mean) * scale
    note = f"The model's own input is shown, de-normalised with the preprocess's mean and std: {why}."
    return DisplayFrame(pixels.round().clip(0, 255).astype(np.uint8), note)


def _affine_per_channel(photo: np.ndarray, x: torch.Tensor, min_correlation: float = 0.995) -> bool:
    """Whether each channel of `x` is an affine function of the photo's (correlation at least
    `min_correlation`; a constant channel must stay constant): the photo is then the model's frame."""
    for channel in range(3):
        a, b = photo[..., channel].astype(np.float64).ravel(), x[channel].double().numpy().ravel()
        if a.std() == 0 or b.std() == 0:
            if a.std() != b.std():
                return False
            continue
        if np.corrcoef(a, b)[0, 1] < min_correlation:
            return False
    return True


def tensor_display(x: torch.Tensor) -> np.ndarray:
    """A preprocessed `[3, H, W]` tensor shown as uint8, min-max scaled (its normalisation is unknown)."""
    x = x.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
