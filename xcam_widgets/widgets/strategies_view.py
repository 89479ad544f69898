"""The Strategies view of a Gallery: `xw.discover`'s 2-D scatter, cluster cards and causal checks.

Wiring and drawing only; what is drawn comes from `strategies.view_model`. The scatter is ONE
`Scattergl` trace for all points (colour modes restyle it; hover shows the row only), so 50,000
points stay light. A lasso or box selection, or a card's "select" button, shows those rows in the
Gallery through its code API (`select_rows`), so its menus and tiles follow; "clear selection"
restores the Gallery's filter before. A click on a point opens the Explorer on that row. Discovery
and each causal check run in a background `LatestWins` worker; an error shows where it happened
(the view's status, or the card) and the rest of the view stays usable.
"""

from __future__ import annotations

import base64
import html
import threading
from typing import Any, Callable, Sequence

import ipywidgets as W
import numpy as np
import pandas as pd

from ..strategies import CausalCheck, Discovery, discover
from ..strategies.view_model import (
    Colours,
    card,
    causal_html,
    colour_modes,
    colour_ticks,
    colours,
    group_clusters,
    group_note,
    group_options,
    points_frame,
    selected_rows,
)
from .controls import descendants
from .live_figure import LiveFigure
from .worker import LatestWins

HOVER = "row %{customdata}<extra></extra>"


def scatter_figure(x: np.ndarray, y: np.ndarray, rows: np.ndarray, colour: Colours | None = None) -> LiveFigure:
    """The scatter: one `Scattergl` trace of every point (float32 x, y; the row as customdata for hover)."""
    fig = LiveFigure(
        data=[
            dict(
                type="scattergl",
                mode="markers",
                x=np.asarray(x, dtype=np.float32),
                y=np.asarray(y, dtype=np.float32),
                customdata=np.asarray(rows, dtype=np.int32),
                hovertemplate=HOVER,
                marker=dict(size=5, showscale=True, colorbar=dict(thickness=12)),
                unselected=dict(marker=dict(opacity=0.15)),
            )
        ],
        layout=dict(
            height=440,
            width=560,
            margin=dict(l=30, r=10, t=30, b=30),
            dragmode="lasso",
            showlegend=False,
            uirevision="strategies",
            xaxis=dict(showticklabels=False),
            yaxis=dict(showticklabels=False),
        ),
    )
    if colour is not None:
        recolour(fig, colour)
    return fig


def recolour(fig: LiveFigure, colour: Colours, categories: list[str] | None = None) -> None:
    """Restyle the one trace for `colour` (the points' data stay as they are)."""
    ticks = colour_ticks(colour, categories)
    with fig.batch_update():
        marker = fig.data[0].marker
        marker.color, marker.colorscale = colour.values, colour.colorscale
        marker.cmin, marker.cmax = colour.cmin, colour.cmax
        marker.colorbar.title.text = colour.mode
        marker.colorbar.tickvals, marker.colorbar.ticktext = ticks["tickvals"], ticks["ticktext"]


def crops_html(pngs: Sequence[bytes], titles: Sequence[str], side: int = 40) -> str:
    """Prototype crops as `<img>` tags with their titles ("row R, channel K") on hover: an ipywidgets
    `Image` cannot carry a tooltip (ipywidgets 8.1 fails to draw one that has it)."""
    return "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" width="{side}" height="{side}" '
        f'title="{html.escape(title)}" style="margin:1px;image-rendering:pixelated">'
        for png, title in zip(pngs, titles)
    )


