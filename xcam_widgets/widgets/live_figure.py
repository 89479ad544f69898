"""A Plotly FigureWidget whose synced state is always the figure as it is now."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import plotly.graph_objects as go


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
