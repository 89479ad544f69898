"""The CAM Explorer: ipywidgets controls wired to a `Session`, drawn with Plotly FigureWidgets."""
from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from ..images import SAMPLE_IMAGES, MAX_BYTES, sample_image
from ..maps import scale_unit
from ..methods import GRADIENT_METHODS, REGISTRY
from ..models import ModelBundle, load_model
from ..session import Session
from . import figures
from .worker import LatestWins

SWEEP_LAYERS = 12
OPTION_WIDGETS = ("batch_size", "samples", "noise")


@dataclass(frozen=True)
class ViewState:
    """Everything that decides what is computed (display settings are not here)."""

    layer: str
    target: int
    method: str
    options: tuple[tuple[str, Any], ...]
    tab: int = 0
    compare_target: int = 0


def low_res_map(raw: torch.Tensor) -> np.ndarray:
    """ReLU of the raw map at the layer's resolution, scaled to [0, 1]: what the browser upsamples."""
    return scale_unit(raw[:1].clamp(min=0).float())[0].cpu().numpy()


def sweep_layers(session: Session, count: int = SWEEP_LAYERS) -> list[str]:
    """Up to `count` layers spread evenly through the network, ending with the default layer:
    the shallowest nesting level that offers at least four of them."""
    infos = session.layers
    last = [i.name for i in infos].index(session.default_layer)
    for depth in range(0, max(i.depth for i in infos) + 1):
        names = [i.name for i in infos[: last + 1] if i.depth <= depth]
        if len(names) >= 4:
            break
    picks = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
    return [names[i] for i in picks]


