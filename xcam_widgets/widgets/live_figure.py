"""Plotly figures as widgets: a FigureWidget whose synced state is always the figure as it is now, and a
light static figure for the charts that take no clicks."""

from __future__ import annotations

import json
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Iterator

import ipywidgets as W
import plotly.graph_objects as go

MIME = "application/vnd.plotly.v1+json"  # drawn by the jupyterlab-plotly renderer (JupyterLab, Voila)


class LiveFigure(go.FigureWidget):
    """`go.FigureWidget`, but a page that connects late (a reload, Voilà, Binder) draws the current figure.

    Plotly sends each update as a one-off message and keeps the synced `_widget_data` and
    `_widget_layout` as they were when the widget was created or displayed, so a page that asks for
    the widget's state later renders that stale figure. Here the whole state, which a connecting
    page asks for, is read from the figure as it is; updates still send only what changed.
    """

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
        if key is None and "_layout_obj" in vars(self):  # the whole state: a page is connecting
            # Set without notifying: a notification would send the whole figure to every page.
            self._trait_values["_widget_data"] = deepcopy(self._data)
            self._trait_values["_widget_layout"] = deepcopy(self._layout_obj._props)
        return super().get_state(key, drop_defaults)


class StaticFigure(W.Output):
    """A Plotly figure that takes no clicks, drawn by the page's Plotly renderer inside an `Output` widget.

    A `go.FigureWidget` carries all of plotly.js (5 MB, its anywidget `_esm`) in its synced state, so
    every FigureWidget adds 5 MB to what a reloading page restores in one message, and the longer that
    restore, the likelier JupyterLab's widget manager gives up on a model before it arrives ("Error
    displaying widget: model not found"). Here the state is the figure's JSON. `data` and `batch_update()`
    work as on a FigureWidget, and `figure.layout` is the figure's layout (`layout` stays the widget's);
    the figure is sent whole when a batch ends, and `show` replaces it, so no widget is created after
    the display."""

    def __init__(self, figure: go.Figure | None = None) -> None:
        super().__init__(layout=W.Layout(flex="0 0 auto"))  # an Output would fill its row, squeezing a neighbour
        self.figure = go.Figure() if figure is None else figure
        if figure is not None:
            self.show(figure)

    @property
    def data(self) -> tuple:
        return self.figure.data

    @contextmanager
    def batch_update(self) -> Iterator[None]:
        """Change `data` and `layout` inside; the page gets the figure once, at the end."""
        yield
        self.show(self.figure)

    def show(self, figure: go.Figure) -> None:
        """Draw `figure` in place of the one shown (thread-safe: one trait assignment, no `with` capture)."""
        self.figure = figure
        if figure.layout.width:  # the page's Plotly renderer fills its box: the box takes the figure's width
            self.layout.width = f"{int(figure.layout.width)}px"
        bundle = {MIME: json.loads(figure.to_json()), "text/plain": f"<{figure.layout.title.text or 'figure'}>"}
        self.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
