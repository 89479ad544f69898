"""The Explorer's Sanity tab: sanity checks on request, in a worker with progress and Cancel.

Per selected method it draws a strip of maps along the cascading randomisation (original → the
output layer randomised → … → every layer after the CAM layer randomised), then the maps for random
other classes; beside it, the similarity curves; under it, the verdict in words. What is computed
is `Session.sanity`'s; this panel only wires and draws.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass

import ipywidgets as W
import numpy as np

from ..methods import REGISTRY
from ..sanity import DEFAULT_METHODS
from ..sanity_view import SanityStrip, SanityView
from ..session import Session
from ..task_views import TargetKey
from . import figures
from .live_figure import LiveFigure
from .worker import LatestWins, Superseded

MAX_CASCADE_MAPS = 8  # a longer cascade shows this many of its maps, spread evenly (its curves show every step)
PROMPT = (
    "Sanity checks randomise the layers after the chosen layer, one at a time from the output back, "
    "and ask each method for its map for random other classes. They re-run the methods many times: "
    "choose methods and press Run."
)


@dataclass(frozen=True)
class SanityRequest:
    """What one Run computes: the Explorer's layer and class when pressed, for image `image`."""

    layer: str
    target: TargetKey
    methods: tuple[str, ...]
    image: int


def shown_steps(count: int, limit: int = MAX_CASCADE_MAPS) -> list[int]:
    """Indices of the cascade's maps to draw: all up to `limit`, else `limit` spread evenly with the
    original and the last step (every layer after the CAM layer randomised) always included."""
    return [int(i) for i in np.unique(np.linspace(0, count - 1, min(count, limit)).round())]


class SanityPanel(W.VBox):
    """The Sanity tab. `layer` and `target` are the Explorer's dropdowns (read when Run is pressed),
    `colormap` and `opacity` its display controls; `lock` is held while drawing (the Explorer holds it
    while it swaps the image)."""

    def __init__(
        self,
        session: Session,
        layer: W.Dropdown,
        target: W.Dropdown,
        colormap: W.Dropdown,
        opacity: W.FloatSlider,
        lock: threading.Lock,
        background: bool = True,
    ):
        self.session, self._layer, self._target = session, layer, target
        self._colormap, self._opacity, self._lock = colormap, opacity, lock
        self.shown: SanityView | None = None
        self.methods = W.SelectMultiple(
            options=[(m.title, m.name) for m in REGISTRY.values()], value=DEFAULT_METHODS, rows=6, description="methods"
        )
        self.run_button = W.Button(description="Run sanity checks", button_style="info")
        self.cancel_button = W.Button(description="Cancel", icon="stop")
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self.header = W.HTML(PROMPT)
        self.rows = W.VBox()
        self.run_button.on_click(lambda button: self.run())
        self.cancel_button.on_click(lambda button: self.cancel())
        self.worker = LatestWins(self._compute, self._draw, self._show_error, self._show_progress, background)
        controls = W.HBox([self.methods, W.VBox([self.run_button, self.cancel_button])])
        super().__init__([controls, W.HBox([self.status, self.progress]), self.header, self.rows])

    def run(self) -> None:
        """Check the selected methods at the Explorer's layer and class."""
        if not self.methods.value:
            self._show_error(None, ValueError("choose at least one method to check"))
            return
        self.status.value = "running…"
        self.worker.submit(
            SanityRequest(self._layer.value, self._target.value, tuple(self.methods.value), self.session.generation)
        )

    def cancel(self) -> None:
        """Stop the running check at its next map; the last finished result stays shown."""
        self.worker.cancel()
        self.progress.layout.visibility = "hidden"
        self.status.value = "cancelled" + ("" if self.shown is None else ": the last finished run is shown")

    def reset(self) -> None:
        """A new image: stop the running check and clear the results drawn for the old one."""
        self.worker.cancel()
        self.shown = None
        self.rows.children = []
        self.header.value = PROMPT
        self.status.value = ""
        self.progress.layout.visibility = "hidden"

    def _compute(self, request: SanityRequest, progress) -> SanityView:
        if request.image != self.session.generation:
            raise Superseded()
        return self.session.sanity(request.layer, request.methods, request.target, progress=progress)

    def _draw(self, request: SanityRequest, view: SanityView) -> None:
        with self._lock:
            if request.image != self.session.generation:  # computed for an image no longer shown
                return
            self.shown = view
            s = self.session
            self.header.value = (
                f"<b>{html.escape(view.layer)}</b>, class <b>{html.escape(s.target_name(view.target))}</b>. "
                f"Cascade: the {view.layers_after} parameterised layer(s) after the layer are randomised one more "
                f"at each step, from the output back (each map names the layer added); the last maps are for "
                f"random other classes. Similarity to the original map: Spearman ρ of the raw maps, SSIM of the "
                f"maps shown; a method passes a check when both fall below {view.threshold:g}."
            )
            self.rows.children = [self._row(strip, view.threshold) for strip in view.strips]
            self.status.value = ""
            self.progress.layout.visibility = "hidden"

    def _row(self, strip: SanityStrip, threshold: float) -> W.Widget:
        steps = shown_steps(len(strip.maps))
        maps = [strip.maps[i] for i in steps] + list(strip.random_maps)
        titles = [strip.steps[i] for i in steps] + [
            f"other class: {self.session.class_name(c)}"[:28] for c in strip.random_classes
        ]
        maps_figure = figures.map_strip(
            self.session.display, maps, titles, colorscale=self._colormap.value, opacity=self._opacity.value
        )
        curves = figures.similarity_figure(
            strip.steps,
            strip.similarity,
            strip.random_logit,
            threshold,
            title=f"{strip.title}: similarity to the original",
        )
        failed = strip.passes_cascading is False or strip.passes_random_logit is False
        color = "#b00" if failed else "#070"
        verdict = W.HTML(f"<span style='color:{color}'>{html.escape(strip.verdict)}</span>")
        return W.VBox(
            [
                W.HTML(f"<b>{html.escape(strip.title)}</b>"),
                W.HBox([LiveFigure(maps_figure), LiveFigure(curves)]),
                verdict,
            ]
        )

    def _show_error(self, request: SanityRequest | None, error: Exception) -> None:
        self.progress.layout.visibility = "hidden"
        self.status.value = f"<span style='color:#b00'><b>{type(error).__name__}</b>: {html.escape(str(error))}</span>"

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.layout.visibility = "visible"