class Explorer(W.VBox):
    """Pick a layer, a class and a method; see the map, the predictions and the axiom diagnostics.

    `Explorer()` uses the offline defaults (EfficientNet-Lite0 and a bundled photo). `model` is a
    `ModelBundle` (from `xw.load_model`) or a plain `nn.Module` (then pass a preprocessed tensor).
    Computation runs in a background thread; `background=False` computes synchronously."""

    def __init__(self, model: ModelBundle | torch.nn.Module | None = None, image: Any = None, *,
                 top_k: int = 5, background: bool = True):
        bundle = load_model("efficientnet_lite0") if model is None else model
        self.session = Session(bundle, sample_image(SAMPLE_IMAGES[0]) if image is None else image)
        self.top_k = top_k
        self._quiet = False
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self._build_controls(image is None)
        self._build_figures()
        self.worker = LatestWins(self._compute, self._draw, self._show_error, self._show_progress, background)
        self.diag_worker = LatestWins(self._compute_diagnosis, self._draw_diagnosis, self._show_error,
                                      self._show_progress, background)
        super().__init__([self._controls_box(), self.tabs, W.HBox([self.status, self.progress])])
        self.refresh()

    # --- controls -------------------------------------------------------------------------------
    def _build_controls(self, sample: bool) -> None:
        s = self.session
        self.image_choice = W.Dropdown(options=list(SAMPLE_IMAGES) + ["(your image)"],
                                       value=SAMPLE_IMAGES[0] if sample else "(your image)", description="image")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.layer = W.Dropdown(options=[(i.label, i.name) for i in s.layers], value=s.default_layer,
                                description="layer", layout=W.Layout(width="460px"))
        self.target = W.Dropdown(description="class", layout=W.Layout(width="460px"))
        self.search = W.Combobox(placeholder="search any class…", ensure_option=True, layout=W.Layout(width="220px"))
        self.method = W.Dropdown(options=[(m.title, m.name) for m in REGISTRY.values()], value="xgradcam",
                                 description="method")
        self.option_widgets = {
            "batch_size": W.BoundedIntText(value=64, min=1, max=4096, description="batch size"),
            "samples": W.IntSlider(value=8, min=1, max=64, description="samples"),
            "noise": W.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="noise σ"),
        }
        self.opacity = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
        self.colormap = W.Dropdown(options=figures.COLORMAPS, value="Jet", description="colormap")
        self.threshold = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="threshold")
        self.mode = W.ToggleButtons(options=["overlay", "side by side"], value="overlay")
        self.compare_target = W.Dropdown(description="vs class", layout=W.Layout(width="460px"))
        self.diagnose_button = W.Button(description="Run axiom diagnostics", button_style="info")
        self.cancel_button = W.Button(description="Cancel", icon="stop")
        self._fill_classes()
        for control in (self.layer, self.target, self.method, self.compare_target, *self.option_widgets.values()):
            control.observe(lambda change: self.refresh(), names="value")
        for control in (self.opacity, self.colormap, self.threshold):
            control.observe(lambda change: self._restyle(), names="value")
        self.mode.observe(lambda change: self._rebuild_overlay(), names="value")
        self.search.observe(self._on_search, names="value")
        self.image_choice.observe(self._on_sample, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.diagnose_button.on_click(lambda button: self.diag_worker.submit(self.state))
        self.cancel_button.on_click(lambda button: self._cancel())
        self._show_options()

    def _controls_box(self) -> W.Widget:
        options = W.HBox(list(self.option_widgets.values()))
        display = W.HBox([self.opacity, self.colormap, self.threshold, self.mode])
        return W.VBox([W.HBox([self.image_choice, self.upload]), self.layer, W.HBox([self.target, self.search]),
                       self.method, options, display])

    def _fill_classes(self) -> None:
        """Top-k predictions with probabilities first, then every class by name."""
        s = self.session
        top = s.predictions(self.top_k)
        count = s.logits.numel()
        ranked = [(f"{p.name} ({p.probability:.1%})", p.index) for p in top]
        rest = [(f"{s.class_name(i)}", i) for i in range(count) if i not in {p.index for p in top}]
        self._quiet = True  # one refresh after all the options change, not one per option
        try:
            for dropdown, value in ((self.target, top[0].index), (self.compare_target, top[min(1, len(top) - 1)].index)):
                dropdown.options = ranked + rest
                dropdown.value = value
            self.search.options = [s.class_name(i) for i in range(count)]
        finally:
            self._quiet = False

    def _show_options(self) -> None:
        accepted = REGISTRY[self.method.value].options
        for name, widget in self.option_widgets.items():
            widget.layout.display = None if name in accepted else "none"

    @property
    def state(self) -> ViewState:
        accepted = REGISTRY[self.method.value].options
        options = tuple((n, self.option_widgets[n].value) for n in OPTION_WIDGETS if n in accepted)
        return ViewState(self.layer.value, int(self.target.value), self.method.value, options,
                         self.tabs.selected_index or 0, int(self.compare_target.value))

    def refresh(self) -> None:
        """Submit the current state; the newest one always wins."""
        if self._quiet or not hasattr(self, "worker"):
            return
        self._show_options()
        self.worker.submit(self.state)

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the view shows the newest state (for tests and scripts)."""
        self.worker.wait(timeout)
        self.diag_worker.wait(timeout)

    # --- events -----------------------------------------------------------------------------------
    def _on_search(self, change: dict) -> None:
        names = list(self.search.options)
        if change["new"] in names:
            self.target.value = names.index(change["new"])

    def _on_sample(self, change: dict) -> None:
        if change["new"] in SAMPLE_IMAGES:
            self._set_image(sample_image(change["new"]))

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        if upload["size"] > MAX_BYTES:
            self._show_error(None, ValueError(f"{upload['name']} is {upload['size']:,} bytes; the limit is {MAX_BYTES:,}"))
            return
        self._set_image(bytes(upload["content"]))

    def _set_image(self, image: Any) -> None:
        try:
            self.session.set_image(image)
        except (ValueError, TypeError) as error:  # the previous image and view stay
            self._show_error(None, error)
            return
        with self.overlay.batch_update():
            self.overlay.data[-2].source = figures.png_source(self.session.display)
            if len(self.overlay.data) == 3:
                self.overlay.data[0].source = self.overlay.data[-2].source
        self._fill_classes()
        self.refresh()

    def _cancel(self) -> None:
        self.diag_worker.cancel()
        self.worker.cancel()
        self.progress.layout.visibility = "hidden"
        self.status.value = "cancelled"

    # --- computing and drawing ---------------------------------------------------------------------
    def _compute(self, state: ViewState, progress) -> dict:
        s = self.session
        res = s.explanation(state.layer, state.method, state.target, progress, **dict(state.options))
        frame = {"explanation": res, "conservation": [
            (m, float(s.explanation(state.layer, m, state.target).raw.sum()))
            for m in GRADIENT_METHODS if REGISTRY[m].scaled
        ]}
        if state.tab == 1:
            names = sweep_layers(s)
            frame["sweep"] = (names, [low_res_map(s.explanation(n, state.method, state.target, progress,
                                                                 **dict(state.options)).raw) for n in names])
        elif state.tab == 2:
            frame["grid"] = (GRADIENT_METHODS, [low_res_map(s.explanation(state.layer, m, state.target).raw)
                                                for m in GRADIENT_METHODS])
        elif state.tab == 3:
            other = s.explanation(state.layer, state.method, state.compare_target, progress, **dict(state.options))
            frame["compare"] = ([s.class_name(state.target), s.class_name(state.compare_target)],
                                [low_res_map(res.raw), low_res_map(other.raw)])
        return frame

    def _draw(self, state: ViewState, frame: dict) -> None:
        res = frame["explanation"]
        self.shown_state, self.shown_map = state, low_res_map(res.raw)
        with self.overlay.batch_update():
            heat = self.overlay.data[-1]
            z = figures.quantized(self.shown_map)
            heat.update(z=z, **figures.placement(z.shape, self.session.display.shape[:2]))
            self.overlay.layout.title.text = (f"{REGISTRY[state.method].title} · {state.layer} · "
                                              f"{self.session.class_name(state.target)} (S = {float(res.score[0]):.3f})")
        top = self.session.predictions(self.top_k)
        with self.predictions.batch_update():
            bar = self.predictions.data[0]
            bar.x, bar.y = [p.probability for p in top][::-1], [p.name for p in top][::-1]
            bar.marker.color = ["#d62728" if p.index == state.target else "#1f77b4" for p in top][::-1]
        methods, sums = zip(*frame["conservation"])
        with self.conservation.batch_update():
            self.conservation.data[0].x, self.conservation.data[0].y = methods, sums
            score = float(res.score[0])
            self.conservation.layout.shapes[0].y0 = self.conservation.layout.shapes[0].y1 = score
            self.conservation.layout.annotations[0].y = score
            self.conservation.layout.annotations[0].text = f"S_c = {score:.3f}"
        for key, widget in (("sweep", self.sweep_box), ("grid", self.grid_box), ("compare", self.compare_box)):
            if key in frame:
                titles, maps = frame[key]
                widget.children = [go.FigureWidget(figures.small_multiples(
                    self.session.display, maps, titles, colorscale=self.colormap.value, opacity=self.opacity.value,
                    columns=2 if key == "compare" else 4))]
        self.status.value = ""
        self.progress.layout.visibility = "hidden"

    def _compute_diagnosis(self, state: ViewState, progress):
        batch = dict(state.options).get("batch_size", 64)
        options = {k: v for k, v in state.options if k != "batch_size" or "batch_size" in REGISTRY[state.method].options}
        return self.session.diagnosis(state.layer, state.method, state.target, batch, progress, **options)

    def _draw_diagnosis(self, state: ViewState, d) -> None:
        self.diagnosis = d
        error = "n/a" if d.sensitivity_error is None else f"{float(d.sensitivity_error[0]):.3f}"
        conservation = "n/a" if d.conservation_error is None else f"{float(d.conservation_error[0]):.3f}"
        bias = "n/a" if d.bias_term is None else f"{float(d.bias_term[0]):.3f}"
        title = f"{REGISTRY[state.method].title}: r = {float(d.sensitivity_r[0]):.3f}, sensitivity error = {error}"
        fig = figures.sensitivity_figure(d.predicted_drop[0].cpu().numpy(), d.true_drop[0].cpu().numpy(), title)
        self.sensitivity = go.FigureWidget(fig)
        self.sensitivity.data[0].on_click(self._inspect_channel)
        self.diag_table.value = (
            f"<b>{html.escape(state.layer)}</b>, class {html.escape(self.session.class_name(state.target))}: "
            f"S = {float(d.score[0]):.4f}, Σ map = {float(d.map_sum[0]):.4f}, conservation error = {conservation}, "
            f"bias term Σ b·∂S/∂b = {bias}. {html.escape(d.note)}")
        self.sensitivity_box.children = [self.sensitivity]
        self.progress.layout.visibility = "hidden"

    def _inspect_channel(self, trace, points, selector) -> None:
        if not points.point_inds:
            return
        k = int(points.point_inds[0])
        d = self.diagnosis
        activation = self.session.capture(self.shown_state.target).activations[d.layer][0, k].cpu().numpy()
        weight = "" if d.explanation.weights is None else f", α = {float(d.explanation.weights[0, k]):.4f}"
        self.channel_box.children = [go.FigureWidget(figures.channel_figure(activation, f"channel {k}{weight}"))]

    def _show_error(self, state: ViewState | None, error: Exception) -> None:
        self.progress.layout.visibility = "hidden"
        self.status.value = (f"<span style='color:#b00'><b>{type(error).__name__}</b>: "
                             f"{html.escape(str(error))}</span>")

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.layout.visibility = "visible"

    # --- figures --------------------------------------------------------------------------------
    def _build_figures(self) -> None:
        s = self.session
        # The first map goes into the figure itself: a page that connects later (Voilà, a reload)
        # renders the widget's saved state, which nested FigureWidgets do not update afterwards.
        first = s.explanation(self.layer.value, self.method.value, int(self.target.value))
        self.overlay = go.FigureWidget(figures.overlay_figure(
            s.display, low_res_map(first.raw), opacity=self.opacity.value,
            title=f"{REGISTRY[self.method.value].title} · {self.layer.value} · {s.class_name(int(self.target.value))}"))
        top = s.predictions(self.top_k)
        self.predictions = go.FigureWidget(figures.predictions_figure([p.name for p in top], [p.probability for p in top]))
        self.conservation = go.FigureWidget(figures.conservation_figure([], [], 0.0))
        self.sensitivity_box, self.channel_box = W.Box(), W.Box()
        self.diag_table = W.HTML("Diagnostics re-run the network once per channel: press the button.")
        self.sweep_box, self.grid_box, self.compare_box = W.Box(), W.Box(), W.VBox()
        axioms = W.VBox([W.HBox([self.diagnose_button, self.cancel_button]), self.diag_table,
                         W.HBox([self.conservation, self.sensitivity_box, self.channel_box])])
        explore = W.VBox([W.HBox([self.overlay, self.predictions]), axioms])
        self.tabs = W.Tab(children=[explore, self.sweep_box, self.grid_box, W.VBox([self.compare_target, self.compare_box])])
        for i, title in enumerate(("Explore", "Layer sweep", "Method grid", "Class compare")):
            self.tabs.set_title(i, title)
        self.tabs.observe(lambda change: self.refresh(), names="selected_index")

    def _restyle(self) -> None:
        """Display changes: restyle in the browser, recompute nothing."""
        with self.overlay.batch_update():
            heat = self.overlay.data[-1]
            heat.opacity = self.opacity.value
            heat.colorscale = figures.threshold_colorscale(self.colormap.value, self.threshold.value)

    def _rebuild_overlay(self) -> None:
        shown = getattr(self, "shown_map", np.zeros((1, 1), dtype=np.float32))
        fig = figures.overlay_figure(self.session.display, shown, opacity=self.opacity.value,
                                     colorscale=self.colormap.value, threshold=self.threshold.value,
                                     side_by_side=self.mode.value == "side by side", title=self.overlay.layout.title.text or "")
        self.overlay = go.FigureWidget(fig)
        self.tabs.children[0].children[0].children = [self.overlay, self.predictions]