class ClusterCard(W.VBox):
    """One cluster: summary, mean map, prototype crops, "select" and "causal check" (in the background)."""

    def __init__(self, discovery: Discovery, cluster: int, select: Callable[[int], None], background: bool) -> None:
        drawn = card(discovery, cluster)
        self.cluster, self.discovery = cluster, discovery
        self.check: CausalCheck | None = None
        self.select_button = W.Button(description="select", icon="filter", layout=W.Layout(width="90px"))
        self.causal_button = W.Button(description="causal check", icon="flask", layout=W.Layout(width="120px"))
        self.how = W.Dropdown(
            options=["occlude", "channels"] if discovery.top_channels.get(cluster) else ["occlude"],
            layout=W.Layout(width="100px"),
        )
        self.result = W.HTML()
        self.crops = W.HTML(crops_html(drawn.crops, drawn.crop_titles))  # one widget; titles show on hover
        self._worker: LatestWins[str] = LatestWins(
            lambda how, progress: discovery.causal_check(cluster, how=how),
            self._show_check,
            self._show_error,
            background=background,
        )
        self.select_button.on_click(lambda button: select(cluster))
        self.causal_button.on_click(lambda button: self.run_check())
        super().__init__(
            [
                W.HTML(drawn.summary),
                W.HBox([W.Image(value=drawn.mean_map, format="png", width=64, height=64), self.crops]),
                W.HBox([self.select_button, self.causal_button, self.how]),
                self.result,
            ],
            layout=W.Layout(border="1px solid #ddd", padding="4px", margin="2px", width="300px"),
        )

    def run_check(self) -> None:
        """Run `Discovery.causal_check` in the background; its result (or error) shows in the card."""
        self.result.value = "<i>causal check running…</i>"
        self._worker.submit(str(self.how.value))

    def wait(self, timeout: float | None = None) -> None:
        self._worker.wait(timeout)

    def _show_check(self, how: str, check: CausalCheck) -> None:
        self.check = check
        self.result.value = causal_html(check)

    def _show_error(self, how: str, error: Exception) -> None:
        self.result.value = f"<span style='color:#b00'><b>{type(error).__name__}</b>: {html.escape(str(error))}</span>"

    def close(self) -> None:
        """Close every nested widget, not only the direct children: a live box holding a closed widget
        breaks `get_state`, and with it a reloading page's restore of every widget in the kernel."""
        self._worker.shutdown()
        for widget in list(descendants(self)):
            widget.close()
        super().close()


