"""The explorer's state and cache, with no widgets: what each change invalidates.

- display changes (opacity, colormap) never reach this layer: nothing is recomputed;
- a new image clears everything;
- a class needs one forward and one backward pass, capturing every candidate layer at once,
  so switching layer or among gradient methods afterwards recomputes only cheap arithmetic;
- perturbation methods and diagnostics are cached per (image, class, layer, method, options).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from .capture import Capture, capture
from .diagnostics import Diagnosis, diagnose_context
from .discovery import LayerInfo, candidate_layers, default_layer
from .explain import Explanation, assemble, method_parts
from .images import ImageSource, load_image
from .inputs import prepare_input
from .methods import check_options, get_method
from .methods.context import MethodContext
from .model_state import evaluation_mode
from .models import ModelBundle

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float
    logit: float


def display_image(preprocess: Callable[[Image.Image], torch.Tensor], image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The photo as the model sees it, before normalisation: `[H, W, 3]` uint8.

    The geometric steps (resize, crop) of a torchvision pipeline are replayed on the PIL image;
    an unknown pipeline falls back to a plain resize to the input size."""
    transform = getattr(preprocess, "transform", preprocess)
    if isinstance(transform, T.Compose):
        for step in transform.transforms:
            if not isinstance(step, (T.Resize, T.CenterCrop)):
                break
            image = step(image)
    elif hasattr(transform, "crop_size") and hasattr(transform, "resize_size"):  # torchvision weights' transforms
        image = TF.center_crop(TF.resize(image, transform.resize_size), transform.crop_size)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def tensor_display(x: torch.Tensor) -> np.ndarray:
    """A preprocessed `[3, H, W]` tensor shown as uint8, min-max scaled (its normalisation is unknown)."""
    x = x.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class LRU(OrderedDict):
    """A small least-recently-used cache."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def lookup(self, key: Hashable) -> Any:
        self.move_to_end(key)
        return self[key]

    def store(self, key: Hashable, value: Any) -> Any:
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Session:
    """A model, one image and cached results for any (layer, class, method, options)."""

    def __init__(self, bundle: ModelBundle | nn.Module, image: ImageSource | torch.Tensor, *, cache_size: int = 64):
        if isinstance(bundle, nn.Module):
            bundle = ModelBundle(type(bundle).__name__, bundle, None, [], 0)
        if not isinstance(bundle, ModelBundle):
            raise TypeError(f"Session needs a ModelBundle or an nn.Module, got {type(bundle).__name__}")
        self.bundle = bundle
        self.model = bundle.model
        self.stats: Counter[str] = Counter()
        self._captures: LRU = LRU(4)
        self._results: LRU = LRU(cache_size)
        self._layer_cache: dict[tuple[int, ...], list[LayerInfo]] = {}
        self.set_image(image)

    # --- the image ---------------------------------------------------------------------------
    def set_image(self, image: ImageSource | torch.Tensor) -> None:
        """Load, check and preprocess a new image; the old one stays if this raises."""
        if isinstance(image, torch.Tensor):
            x = prepare_input(self.model, image)
            if x.shape[0] != 1:
                raise ValueError(f"the explorer shows one image; got a batch of {x.shape[0]}")
            shown = tensor_display(x[0])
        else:
            if self.bundle.preprocess is None:
                raise TypeError("this model has no preprocessing: pass a preprocessed [C, H, W] tensor")
            pil = load_image(image)
            x = prepare_input(self.model, self.bundle.preprocess(pil))
            shown = display_image(self.bundle.preprocess, pil, tuple(x.shape[2:]))
        self.x, self.display = x, shown
        self._captures.clear()
        self._results.clear()
        self._logits: torch.Tensor | None = None

    # --- what the controls offer ---------------------------------------------------------------
    @property
    def layers(self) -> list[LayerInfo]:
        shape = tuple(self.x.shape[1:])
        if shape not in self._layer_cache:
            self._layer_cache[shape] = candidate_layers(self.model, shape)
        return self._layer_cache[shape]

    @property
    def default_layer(self) -> str:
        return default_layer(self.layers, self.model)

    def class_name(self, index: int) -> str:
        names = self.bundle.categories
        return names[index] if 0 <= index < len(names) else f"class {index}"

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            self._logits = self.capture(None).logits[0]
        return self._logits

    def predictions(self, k: int = 5) -> list[Prediction]:
        probs = torch.softmax(self.logits.float(), dim=0)
        top = torch.topk(probs, min(k, probs.numel()))
        return [
            Prediction(int(i), self.class_name(int(i)), float(p), float(self.logits[i]))
            for p, i in zip(top.values, top.indices)
        ]

    # --- computation -------------------------------------------------------------------------
    def capture(self, target: int | None) -> Capture:
        """A and G of every candidate layer for class `target` (top-1 for None): one forward and
        one backward pass, cached."""
        key = ("capture", target)
        if key in self._captures:
            return self._captures.lookup(key)
        self.stats["capture"] += 1
        names = [info.name for info in self.layers]
        result = self._captures.store(key, capture(self.model, self.x, names, target))
        if target is None and result.scorer.classes is not None:  # the top-1 class is now known too
            self._captures.store(("capture", int(result.scorer.classes[0])), result)
        return result

    def explanation(self, layer: str, method: str, target: int | None = None,
                    progress: Progress | None = None, **options: Any) -> Explanation:
        spec = get_method(method)
        options = check_options(spec, options)
        key = ("explain", layer, spec.name, target, tuple(sorted(options.items())))
        if key in self._results:
            return self._results.lookup(key)
        cap = self._capture_with(layer, target)
        self.stats["method"] += 1
        with evaluation_mode(self.model):
            parts = method_parts(spec, self.model, self.x, layer, cap, None, options, progress)
        return self._results.store(key, assemble(spec, layer, cap, parts, False, self.x.shape[2:]))

    def diagnosis(self, layer: str, method: str, target: int | None = None, batch_size: int = 64,
                  progress: Progress | None = None, **options: Any) -> Diagnosis:
        spec = get_method(method)
        options = check_options(spec, options)
        key = ("diagnose", layer, spec.name, target, batch_size, tuple(sorted(options.items())))
        if key in self._results:
            return self._results.lookup(key)
        cap = self._capture_with(layer, target)
        self.stats["diagnosis"] += 1
        with evaluation_mode(self.model):
            result = diagnose_context(MethodContext(self.model, self.x, layer, cap, progress=progress),
                                      spec.name, options, batch_size)
        return self._results.store(key, result)

    def _capture_with(self, layer: str, target: int | None) -> Capture:
        cap = self.capture(target)
        if layer not in cap.activations:
            choices = ", ".join(info.name for info in self.layers[-5:])
            raise ValueError(f"layer {layer!r} is not a candidate layer of this model (e.g. {choices})")
        return cap
