"""The Gallery's sort, filter and page controls, and the view they stay in step with.

`Controls` describe a `Filter` and a `Sort` (`filter()`, `sort()`) and show any that they can
(`show`; a row set, `Filter.rows`, shows as "N selected rows" beside a "clear selection" button);
`ControlledView` is the Gallery's `GalleryView`: it takes only what the controls can show, and
after every change (from the menus, from `Gallery.sort` / `filter` / `page`, or from code that
calls `gallery.view.set_sort(...)`) it calls the Gallery back, which sets the menus and redraws
the tiles. So the menus, the tiles and `view.page.rows` never disagree.
"""

from __future__ import annotations

import html
import math
import threading
from typing import Any, Callable, Sequence

import ipywidgets as W
import numpy as np

from ..gallery import Filter, GalleryTable, GalleryView, Page, Range, Sort
from ..gallery.query import ERRORS, OUTCOMES
from ..gallery.twins import Twin
from .gallery_panel import default_metric, metric_columns

ANY = "(any)"
BY_ROW = "(row)"
NO_RANGE = "(none)"
PAGE_SIZES: tuple[int, ...] = (12, 24, 48, 96)


class Controls:
    """Sort, metric and filter controls; `sort()` and `filter()` read them (a ValueError names a bad
    value). `twins`: the twin methods this run has (`gallery.twins`), merged while `merge_twins` is ticked."""

    def __init__(self, page_size: int, twins: tuple[Twin, ...] = ()) -> None:
        wide = W.Layout(width="240px")
        self.metric = W.Dropdown(description="metric", layout=wide)
        self.sort_by = W.Dropdown(description="sort by", layout=wide)
        self.descending = W.Checkbox(value=False, description="descending", indent=False)
        self.classes = W.Dropdown(description="class", layout=wide)
        self.methods = W.Dropdown(description="method", layout=wide)
        self.layers = W.Dropdown(description="layer", layout=wide)
        self.outcome = W.Dropdown(options=OUTCOMES, value="all", description="outcome", layout=wide)
        self.errors = W.Dropdown(options=[(f"error rows: {e}", e) for e in ERRORS], value="all", layout=wide)
        self.range_column = W.Dropdown(description="range of", layout=wide)
        self.low = W.Text(placeholder="min", continuous_update=False, layout=W.Layout(width="90px"))
        self.high = W.Text(placeholder="max", continuous_update=False, layout=W.Layout(width="90px"))
        self.twins = twins
        self.merge_twins = W.Checkbox(value=False, description="one tile for identical maps", indent=False)
        self.twins_note = W.HTML(_twins_note(twins))
        if not twins:
            self.merge_twins.layout.display = "none"
        self.page_size = W.Dropdown(
            options=sorted({*PAGE_SIZES, page_size}),
            value=page_size,
            description="per page",
            layout=W.Layout(width="160px"),
        )
        self.previous = W.Button(description="◀", layout=W.Layout(width="40px"))
        self.next = W.Button(description="▶", layout=W.Layout(width="40px"))
        self.page_label = W.HTML()
        self.rows: tuple[int, ...] | None = None  # the row set shown (a selection), read by `filter()`
        self.selection_note = W.HTML()
        self.clear_selection = W.Button(description="clear selection", icon="times", layout=W.Layout(display="none"))

    @property
    def filter_widgets(self) -> tuple[W.ValueWidget, ...]:
        return (
            self.classes,
            self.methods,
            self.layers,
            self.outcome,
            self.errors,
            self.range_column,
            self.low,
            self.high,
            self.merge_twins,
        )

    def box(self) -> W.Widget:
        return W.VBox(
            [
                W.HBox([self.metric, self.sort_by, self.descending]),
                W.HBox([self.classes, self.methods, self.layers]),
                W.HBox([self.outcome, self.errors, self.range_column, self.low, self.high]),
                W.HBox([self.merge_twins, self.twins_note]),
                W.HBox([self.selection_note, self.clear_selection]),
                W.HBox([self.previous, self.page_label, self.next, self.page_size]),
            ]
        )

    def set_choices(self, table: GalleryTable, class_names: Sequence[str], metric: str | None = None) -> None:
        """Offer the table's columns and values, keeping each control's value where it still applies
        (the metric control starts at `metric` when it is offered, else at `default_metric`)."""
        metrics = metric_columns(table)
        _offer(self.metric, [(m, m) for m in metrics], metric if metric in metrics else default_metric(metrics))
        _offer(self.sort_by, [(BY_ROW, BY_ROW)] + [(c, c) for c in table.columns], BY_ROW)
        _offer(self.range_column, [(NO_RANGE, NO_RANGE)] + [(m, m) for m in metrics], NO_RANGE)
        classes = _distinct(table, "class")
        labels = [(f"{class_names[c]} ({c})" if 0 <= c < len(class_names) else str(c), c) for c in classes]
        _offer(self.classes, [(ANY, ANY)] + labels, ANY)
        _offer(self.methods, [(ANY, ANY)] + [(m, m) for m in _distinct(table, "method")], ANY)
        _offer(self.layers, [(ANY, ANY)] + [(m, m) for m in _distinct(table, "layer")], ANY)

    def sort(self) -> Sort:
        column = self.sort_by.value
        return Sort(None if column in (None, BY_ROW) else column, bool(self.descending.value))

    def filter(self) -> Filter:
        ranges: tuple[Range, ...] = ()
        column = self.range_column.value
        if column not in (None, NO_RANGE):
            low, high = _bound("min", self.low.value, -math.inf), _bound("max", self.high.value, math.inf)
            ranges = (Range(column, low, high),)
        return Filter(
            classes=None if self.classes.value in (None, ANY) else (int(self.classes.value),),
            methods=None if self.methods.value in (None, ANY) else (self.methods.value,),
            layers=None if self.layers.value in (None, ANY) else (self.layers.value,),
            outcome=self.outcome.value,
            errors=self.errors.value,
            ranges=ranges,
            merge=self.twins if self.merge_twins.value else (),
            rows=self.rows,
        )

    def check(self, filter: Filter | None = None, sort: Sort | None = None) -> None:
        """A ValueError unless the controls can show `filter` and `sort`: one value per menu, one
        range, values the menus offer, and the run's own twins to merge (or none)."""
        if sort is not None:
            _offered(self.sort_by, "sort column", BY_ROW if sort.column is None else sort.column)
        if filter is None:
            return
        for dropdown, name, values in (
            (self.classes, "class", filter.classes),
            (self.methods, "method", filter.methods),
            (self.layers, "layer", filter.layers),
        ):
            if values is not None and len(values) != 1:
                raise ValueError(f"the Gallery's {name} menu shows one {name} or any, not {list(values)}")
            if values is not None:
                _offered(dropdown, name, values[0])
        if len(filter.ranges) > 1:
            raise ValueError(f"the Gallery's range control shows one range, not {len(filter.ranges)}")
        for r in filter.ranges:
            _offered(self.range_column, "range column", r.column)
        if filter.merge not in ((), tuple(sorted(self.twins))):
            raise ValueError(f"merge must be () or this run's twins {list(self.twins)}, got {list(filter.merge)}")

    def show(self, filter: Filter, sort: Sort, page_size: int) -> None:
        """Set the controls to `filter`, `sort` and `page_size` (which `check` accepted); controls that
        already read as them are left alone (so a typed "0.50" stays as typed)."""
        self.rows = filter.rows
        self.selection_note.value = "" if filter.rows is None else f"<b>{len(filter.rows)} selected rows</b>"
        self.clear_selection.layout.display = "none" if filter.rows is None else None
        if _reading(self.sort) != sort:
            self.sort_by.value = BY_ROW if sort.column is None else sort.column
            self.descending.value = sort.descending
        if _reading(self.filter) != filter:
            self.classes.value = ANY if filter.classes is None else filter.classes[0]
            self.methods.value = ANY if filter.methods is None else filter.methods[0]
            self.layers.value = ANY if filter.layers is None else filter.layers[0]
            self.outcome.value, self.errors.value = filter.outcome, filter.errors
            r = filter.ranges[0] if filter.ranges else None
            self.range_column.value = NO_RANGE if r is None else r.column
            self.low.value = "" if r is None or r.low == -math.inf else repr(r.low)
            self.high.value = "" if r is None or r.high == math.inf else repr(r.high)
            self.merge_twins.value = bool(filter.merge)
        if page_size not in self.page_size.options:
            self.page_size.options = sorted({*self.page_size.options, page_size})
        self.page_size.value = page_size