class StrategiesView(W.VBox):
    """`StrategiesView(gallery, **discover_kwargs)`: runs `xw.discover(gallery, ...)` in the background
    (with progress) and draws the result; `StrategiesView(gallery, discovery=d)` draws a ready one.
    `cards` maps cluster ids of the chosen group to their `ClusterCard`; `points` is the scatter's table
    (`Discovery.assignments` order, with the Gallery's columns)."""

    def __init__(
        self, gallery: Any, discovery: Discovery | None = None, *, background: bool = True, **discover_kwargs: Any
    ) -> None:
        self.gallery, self.background = gallery, background
        self.discovery: Discovery | None = None
        self.points: pd.DataFrame | None = None
        self.cards: dict[int, ClusterCard] = {}
        self._lock = threading.RLock()
        self._stage = ""
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="240px"))
        self.colour = W.Dropdown(description="colour by", layout=W.Layout(width="240px"))
        self.group = W.Dropdown(description="group", layout=W.Layout(width="360px"))
        self.group_label = W.HTML()
        self.clear_button = W.Button(description="clear selection", icon="times")
        self.figure = scatter_figure(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
        self.cards_box = W.Box(layout=W.Layout(flex_flow="row wrap", width="100%"))
        self.colour.observe(lambda change: self._guarded(self._recolour), names="value")
        self._filling_groups = False
        self.group.observe(lambda change: self._guarded(self._show_group), names="value")
        self.clear_button.on_click(lambda button: self._guarded(self.clear_selection))
        trace = self.figure.data[0]
        trace.on_selection(lambda trace, points, selector: self._guarded(lambda: self._select_points(points)))
        trace.on_deselect(lambda trace, points: self._guarded(self.clear_selection))
        trace.on_click(lambda trace, points, state: self._guarded(lambda: self._open_point(points)))
        self._worker: LatestWins[dict[str, Any]] = LatestWins(
            self._discover, self._apply, self._failed, self._on_progress, background=background
        )
        super().__init__(
            [
                W.HTML("<b>Strategies</b>: the run's explanations clustered per class (xw.discover)"),
                W.HBox([self.progress, self.status]),
                W.HBox([self.colour, self.group, self.clear_button]),
                W.HBox([self.figure, W.VBox([self.group_label, self.cards_box])]),
            ]
        )
        if discovery is not None:
            self._apply(discover_kwargs, discovery)
        else:
            self.status.value = "clustering the run's maps…"
            self._worker.submit(discover_kwargs)

    # --- discovery (the worker's thread) -------------------------------------------------------------
    def _discover(self, kwargs: dict[str, Any], progress: Callable[[int, int], None]) -> Discovery:
        def report(stage: str, done: int, total: int) -> None:
            self._stage = stage
            progress(done, total)

        return discover(self.gallery, progress=report, **kwargs)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.status.value = f"{html.escape(self._stage)}: {done} / {total}"

    def _failed(self, kwargs: dict[str, Any], error: Exception) -> None:
        self.progress.bar_style = "danger"
        self._show_error(error)

    def _apply(self, kwargs: dict[str, Any], discovery: Discovery) -> None:
        with self.gallery._lock:
            table = self.gallery.table.frame
        points = points_frame(discovery, table)
        with self._lock:
            self.discovery, self.points = discovery, points
            fig = self.figure
            with fig.batch_update():
                trace = fig.data[0]
                trace.x, trace.y = points["x"].to_numpy(np.float32), points["y"].to_numpy(np.float32)
                trace.customdata = points["row"].to_numpy(np.int32)
            modes = colour_modes(points)
            self.colour.options = modes
            self.colour.value = "cluster"
            self._recolour()
            options = group_options(discovery)
            clustered = [g for _, g in options if g in set(discovery.clusters["group"].tolist())]
            self._filling_groups = True  # the menu's own changes build no cards: they are built once, below
            try:
                self.group.options = options
                self.group.value = clustered[0] if clustered else (options[0][1] if options else None)
            finally:
                self._filling_groups = False
            self._show_group()
            self.progress.max = self.progress.value = 1
            self.progress.bar_style = "success"
            excluded = ", ".join(f"{n} {why}" for why, n in discovery.excluded.items() if n)
            self.status.value = (
                f"{len(points)} rows of {html.escape(discovery.method)} at {html.escape(discovery.layer)}, "
                f"{len(discovery.clusters)} clusters" + (f" (left out: {html.escape(excluded)})" if excluded else "")
            )

    # --- the user's changes ----------------------------------------------------------------------------
    def _guarded(self, action: Callable[[], Any]) -> None:
        """Run `action` under the view's lock; an error shows in the status and the view stays usable."""
        with self._lock:
            try:
                action()
            except Exception as error:  # shown, never raised into the kernel's event loop
                self._show_error(error)

    def _show_error(self, error: BaseException) -> None:
        self.status.value = f"<span style='color:#b00'><b>{type(error).__name__}</b>: {html.escape(str(error))}</span>"

    def _recolour(self) -> None:
        if self.points is not None and self.colour.value is not None:
            categories = list(getattr(self.gallery.bundle, "categories", None) or []) or None
            recolour(self.figure, colours(self.points, str(self.colour.value)), categories)

    def _show_group(self) -> None:
        """The chosen group's note and its cluster cards, best rank first."""
        if self.discovery is None or self.group.value is None or self._filling_groups:
            return
        old = list(self.cards.values())
        group = int(self.group.value)
        self.group_label.value = group_note(self.discovery, group)
        ids = group_clusters(self.discovery, group)["cluster"].astype(int).tolist()
        self.cards = {c: ClusterCard(self.discovery, c, self._select_cluster, self.background) for c in ids}
        self.cards_box.children = list(self.cards.values())
        for card_widget in old:  # closed once no live box holds them
            card_widget.close()

    def _select_cluster(self, cluster: int) -> None:
        self._guarded(lambda: self.select_cluster(cluster))

    def select_cluster(self, cluster: int) -> None:
        """Show cluster `cluster`'s members in the Gallery and highlight them on the scatter."""
        if self.discovery is None or self.points is None:
            raise ValueError("the Strategies view has no discovery yet")
        if cluster not in set(self.discovery.clusters["cluster"].tolist()):
            raise ValueError(f"no cluster {cluster!r}; clusters are {self.discovery.clusters['cluster'].tolist()}")
        at = np.flatnonzero(self.points["cluster"].to_numpy() == cluster)
        self.gallery.select_rows(self.points["row"].to_numpy()[at])
        self.figure.data[0].selectedpoints = at

    def _select_points(self, points: Any) -> None:
        if self.points is None:
            return
        if not points.point_inds:
            self.clear_selection()
            return
        self.gallery.select_rows(selected_rows(self.points, points.point_inds))

    def clear_selection(self) -> None:
        """Show the Gallery's filter from before the selection; no point highlighted."""
        self.gallery.clear_selection()
        self.figure.data[0].selectedpoints = None

    def _open_point(self, points: Any) -> None:
        if self.points is not None and points.point_inds:
            self.gallery.open_row(int(selected_rows(self.points, points.point_inds[:1])[0]))

    # --- life ------------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Block until discovery and every causal check started are done (tests, scripts)."""
        self._worker.wait(timeout)
        for c in list(self.cards.values()):
            c.wait(timeout)

    def close(self) -> None:
        closed = getattr(self.gallery, "strategies_closed", None)
        if closed is not None:
            closed(self)
        self._worker.shutdown()
        for c in self.cards.values():
            c.close()  # stops its causal check's worker too
        for widget in list(descendants(self)):
            widget.close()
        super().close()


__all__ = ["ClusterCard", "StrategiesView", "recolour", "scatter_figure"]
