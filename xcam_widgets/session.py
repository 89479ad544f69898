"""The Session: the view API over `SessionCore`, arrays and plain data for any front end.

The Explorer, the Gallery and notebooks draw what these methods return; they never reach into a
capture or decide what to compute (see `session_core` for the caches and what invalidates them)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from . import views
from .discovery import default_layer
from .methods import GRADIENT_METHODS, REGISTRY, check_options, get_method
from .sanity import DEFAULT_METHODS, THRESHOLD, sanity_check
from .sanity_view import SanityView, sanity_view
from .session_core import Progress, SessionCore, options_key
from .views import Conservation


class Session(SessionCore):
    """A model, one image and cached results for any (layer, class, method, options), with views."""

    # --- the view API: arrays and plain data for any front end -----------------------------------
    def low_res_map(
        self,
        layer: str,
        method: str,
        target: int | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """`method`'s map at `layer` for class `target`, `[h, w]` in [0, 1] (see `views.low_res_map`)."""
        return views.low_res_map(self.explanation(layer, method, target, progress, **dict(options or {})).raw)

    def conservation(self, layer: str, target: int | None = None, methods: Sequence[str] | None = None) -> Conservation:
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
        target: int | None = None,
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
        names = list(layers) if layers is not None else views.spread_layers(infos, default_layer(infos, self.model))
        self._capture(image, target, names)
        return {
            name: views.low_res_map(self._explanation(image, name, spec, target, checked, progress).raw)
            for name in names
        }

    def method_maps(
        self,
        layer: str,
        target: int | None = None,
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
        targets: Sequence[int],
        *,
        options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> dict[int, np.ndarray]:
        """Class index → `method`'s low-resolution map at `layer` for that class."""
        spec = get_method(method)
        checked = check_options(spec, dict(options or {}))
        image = self._image
        return {
            int(t): views.low_res_map(
                self._explanation(image, layer, spec, self._target(image, t), checked, progress).raw
            )
            for t in targets
        }

    def sanity(
        self,
        layer: str,
        methods: Sequence[str] = DEFAULT_METHODS,
        target: int | None = None,
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
                target,
                ("cascading", "random_logit"),
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