class ControlledView(GalleryView):
    """The Gallery's view: each change is checked against what the controls can show, made under
    the Gallery's lock, and followed by `changed()` (set the menus, draw the tiles)."""

    def __init__(
        self,
        table: GalleryTable,
        *,
        page_size: int,
        controls: Controls,
        lock: threading.RLock,
        changed: Callable[[], None],
        filter: Filter | None = None,
    ) -> None:
        super().__init__(table, page_size=page_size)
        self.filter = filter or Filter()
        self._controls, self._lock, self._changed = controls, lock, changed

    def set_filter(self, filter: Filter) -> Page:
        with self._lock:
            self._controls.check(filter=filter)
            super().set_filter(filter)
            return self._after()

    def set_sort(self, column: str | None, descending: bool = False) -> Page:
        with self._lock:
            self._controls.check(sort=Sort(column, descending))
            super().set_sort(column, descending)
            return self._after()

    def set_page_size(self, size: int) -> Page:
        with self._lock:
            super().set_page_size(size)
            return self._after()

    def set_page(self, index: int) -> Page:
        with self._lock:
            super().set_page(index)
            return self._after()

    def _after(self) -> Page:
        self._changed()
        return self.page


def _twins_note(twins: Sequence[Twin]) -> str:
    if not twins:
        return ""
    pairs = sorted({f"{kept} = {merged}" for kept, merged, _ in twins})
    layers = sorted({layer for _, _, layer in twins})
    return (
        f"<span style='font-size:12px'>At {html.escape(', '.join(layers))} (global average pooling, then a linear "
        f"layer) {html.escape(', '.join(pairs))}: the maps are identical</span>"
    )


