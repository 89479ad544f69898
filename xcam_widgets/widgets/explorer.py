"""The CAM Explorer: ipywidgets controls wired to a `Session`, drawn with Plotly figures.

The widget decides nothing about what is computed: a control change becomes a `ViewState`, the
Session's view API turns it into arrays and plain data, and the figures draw them.
"""

from __future__ import annotations

import html
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import ipywidgets as W
import numpy as np
import torch

from ..images import SAMPLE_IMAGES, sample_image
from ..methods import REGISTRY
from ..models import ModelBundle, load_model
from ..session import Session
from . import figures
from .axioms_panel import AxiomsPanel
from .controls import FastMode, ViewState, all_option_widgets, descendants, layer_label, upload_bytes
from .live_figure import LiveFigure, StaticFigure
from .options import option_controls
from .sanity_panel import SanityPanel
from .target_menus import DEFAULT_METHODS, TargetMenus
from .worker import LatestWins, Superseded

BLANK = np.zeros((1, 1), dtype=np.float32)  # the heatmap before the first map, and while a new image computes
PANEL_TITLES = {"classification": "Top predictions", "segmentation": "Predicted pixels", "detection": "Detections"}


class Explorer(W.VBox):
    """Pick a layer, a class and a method; see the map, the predictions, the axiom diagnostics and
    (on request, in the Sanity tab) the sanity checks. With a segmentation model, pick a predicted
    class or click a region; with a detector, pick a detection or click its box (`TargetMenus`).

    `Explorer()` uses the offline defaults (EfficientNet-Lite0 and a bundled photo). `model` is a
    `ModelBundle` (from `xw.load_model`) or a plain `nn.Module` (then pass a preprocessed tensor).
    Computation runs in a background thread; `background=False` computes synchronously. `close()`
    stops the computation; so does the interpreter's exit."""

    def __init__(
        self,
        model: ModelBundle | torch.nn.Module | None = None,
        image: Any = None,
        *,
        top_k: int = 5,
        background: bool = True,
    ):
        bundle = load_model("efficientnet_lite0") if model is None else model
        self.session = Session(bundle, sample_image(SAMPLE_IMAGES[0]) if image is None else image)
        self.top_k = top_k
        self._quiet = False
        self._note = ""  # shown in the status by the next draw
        self.overlay: LiveFigure
        self.tabs: W.Tab
        self._draw_lock = threading.Lock()  # an image swap and a draw never interleave
        self.shown_state: ViewState | None = None
        self.shown_map = BLANK
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self._build_controls(image is None)
        self._build_figures(background)
        self.worker = LatestWins(self._compute, self._draw, self._show_error, self._show_progress, background)
        super().__init__([self._controls_box(), self.tabs, W.HBox([self.status, self.progress])])
        self.refresh()

    # --- controls -------------------------------------------------------------------------------
    def _build_controls(self, sample: bool) -> None:
        s = self.session
        choice = SAMPLE_IMAGES[0] if sample else "(your image)"
        self.image_choice = W.Dropdown(options=[*SAMPLE_IMAGES, "(your image)"], value=choice, description="image")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.layer = W.Dropdown(
            options=[(layer_label(i), i.name) for i in s.layers],
            value=s.default_layer,
            description="layer",
            layout=W.Layout(width="460px"),
        )
        self.menus = TargetMenus(s, self.top_k)
        self.target, self.compare_target, self.search = self.menus.target, self.menus.compare_target, self.menus.search
        self.method = W.Dropdown(
            options=[(m.title, m.name) for m in REGISTRY.values()], value=DEFAULT_METHODS[s.task], description="method"
        )
        self.option_controls = {name: option_controls(spec) for name, spec in REGISTRY.items()}
        self.options_box, self.fast_mode, self.fast_note = W.HBox(), FastMode(self.option_controls), W.HTML()
        self.opacity = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
        self.colormap = W.Dropdown(options=figures.COLORMAPS, value="Jet", description="colormap")
        self.threshold = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="threshold")
        self.mode = W.ToggleButtons(options=["overlay", "side by side"], value="overlay")
        self._fill_classes()
        option_widgets = all_option_widgets(self.option_controls)
        for control in (self.layer, self.target, self.method, self.compare_target, *option_widgets):
            control.observe(lambda change: self.refresh(), names="value")
        for control in (self.opacity, self.colormap, self.threshold):
            control.observe(lambda change: self._restyle(), names="value")
        self.mode.observe(lambda change: self._rebuild_overlay(), names="value")
        self.image_choice.observe(self._on_sample, names="value")
        self.upload.observe(self._on_upload, names="value")
        self._show_options()

    def _controls_box(self) -> W.Widget:
        display = W.HBox([self.opacity, self.colormap, self.threshold, self.mode])
        return W.VBox(
            [
                W.HBox([self.image_choice, self.upload]),
                self.layer,
                W.HBox([self.target, self.search, self.menus.hint]),
                self.method,
                W.HBox([self.options_box, self.fast_note]),
                display,
            ]
        )

    @contextmanager
    def _held(self) -> Iterator[None]:
        """Control changes inside cause no refresh: one refresh after several changes, not one per change."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _fill_classes(self) -> None:
        with self._held():
            self.menus.fill()

    def _show_options(self) -> None:
        """The chosen method's option controls, and only those."""
        shown = [control.widget for control in self.option_controls[self.method.value].values()]
        if list(self.options_box.children) != shown:
            self.options_box.children = shown

    @property
    def state(self) -> ViewState:
        """The state the controls describe; a ValueError names an option control that holds a bad value."""
        options = tuple((name, control.value) for name, control in self.option_controls[self.method.value].items())
        return ViewState(
            self.layer.value,
            self.target.value,
            self.method.value,
            options,
            self.session.generation,
            self.tabs.selected_index or 0,
            self.compare_target.value,
        )

    def refresh(self) -> None:
        """Submit the current state; the newest one always wins."""
        if self._quiet or not hasattr(self, "worker"):
            return
        self._follow_layers()
        with self._held():  # the fast-mode default may change an option control: one refresh, not two
            self.fast_note.value = self.fast_mode.apply(self.method.value, self.layer.value, self.session.layers)
        self._show_options()
        self._submit(self.worker)

    def _follow_layers(self) -> None:
        """The layer menu follows `session.layers`, which the Session re-lists when the model's modules
        change; a chosen layer that is gone gives way to the default layer, and the status says so."""
        options = [(layer_label(info), info.name) for info in self.session.layers]
        if list(self.layer.options) == options:
            return
        chosen = self.layer.value
        with self._held():
            self.layer.options = options
            self.layer.value = chosen if chosen in {name for _, name in options} else self.session.default_layer
        if self.layer.value != chosen:
            self._note = f"layer {chosen} is gone: the model's modules changed; showing {self.layer.value}"

    def _submit(self, worker: LatestWins) -> None:
        try:
            state = self.state
        except ValueError as error:
            self._show_error(None, error)
            return
        worker.submit(state)

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the view shows the newest state (for tests and scripts)."""
        self.worker.wait(timeout)
        self.axioms.worker.wait(timeout)
        self.sanity_panel.worker.wait(timeout)

    def close(self) -> None:
        """Stop the computation (waiting for the running step to end), then close every widget."""
        panels = (self, getattr(self, "axioms", None), getattr(self, "sanity_panel", None))
        workers = [getattr(panel, "worker", None) for panel in panels]
        for worker in workers:
            if worker is not None:  # None when the constructor raised (ipywidgets closes on deletion)
                worker.shutdown()
        option_widgets = all_option_widgets(getattr(self, "option_controls", {}))
        unique = {id(widget): widget for widget in (*descendants(self), *option_widgets)}
        for widget in unique.values():
            widget.close()
        super().close()

    # --- events -----------------------------------------------------------------------------------
    def _on_click(self, trace, points, selector) -> None:
        """A click on the image picks the region or the detection under it (`TargetMenus.key_at`)."""
        if not points.xs:
            return
        try:
            with self._held():
                key = self.menus.key_at(points.xs[0], points.ys[0])
        except ValueError as error:
            self._show_error(None, error)
            return
        if key is not None:
            self.target.value = key

    def _on_sample(self, change: dict) -> None:
        if change["new"] in SAMPLE_IMAGES:
            self._set_image(sample_image(change["new"]))

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        try:
            data = upload_bytes(files[0])
        except ValueError as error:
            self._show_error(None, error)
            return
        self._set_image(data)

    def _set_image(self, image: Any) -> None:
        """Swap the image and blank the map, stop the work for the old image, then show the new one."""
        with self._draw_lock:
            try:
                self.session.set_image(image)
            except (ValueError, TypeError) as error:  # the previous image and view stay
                self._show_error(None, error)
                return
            self.shown_state, self.shown_map = None, BLANK
            with self.overlay.batch_update():
                photo = figures.photo_pixels(self.session.display, self._clickable)
                for trace in self.overlay.data[:-1]:
                    trace.update(photo)
                self.overlay.data[-1].update(
                    z=figures.quantized(BLANK), **figures.placement((1, 1), self.session.display.shape[:2])
                )
                self.overlay.layout.title.text = "computing…"
                self.overlay.layout.shapes, self.overlay.layout.annotations = (), ()
            self.sanity_panel.reset()  # its results were for the old image
        self.worker.cancel()  # the old image's work stops at its next progress report
        self.axioms.worker.cancel()
        self._fill_classes()
        self.refresh()

    def _cancel(self) -> None:
        self.axioms.worker.cancel()
        self.worker.cancel()
        self.progress.layout.visibility = "hidden"
        self.status.value = "cancelled"

    # --- computing (worker threads) and drawing ----------------------------------------------------
    def _compute(self, state: ViewState, progress) -> dict:
        s = self.session
        if state.image != s.generation:
            raise Superseded()
        options = dict(state.options)
        frame: dict[str, Any] = {
            "map": s.low_res_map(state.layer, state.method, state.target, options=options, progress=progress),
            "conservation": s.conservation(state.layer, state.target),
            "predictions": s.choices(self.top_k),
        }
        if state.tab == 1:
            maps = s.sweep_maps(state.method, state.target, options=options, progress=progress)
            frame["sweep"] = (list(maps), list(maps.values()))
        elif state.tab == 2:
            maps = s.method_maps(state.layer, state.target)
            frame["grid"] = ([REGISTRY[m].title for m in maps], list(maps.values()))
        elif state.tab == 3:
            pair = (state.target, state.compare_target)
            by_class = s.class_maps(state.layer, state.method, pair, options=options, progress=progress)
            frame["compare"] = ([s.target_name(t) for t in pair], [by_class[t] for t in pair])
        return frame

    def _draw(self, state: ViewState, frame: dict) -> None:
        with self._draw_lock:
            if state.image != self.session.generation:  # computed for an image that is no longer shown
                return
            self.shown_state, self.shown_map = state, frame["map"]
            bars = frame["conservation"]
            with self.overlay.batch_update():
                z = figures.quantized(self.shown_map)
                self.overlay.data[-1].update(z=z, **figures.placement(z.shape, self.session.display.shape[:2]))
                self.overlay.layout.title.text = (
                    f"{REGISTRY[state.method].title} · {state.layer} · "
                    f"{self.session.target_name(state.target)} (S = {bars.score:.3f})"
                )
                self._mark(state.target)
            top = frame["predictions"]
            with self.predictions.batch_update():
                bar = self.predictions.data[0]
                bar.x, bar.y = [c.value for c in top][::-1], [c.label for c in top][::-1]
                bar.marker.color = ["#d62728" if c.key == state.target else "#1f77b4" for c in top][::-1]
            self.axioms.show_conservation(bars)
            for key, box in (("sweep", self.sweep_box), ("grid", self.grid_box), ("compare", self.compare_box)):
                if key in frame:
                    titles, maps = frame[key]
                    box.show(
                        figures.small_multiples(
                            self.session.display,
                            maps,
                            titles,
                            colorscale=self.colormap.value,
                            opacity=self.opacity.value,
                            columns=2 if key == "compare" else 4,
                        )
                    )
            notes = [note for note in (self._note, self.session.display_note) if note]
            self.status.value, self._note = "<br>".join(f"<i>{html.escape(note)}</i>" for note in notes), ""
            self.progress.layout.visibility = "hidden"

    def _show_error(self, state: ViewState | None, error: Exception) -> None:
        self.progress.layout.visibility = "hidden"
        self.status.value = f"<span style='color:#b00'><b>{type(error).__name__}</b>: {html.escape(str(error))}</span>"

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.layout.visibility = "visible"

    # --- figures --------------------------------------------------------------------------------
    def _build_figures(self, background: bool) -> None:
        s = self.session
        # LiveFigure: a page that connects later (Voilà, a reload) renders the current figure. The charts that
        # take no clicks are StaticFigures (no 5 MB plotly.js each in the widget state a reload restores), and
        # every widget exists before the display: a draw changes figures, it creates no widget.
        self._rebuild_overlay(first=True)
        top = s.choices(self.top_k)
        self.predictions = StaticFigure(
            figures.predictions_figure([c.label for c in top], [c.value for c in top], title=PANEL_TITLES[s.task])
        )
        self.axioms = AxiomsPanel(s, self._draw_lock, self._show_error, self._show_progress, self.progress, background)
        self.axioms.diagnose_button.on_click(lambda button: self._submit(self.axioms.worker))
        self.axioms.cancel_button.on_click(lambda button: self._cancel())
        self.sweep_box, self.grid_box, self.compare_box = StaticFigure(), StaticFigure(), StaticFigure()
        explore = W.VBox([W.HBox([self.overlay, self.predictions]), self.axioms])
        compare = W.VBox([self.compare_target, self.compare_box])
        self.sanity_panel = SanityPanel(
            s, self.layer, self.target, self.colormap, self.opacity, self._draw_lock, background
        )
        self.tabs = W.Tab(children=[explore, self.sweep_box, self.grid_box, compare, self.sanity_panel])
        for i, title in enumerate(("Explore", "Layer sweep", "Method grid", "Class compare", "Sanity")):
            self.tabs.set_title(i, title)
        self.tabs.observe(lambda change: self.refresh(), names="selected_index")

    def _restyle(self) -> None:
        """Display changes: restyle in the browser, recompute nothing."""
        with self.overlay.batch_update():
            heat = self.overlay.data[-1]
            heat.opacity = self.opacity.value
            heat.colorscale = figures.threshold_colorscale(self.colormap.value, self.threshold.value)

    def _rebuild_overlay(self, first: bool = False) -> None:
        """A new overlay figure (at the start, and when the mode changes); a click on its image picks a target."""
        with self._draw_lock:
            fig = figures.overlay_figure(
                self.session.display,
                self.shown_map,
                opacity=self.opacity.value,
                colorscale=self.colormap.value,
                threshold=self.threshold.value,
                side_by_side=self.mode.value == "side by side",
                title="computing…" if first else self.overlay.layout.title.text or "",
                clickable=self._clickable,
            )
            self.overlay = LiveFigure(fig)
            for trace in self.overlay.data:
                trace.on_click(self._on_click)
            if not first:
                if self.shown_state is not None:
                    self._mark(self.shown_state.target)
                self.tabs.children[0].children[0].children = [self.overlay, self.predictions]

    @property
    def _clickable(self) -> bool:
        """A click on the image picks a target (a region, a detection) for any model but a classifier."""
        return self.session.task != "classification"

    def _mark(self, key: Any) -> None:
        """Outline the pixels a segmentation target explains, or draw the detections' boxes."""
        heat = self.overlay.data[-1]
        outline, boxes = self.menus.marks(key)
        shapes, notes = figures.target_marks(outline, boxes, heat.xaxis or "x", heat.yaxis or "y")
        self.overlay.layout.shapes, self.overlay.layout.annotations = shapes, notes
