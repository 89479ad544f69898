"""The Session's state and caches, with no widgets: what each change invalidates.

- display changes (opacity, colormap) never reach this layer: nothing is recomputed;
- a new image starts a new generation with empty caches: a result computed for an old image is
  stored with that image, so it is never returned for the new one;
- a change to the model (its weights in place or swapped, its dtype or device, a replaced parameter,
  buffer or submodule: `ModelWatch`) empties the image's caches, and a changed module tree re-lists the layers;
- an image's forward pass is kept with its autograd graph (`ForwardGraph`), so a class or a layer
  costs one backward pass to the layers shown, never a new forward pass;
- gradient methods are then cheap arithmetic; every result is cached per (image, layer, method,
  class, options); the classes' gradients are kept under a byte budget (`KeptGradients`), and
  `memory` counts everything held.

Thread-safe: every use of the model holds `evaluation_mode(model)`, whose per-model lock lets
threads (the Explorer's view and diagnostics workers) take turns; the caches have their own locks,
never held while waiting for the model.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import views
from .capture import Capture
from .diagnostics import Diagnosis, diagnose_context
from .discovery import LayerInfo, candidate_layers, default_layer
from .explain import Explanation, assemble
from .forward_graph import ForwardGraph, HeldBytes, KeptGradients, held_bytes
from .images import ImageSource, load_image
from .inputs import prepare_input
from .lru import LRU
from .methods import Method, check_options, get_method
from .methods.context import MethodContext
from .model_state import Look, ModelWatch, evaluation_mode
from .models import ModelBundle
from .models.bundle import Task
from .task_views import TargetKey, checked_key, default_key, target_of, task_of

Progress = Callable[[int, int], None]
CLASS_PASSES = 8  # classes whose gradients an image keeps
GRADIENT_BUDGET = 128 * 2**20  # bytes of gradients kept beyond the class last used
DIAGNOSIS_BATCH = 64  # ablated copies per pass when the method has no batch_size of its own


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float
    logit: float


@dataclass
class _Image:
    """One image and everything computed for it with one state of the model; `set_image` replaces it
    whole, a change to the model replaces it with the same image. `source` is the tensor `x` was
    prepared from, kept to prepare it again for a model moved to another dtype or device."""

    generation: int
    source: torch.Tensor
    x: torch.Tensor
    display: np.ndarray
    results: LRU
    passes: KeptGradients
    graph: ForwardGraph | None = None
    display_note: str | None = None  # why the photo shown is not the plain resized photo (`views.display_frame`)


def options_key(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as a hashable, order-free cache key."""
    return tuple(sorted(options.items()))