def _reading(read: Callable[[], Any]) -> Any:
    """What a control reads as, or None while it holds a bad value."""
    try:
        return read()
    except ValueError:
        return None


def _offered(dropdown: W.Dropdown, name: str, value: Any) -> None:
    values = [v for _, v in dropdown.options]
    if value not in values:
        shown = [v for v in values if v not in (ANY, BY_ROW, NO_RANGE)]
        raise ValueError(f"{name} {value!r} is not among the Gallery's choices {shown}")


def _bound(name: str, text: str, default: float) -> float:
    text = (text or "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"the range's {name} must be a number, got {text!r}") from None


def _distinct(table: GalleryTable, column: str) -> list:
    """The sorted distinct values of a column (ints for a numeric one), none for a missing column."""
    if column not in table.columns:
        return []
    keys = table.column(column)
    present = np.unique(keys.keys[~np.isnan(keys.keys)])
    if keys.labels is not None:
        return [str(keys.labels[int(code)]) for code in present]
    return [int(v) for v in present if float(v).is_integer() and v >= 0]


def _offer(dropdown: W.Dropdown, options: list[tuple[str, Any]], fallback: Any) -> None:
    """Set a dropdown's options when they changed, keeping its value if still offered."""
    if list(dropdown.options) == options:
        return
    value = dropdown.value
    dropdown.options = options
    values = [v for _, v in options]
    dropdown.value = value if value in values else (fallback if fallback in values else None)


__all__ = ["ANY", "BY_ROW", "NO_RANGE", "PAGE_SIZES", "ControlledView", "Controls"]
