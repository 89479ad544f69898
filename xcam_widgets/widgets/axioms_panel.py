"""The Explore tab's axiom diagnostics: conservation bars drawn with every view, and on request the
sensitivity check channel by channel (each channel's predicted drop against the true drop)."""

from __future__ import annotations

import html
import threading
from typing import Callable

import ipywidgets as W

from ..diagnostics import Diagnosis
from ..methods import REGISTRY
from ..session import Session
from ..views import Conservation
from . import figures
from .controls import ViewState
from .live_figure import LiveFigure, StaticFigure
from .worker import LatestWins, Superseded


class AxiomsPanel(W.VBox):
    """Conservation (each gradient method's |Σ M − S_c| / |S_c|, on a log axis) and, when `diagnose_button` is pressed,
    the sensitivity diagnostics of the shown state, computed in `worker`; a click on a channel's
    point shows that channel's activation."""

    def __init__(
        self,
        session: Session,
        draw_lock: threading.Lock,
        show_error: Callable[[ViewState | None, Exception], None],
        show_progress: Callable[[int, int], None],
        progress: W.IntProgress,
        background: bool,
    ) -> None:
        self.session, self._draw_lock, self._progress = session, draw_lock, progress
        self.diagnosis: Diagnosis | None = None
        self._state: ViewState | None = None
        self.diagnose_button = W.Button(description="Run axiom diagnostics", button_style="info")
        self.cancel_button = W.Button(description="Cancel", icon="stop")
        self.table = W.HTML("Diagnostics re-run the network once per channel: press the button.")
        self.conservation = StaticFigure(figures.conservation_figure([], [], 0.0))
        self.sensitivity_box, self.channel_box = W.Box(), StaticFigure()
        self.worker = LatestWins(self._compute, self._draw, show_error, show_progress, background)
        super().__init__(
            [
                W.HBox([self.diagnose_button, self.cancel_button]),
                self.table,
                W.HBox([self.conservation, self.sensitivity_box, self.channel_box]),
            ]
        )

    def show_conservation(self, bars: Conservation) -> None:
        """Redraw the conservation chart for `bars` (its errors on a log axis, `figures.conservation_bars`)."""
        drawn = figures.conservation_bars(bars.methods, bars.sums, bars.score)
        with self.conservation.batch_update():
            trace = self.conservation.data[0]
            trace.x, trace.y, trace.text, trace.customdata = drawn["x"], drawn["y"], drawn["text"], drawn["customdata"]
            layout = self.conservation.figure.layout
            layout.yaxis.range, layout.yaxis.title.text = drawn["range"], drawn["yaxis_title"]
            layout.title.text = drawn["title"]

    def _compute(self, state: ViewState, progress) -> Diagnosis:
        if state.image != self.session.generation:
            raise Superseded()
        options = dict(state.options)
        batch = options.pop("batch_size", None)  # the method's batch size serves the channel drops too
        return self.session.diagnosis(state.layer, state.method, state.target, batch, progress, **options)

    def _draw(self, state: ViewState, d: Diagnosis) -> None:
        with self._draw_lock:
            if state.image != self.session.generation:
                return
            self.diagnosis, self._state = d, state
            error = "n/a" if d.sensitivity_error is None else f"{float(d.sensitivity_error[0]):.3f}"
            conservation = "n/a" if d.conservation_error is None else f"{float(d.conservation_error[0]):.3f}"
            bias = "n/a" if d.bias_term is None else f"{float(d.bias_term[0]):.3f}"
            title = f"{REGISTRY[state.method].title}: r = {float(d.sensitivity_r[0]):.3f}, sensitivity error = {error}"
            fig = figures.sensitivity_figure(d.predicted_drop[0].cpu().numpy(), d.true_drop[0].cpu().numpy(), title)
            sensitivity = LiveFigure(fig)
            sensitivity.data[0].on_click(self._inspect_channel)
            self.table.value = (
                f"<b>{html.escape(state.layer)}</b>, {html.escape(self.session.target_name(state.target))}: "
                f"S = {float(d.score[0]):.4f}, Σ map = {float(d.map_sum[0]):.4f}, conservation error = {conservation}, "
                f"bias term Σ b·∂S/∂b = {bias}. {html.escape(d.note)}"
            )
            self.sensitivity_box.children = [sensitivity]
            self._progress.layout.visibility = "hidden"

    def _inspect_channel(self, trace, points, selector) -> None:
        d, state = self.diagnosis, self._state
        if not points.point_inds or d is None or state is None or state.image != self.session.generation:
            return
        k = int(points.point_inds[0])
        activation = self.session.channel_activation(d.layer, k)
        weight = "" if d.explanation.weights is None else f", α = {float(d.explanation.weights[0, k]):.4f}"
        self.channel_box.show(figures.channel_figure(activation, f"channel {k}{weight}"))
