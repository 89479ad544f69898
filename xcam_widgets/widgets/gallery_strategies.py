"""The Gallery's Strategies view: `gallery.strategies(**discover_kwargs)` and its "Strategies" button.
A mixin of `Gallery`, which owns the state named here."""

from __future__ import annotations

import threading
from typing import Any, Callable

import ipywidgets as W

from ..gallery import GalleryRun
from .gallery_controls import Controls
from .strategies_view import StrategiesView


class GalleryStrategies:
    """`strategies(...)`: cluster the finished run's maps (`xw.discover`) and show the Strategies view."""

    _lock: threading.RLock
    _background: bool
    run: GalleryRun
    strategies_box: W.VBox
    strategies_view: StrategiesView | None = None
    controls: Controls
    _guarded: Callable[[Callable[[], Any]], None]
    clear_selection: Callable[[], Any]

    def _strategies_widgets(self) -> tuple[W.Button, W.VBox]:
        """The "Strategies" button and the box the view shows in; wires the menus' "clear selection"."""
        button = W.Button(description="Strategies", icon="sitemap")
        button.on_click(lambda _: self._guarded(self.strategies))
        self.controls.clear_selection.on_click(lambda _: self._guarded(self.clear_selection))
        return button, W.VBox()

    def strategies(self, **discover_kwargs: Any) -> StrategiesView:
        """Show the Strategies view below the grid (replacing an earlier one) and return it: it runs
        `xw.discover(gallery, **discover_kwargs)` in the background, with progress. A run still going,
        or one that failed, is refused with a ValueError (there is no finished table to cluster)."""
        with self._lock:
            if self.run.result is None:
                snapshot = self.run.snapshot()
                if snapshot.state == "running":
                    raise ValueError(
                        f"the Strategies view needs a finished run, and this one is still running "
                        f"({snapshot.images_done} of {snapshot.images_total} images): wait for it "
                        "(gallery.wait()) and try again"
                    )
                raise ValueError(
                    f"the Strategies view needs a finished run, and this one {snapshot.state}: {snapshot.error}"
                )
        view = StrategiesView(self, background=self._background, **discover_kwargs)
        with self._lock:
            previous, self.strategies_view = self.strategies_view, view
            self.strategies_box.children = [view]
        if previous is not None:
            previous.close()
        return view

    def strategies_closed(self, view: StrategiesView) -> None:
        """Take a view that is closing out of the Gallery's box: a live box must not hold a closed widget."""
        with self._lock:
            if self.strategies_view is view:
                self.strategies_view = None
                self.strategies_box.children = []


__all__ = ["GalleryStrategies"]
