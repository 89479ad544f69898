"""The Session: the view API over `SessionCore`, arrays and plain data for any front end.

The Explorer, the Gallery and notebooks draw what these methods return; they never reach into a
capture or decide what to compute (see `session_core` for the caches and what invalidates them)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from . import views
from .methods import GRADIENT_METHODS, REGISTRY, check_options, get_method
from .models.bundle import Task
from .sanity import DEFAULT_METHODS, THRESHOLD, sanity_check
from .sanity_view import SanityView, sanity_view
from .session_core import Progress, SessionCore, options_key
from .task_views import (
    Choice,
    TargetKey,
    checked_key,
    detection_at,
    detection_choices,
    key_mask,
    predicted_labels,
    region_key,
    segment_choices,
    target_of,
)
from .views import Conservation


class Session(SessionCore):
    """A model, one image and cached results for any (layer, class, method, options), with views."""

    # --- the view API: arrays and plain data for any front end -----------------------------------
    def low_res_map(
        self,
        layer: str,
        method: str,
        target: TargetKey | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """`method`'s map at `layer` for class `target`, `[h, w]` in [0, 1] (see `views.low_res_map`)."""
        return views.low_res_map(self.explanation(layer, method, target, progress, **dict(options or {})).raw)

    def conservation(
        self, layer: str, target: TargetKey | None = None, methods: Sequence[str] | None = None
    ) -> Conservation:
        """Σ M of each method (default: the gradient methods with a score scale) against S_c."""
        image = self._image
        target = self._target(image, target)
        chosen = (
            [get_method(m) for m in methods]
            if methods is not None
            else [REGISTRY[m] for m in GRADIENT_METHODS if REGISTRY[m].scaled]
        )
        sums = tuple(
            float(self._explanation(image, layer, spec, target, check_options(spec, {}), None).raw.sum())
            for spec in chosen
        )
        score = float(self._capture(image, target, [layer]).score[0])
        return Conservation(layer, target, tuple(spec.name for spec in chosen), sums, score)

    def sweep_layers(self, count: int = views.SWEEP_LAYERS) -> list[str]:
        """Up to `count` layers spread through the network up to the default layer."""
        return views.spread_layers(self.layers, self.default_layer, count)

    def sweep_maps(
        self,
        method: str,
        target: TargetKey | None = None,
        layers: Sequence[str] | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, np.ndarray]:
        """Layer name → `method`'s low-resolution map, for `layers` (default: `sweep_layers()`);
        their gradients come from one backward pass."""
        spec = get_method(method)
        checked = check_options(spec, dict(options or {}))
        image = self._image
        target = self._target(image, target)
        infos = self._layers(image)
        names = list(layers) if layers is not None else views.spread_layers(infos, self.default_layer)
        self._capture(image, target, names)
        return {
            name: views.low_res_map(self._explanation(image, name, spec, target, checked, progress).raw)
            for name in names
        }

    def method_maps(
        self,
        layer: str,
        target: TargetKey | None = None,
        methods: Sequence[str] = GRADIENT_METHODS,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, np.ndarray]:
        """Method name → its low-resolution map at `layer`; `options` maps a method to its options."""
        image = self._image
        target = self._target(image, target)
        maps = {}
        for name in methods:
            spec = get_method(name)
            checked = check_options(spec, dict((options or {}).get(name, {})))
            maps[spec.name] = views.low_res_map(self._explanation(image, layer, spec, target, checked, progress).raw)
        return maps

    def class_maps(
        self,
        layer: str,
        method: str,
        targets: Sequence[TargetKey],
        *,
        options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> dict[TargetKey, np.ndarray]:
        """Target key (a class index, or see `task_views`) → `method`'s low-resolution map at `layer` for it."""
        spec = get_method(method)
        checked = check_options(spec, dict(options or {}))
        image = self._image
        return {
            t: views.low_res_map(self._explanation(image, layer, spec, self._target(image, t), checked, progress).raw)
            for t in targets
        }

    def sanity(
        self,
        layer: str,
        methods: Sequence[str] = DEFAULT_METHODS,
        target: TargetKey | None = None,
        *,
        steps: str = "tail",
        random_classes: int = 3,
        seed: int = 0,
        threshold: float = THRESHOLD,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> SanityView:
        """The sanity checks of `methods` at `layer` for class `target` (see `sanity_check`): the
        cascading randomisation (`steps="tail"`: the layers after `layer`, output first) and the
        random-logit test, as plain data per method (`sanity_view`: the displayed maps, which SSIM
        compares, the similarity curves, the verdict in words). It randomises a copy of the model,
        holding the model only to copy it, so the other views keep working meanwhile; the result is
        cached with the image."""
        image = self._image
        self._check_layers(image, [layer])
        names = tuple(get_method(m).name for m in ([methods] if isinstance(methods, str) else methods))
        given = {get_method(m).name: values for m, values in (options or {}).items()}
        if set(given) - set(names):
            raise ValueError(f"options name method {sorted(set(given) - set(names))[0]!r}, which is not checked")
        checked = {name: check_options(REGISTRY[name], given.get(name, {})) for name in names}
        target = self._target(image, target)
        # the random-logit test draws other classes: a class-index target only
        checks = ("cascading", "random_logit") if isinstance(target, int) else ("cascading",)
        key = (
            "sanity",
            layer,
            names,
            target,
            steps,
            random_classes,
            seed,
            threshold,
            tuple((name, options_key(values)) for name, values in checked.items()),
        )
        found = image.results.get(key)
        if found is None:
            result = sanity_check(
                self.model,
                image.x,
                layer,
                names,
                target_of(target, self._graph(image).output),
                checks,
                seed=seed,
                progress=progress,
                steps=steps,
                random_classes=random_classes,
                threshold=threshold,
                options={n: o for n, o in checked.items() if o},
                keep_maps=True,
            )
            self.stats["sanity"] += 1
            found = image.results.put(key, sanity_view(result, target))
        return found

    def channel_activation(self, layer: str, channel: int) -> np.ndarray:
        """A_k of the image at `layer`, `[h, w]`: what one channel responds to (the same for every class)."""
        image = self._image
        activations = self._graph(image).activations
        self._check_layers(image, [layer])
        channels = activations[layer].shape[1]
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < channels:
            raise ValueError(f"channel must be an int in 0..{channels - 1} for layer {layer!r}, got {channel!r}")
        return activations[layer][0, int(channel)].float().cpu().numpy()

    # --- what the prediction offers to explain (target keys, see `task_views`) ------------------------
    @property
    def task(self) -> Task:
        """What the model's output holds: "classification", "segmentation" or "detection"."""
        return self._task(self._image)

    @property
    def default_target(self) -> TargetKey:
        """What is shown first: the top-1 class, the largest predicted class that is not the background, or
        the best detection."""
        return self._target(self._image, None)

    def choices(self, k: int = 5) -> list[Choice]:
        """What the menus offer, best first: the top-k classes with their probabilities; every class
        present in a segmentation with its share of the pixels; a detector's detections scoring at
        least `task_views.MIN_DETECTION_SCORE`."""
        image = self._image
        task, output = self._task(image), self._graph(image).output
        if task == "segmentation":
            return segment_choices(output, self.bundle.categories)
        if task == "detection":
            return detection_choices(output, self.bundle.categories)
        return [Choice(p.index, f"{p.name} ({p.probability:.1%})", p.name, p.probability) for p in self.predictions(k)]

    def key_at(self, x: float, y: float) -> TargetKey | None:
        """What a click at display pixel (x, y) picks: the predicted region under it (segmentation), or
        the smallest listed detection whose box holds it (detection); None for a classifier or off every box."""
        image = self._image
        task, output = self._task(image), self._graph(image).output
        if task == "segmentation":
            height, width = image.display.shape[:2]
            rows, cols = predicted_labels(output).shape
            row = min(max(int((y + 0.5) * rows / height), 0), rows - 1)
            col = min(max(int((x + 0.5) * cols / width), 0), cols - 1)
            return region_key(output, row, col)
        if task == "detection":  # boxes are in pixel edges, the display's pixel centres are integers
            return detection_at(detection_choices(output, self.bundle.categories), x + 0.5, y + 0.5)
        return None

    def target_name(self, key: TargetKey) -> str:
        """A target key in words, for titles."""
        key = checked_key(key)
        if isinstance(key, int):
            return self.class_name(key)
        if key[0] == "segment":
            return f"{self.class_name(int(key[1]))} (every pixel predicted as it)"
        if key[0] == "region":
            rows, cols = predicted_labels(self._graph(self._image).output).shape
            row, col = divmod(int(key[2]), cols)
            return f"{self.class_name(int(key[1]))} (the region ending at pixel x={col}, y={row})"
        found = [c.label for c in self.choices() if c.key == key]
        return found[0] if found else f"detection {key[1]}"

    def target_mask(self, key: TargetKey) -> np.ndarray | None:
        """The bool pixels a segmentation key explains, at the output's resolution; None for other keys.
        Cached with the image, since the Explorer outlines it at every redraw."""
        image = self._image
        cache_key = ("mask", checked_key(key))
        found = image.results.get(cache_key)
        if found is None:
            found = image.results.put(cache_key, key_mask(key, self._graph(image).output))
        return found