class SessionCore:
    """A model, one image and cached results for any (layer, class, method, options). `cache_size`:
    results kept per image; `gradient_budget`: bytes of gradients kept beyond the class last used."""

    def __init__(
        self,
        bundle: ModelBundle | nn.Module,
        image: ImageSource | torch.Tensor,
        *,
        cache_size: int = 64,
        gradient_budget: int = GRADIENT_BUDGET,
    ):
        if isinstance(bundle, nn.Module):
            bundle = ModelBundle(type(bundle).__name__, bundle, None, [], 0)
        if not isinstance(bundle, ModelBundle):
            raise TypeError(f"Session needs a ModelBundle or an nn.Module, got {type(bundle).__name__}")
        if isinstance(gradient_budget, bool) or not isinstance(gradient_budget, int) or gradient_budget < 0:
            raise ValueError(f"gradient_budget must be an int >= 0 (bytes), got {gradient_budget!r}")
        self.bundle = bundle
        self.model = bundle.model
        self.cache_size, self.gradient_budget = cache_size, gradient_budget
        self.stats: Counter[str] = Counter()
        self._layer_cache: dict[tuple[int, int, int], list[LayerInfo]] = {}
        self._listed: set[str] = set()  # every layer name listed so far, to say when one is gone
        self._watch = ModelWatch(self.model)
        self._generations = 0
        self._swap = threading.Lock()
        self.set_image(image)

    # --- the image ---------------------------------------------------------------------------
    def set_image(self, image: ImageSource | torch.Tensor) -> None:
        """Load, check and preprocess a new image; the old one stays if this raises. Work still
        running for the old image finishes into the old image's caches, which are dropped."""
        if isinstance(image, torch.Tensor):
            source = image
            x = prepare_input(self.model, source)
            if x.shape[0] != 1:
                raise ValueError(f"the explorer shows one image; got a batch of {x.shape[0]}")
            shown, note = views.tensor_display(x[0]), None
        else:
            if self.bundle.preprocess is None:
                raise TypeError("this model has no preprocessing: pass a preprocessed [C, H, W] tensor")
            pil = load_image(image)
            source = self.bundle.preprocess(pil)
            x = prepare_input(self.model, source)
            frame = views.display_frame(self.bundle.preprocess, pil, (x.shape[2], x.shape[3]), model_input=x[0])
            shown, note = frame.pixels, frame.note
        with self._swap:
            self._generations += 1
            self._commit(self._watch.look())
            self._current = self._fresh(self._generations, source, x, shown, note)

    def _fresh(
        self, generation: int, source: torch.Tensor, x: torch.Tensor, shown: np.ndarray, note: str | None
    ) -> _Image:
        passes = KeptGradients(CLASS_PASSES, self.gradient_budget)
        return _Image(generation, source, x, shown, LRU(self.cache_size), passes, display_note=note)

    def _commit(self, look: Look) -> None:
        """Caches are filled for the model as `look` saw it; re-list the layers if its module tree changed."""
        if self._watch.changed(look)[1]:
            self._layer_cache.clear()
        self._watch.commit(look)

    @property
    def _image(self) -> _Image:
        """The current image, its caches emptied first if the model changed since they were filled (see
        `ModelWatch`): a kept forward pass or cached map of other weights would be stale, and autograd
        refuses a backward pass through tensors modified in place. Same image, so same generation; `x` is
        prepared again, for a model moved to another dtype or device. Read once per view, so it costs
        what `ModelWatch.look` costs (~0.25 ms of CPU for EfficientNet-Lite0)."""
        with self._swap:
            image, look = self._current, self._watch.look()
            if self._watch.changed(look)[0]:
                x = prepare_input(self.model, image.source)  # raises (nothing committed) if the model refuses it
                self._commit(look)
                image = self._current = self._fresh(
                    image.generation, image.source, x, image.display, image.display_note
                )
            return image

    @property
    def generation(self) -> int:
        """Counts `set_image` calls: a view drawn for another generation shows another image. A model
        change keeps the generation, so this skips the model check (read at every redraw)."""
        return self._current.generation

    @property
    def x(self) -> torch.Tensor:
        return self._image.x

    @property
    def display(self) -> np.ndarray:
        """The photo as shown, which no model change alters (so no model check)."""
        return self._current.display

    @property
    def display_note(self) -> str | None:
        """None when `display` is the photo cropped as the preprocess crops it; else what is shown instead."""
        return self._current.display_note

    @property
    def graph_bytes(self) -> int:
        """Bytes the kept forward pass holds (0 before the first computation on this image); the classes'
        gradients and cached results come on top: see `memory`."""
        graph = self._image.graph
        return 0 if graph is None else graph.nbytes()

    @property
    def memory(self) -> HeldBytes:
        """Everything held for the current image, in bytes, each storage counted once (`HeldBytes`):
        `graph_bytes` with the image, the classes' gradients and the cached results."""
        image = self._image
        return held_bytes(self.model, image.x, image.graph, image.passes.held(), image.results.values())

    # --- what the controls offer ---------------------------------------------------------------
    @property
    def layers(self) -> list[LayerInfo]:
        return self._layers(self._image)

    @property
    def default_layer(self) -> str:
        """The bundle's recommended CAM layer where it is a candidate layer, else the last feature map
        (`xw.default_layer`)."""
        layers = self.layers
        if any(info.name == self.bundle.cam_layer for info in layers):
            return str(self.bundle.cam_layer)
        return default_layer(layers, self.model)

    def class_name(self, index: int) -> str:
        names = self.bundle.categories
        return names[index] if 0 <= index < len(names) else f"class {index}"

    @property
    def logits(self) -> torch.Tensor:
        logits = self._graph(self._image).logits
        if logits is None:
            raise ValueError("this model's output holds no logits, so the explorer cannot rank its classes")
        return logits[0]

    def predictions(self, k: int = 5) -> list[Prediction]:
        logits = self.logits
        probs = torch.softmax(logits.float(), dim=0)
        top = torch.topk(probs, min(k, probs.numel()))
        return [
            Prediction(int(i), self.class_name(int(i)), float(p), float(logits[i]))
            for p, i in zip(top.values, top.indices)
        ]

    # --- results -------------------------------------------------------------------------------
    def capture(self, target: TargetKey | None, layers: Sequence[str] | None = None) -> Capture:
        """A of every candidate layer and G = ∂S_c/∂A of `layers` (default: all) for class `target`
        (top-1 for None). The forward pass is the image's kept one; missing gradients cost one
        backward pass, and so do those of a class evicted by the gradient budget (`KeptGradients`)."""
        image = self._image
        names = [info.name for info in self._layers(image)] if layers is None else list(layers)
        return self._capture(image, self._target(image, target), names)

    def explanation(
        self, layer: str, method: str, target: TargetKey | None = None, progress: Progress | None = None, **options: Any
    ) -> Explanation:
        spec = get_method(method)
        image = self._image
        checked = check_options(spec, options)
        return self._explanation(image, layer, spec, self._target(image, target), checked, progress)

    def diagnosis(
        self,
        layer: str,
        method: str,
        target: TargetKey | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> Diagnosis:
        """Axiom diagnostics. `batch_size` is the ablated copies per pass, and the method's own batch
        size where it has one; None: the method's default batch size, else DIAGNOSIS_BATCH."""
        spec = get_method(method)
        if batch_size is not None and "batch_size" in spec.options:
            options = {**options, "batch_size": batch_size}
        options = check_options(spec, options)
        batch = batch_size if batch_size is not None else options.get("batch_size", DIAGNOSIS_BATCH)
        image = self._image
        target = self._target(image, target)
        key = ("diagnose", layer, spec.name, target, batch, options_key(options))
        return self._cached(
            image,
            key,
            "diagnosis",
            layer,
            target,
            lambda cap: diagnose_context(
                MethodContext(self.model, image.x, layer, cap, progress=progress), spec.name, options, batch
            ),
        )

    # --- internals: every path below takes the image it works for ----------------------------------
    def _layers(self, image: _Image) -> list[LayerInfo]:
        shape = (image.x.shape[1], image.x.shape[2], image.x.shape[3])
        found = self._layer_cache.get(shape)
        if found is None:
            found = self._layer_cache.setdefault(shape, candidate_layers(self.model, shape))
            self._listed.update(info.name for info in found)
        return found

    def _check_layers(self, image: _Image, layers: Sequence[str]) -> None:
        infos = self._layers(image)
        known = {info.name for info in infos}
        for layer in layers:
            if layer not in known:
                choices = ", ".join(info.name for info in infos[-5:])
                if layer in self._listed:
                    raise ValueError(
                        f"layer {layer!r} is gone: the model's modules changed since it was listed, and it is no "
                        f"longer a candidate layer; choose one of the layers listed now (e.g. {choices})"
                    )
                raise ValueError(f"layer {layer!r} is not a candidate layer of this model (e.g. {choices})")

    def _graph(self, image: _Image) -> ForwardGraph:
        """The image's forward pass with every candidate layer recorded: computed once."""
        if image.graph is None:
            with evaluation_mode(self.model):
                if image.graph is None:
                    names = [info.name for info in self._layers(image)]
                    image.graph = ForwardGraph(self.model, image.x, names)
                    self.stats["forward"] += 1
        return image.graph

    def _task(self, image: _Image) -> Task:
        """The bundle's task, or the task the output's form says for a bare module (`task_of`)."""
        return self.bundle.task if self.bundle.task != "classification" else task_of(self._graph(image).output)

    def _target(self, image: _Image, target: TargetKey | None) -> TargetKey:
        """What is explained, as a target key (see `task_views`): `target`, or for None the top-1 class,
        the largest predicted class of a segmentation, or a detector's best detection."""
        if target is not None:
            return checked_key(target)
        task = self._task(image)
        if task != "classification":
            return default_key(task, self._graph(image).output, self.bundle.categories)
        classes = self._graph(image).scorer(None).classes
        if classes is None:
            raise ValueError("this model's output holds no logits: choose a class index")
        return int(classes[0])

    def _capture(self, image: _Image, target: TargetKey, names: Sequence[str]) -> Capture:
        if not names:
            raise ValueError("no layers given: name at least one candidate layer")
        self._check_layers(image, names)
        with evaluation_mode(self.model):
            graph = self._graph(image)
            found = image.passes.get(target, lambda: graph.scorer(target_of(target, graph.output)))
            missing = [name for name in dict.fromkeys(names) if name not in found.gradients]
            if missing:
                image.passes.add(found, *graph.gradients(found.scorer, missing))
                self.stats["backward"] += 1
            assert found.score is not None  # set with the pass's first gradients
            return Capture(
                logits=graph.logits,
                score=found.score,
                scorer=found.scorer,
                activations=graph.activations,
                gradients={n: found.gradients[n] for n in names},
            )

    def _explanation(
        self,
        image: _Image,
        layer: str,
        spec: Method,
        target: TargetKey,
        options: dict[str, Any],
        progress: Progress | None,
    ) -> Explanation:
        key = ("explain", layer, spec.name, target, options_key(options))

        def compute(cap: Capture) -> Explanation:
            parts = spec.run(MethodContext(self.model, image.x, layer, cap, None, progress), **options)
            return assemble(spec, layer, cap, parts, False, image.x.shape[2:])

        return self._cached(image, key, "method", layer, target, compute)

    def _cached(
        self, image: _Image, key: Hashable, stat: str, layer: str, target: TargetKey, compute: Callable[[Capture], Any]
    ) -> Any:
        """The result stored with `image` under `key`, else `compute(capture)` under the model's lock,
        stored with that image. Checked twice: another thread may have computed it while this one waited."""
        found = image.results.get(key)
        if found is not None:
            return found
        with evaluation_mode(self.model):
            found = image.results.get(key)
            if found is not None:
                return found
            cap = self._capture(image, target, [layer])
            self.stats[stat] += 1
            return image.results.put(key, compute(cap))
