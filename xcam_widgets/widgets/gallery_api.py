"""The Gallery's API for code: `sort`, `filter`, `page` and `select_rows` / `clear_selection` (through
the view, so the menus and the tiles follow), `add_column`, and the
exports. A mixin of `Gallery`, which owns the state named here."""

from __future__ import annotations

import html
import math
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..gallery import Filter, GalleryTable, Page, Range, RunSnapshot, ThumbnailStyle, write_csv, write_sheet
from ..gallery.extra import ExtraColumns
from ..gallery.twins import Twin
from ..models import ModelBundle
from .gallery_controls import ControlledView, Controls
from .gallery_panel import ExportPanel


class GalleryAPI:
    """Sorting, filtering, paging, columns and exports from code (see `Gallery`)."""

    _lock: threading.RLock
    _snapshot: RunSnapshot
    view: ControlledView
    twins: tuple[Twin, ...]
    extra: ExtraColumns
    export: ExportPanel
    files: tuple[Path, ...]
    display: Callable[[Any], np.ndarray | None]
    maps: Mapping[int, np.ndarray]
    style: ThumbnailStyle
    bundle: ModelBundle
    controls: Controls
    status: Any
    table: GalleryTable
    _show: Callable[[RunSnapshot], None]
    _before_selection: Filter | None = None  # the filter a row selection replaced, restored by clear_selection

    # --- sort, filter, page, columns ---------------------------------------------------------------
    def sort(self, column: str | None, descending: bool = False) -> Page:
        """Sort the grid by `column` (None: by `row`), as the "sort by" menu does, and show the first
        page; returns the page on screen. A ValueError names an unknown column."""
        with self._lock:
            return self.view.set_sort(column, descending)

    def filter(
        self,
        *,
        class_: int | None = None,
        method: str | None = None,
        layer: str | None = None,
        outcome: str = "all",
        errors: str = "all",
        range: tuple[str, float | None, float | None] | None = None,
        merge_twins: bool | None = None,
    ) -> Page:
        """Show only the rows of `class_`, `method`, `layer` (None: any), `outcome` ("correct",
        "misclassified", "unlabelled"), `errors` ("only", "none") and `range` = (column, low, high)
        (None for an open end); `merge_twins`: one tile for identical maps (None: as now). It sets
        the menus as the user would; returns the first page."""
        with self._lock:
            if merge_twins is None:
                merge = self.view.filter.merge
            else:
                merge = self.twins if merge_twins else ()
            ranges: tuple[Range, ...] = ()
            if range is not None:
                column, low, high = range
                ranges = (Range(column, -math.inf if low is None else low, math.inf if high is None else high),)
            query = Filter(
                classes=None if class_ is None else (class_,),
                methods=None if method is None else (method,),
                layers=None if layer is None else (layer,),
                outcome=outcome,  # type: ignore[arg-type]
                errors=errors,  # type: ignore[arg-type]
                ranges=ranges,
                merge=merge,
            )
            return self.view.set_filter(query)

    def select_rows(self, rows: Any) -> Page:
        """Show only the rows whose `row` key is in `rows` (e.g. a cluster's members, a lasso in the
        Strategies view), whatever the menus filtered before; `clear_selection` restores that filter.
        A ValueError names rows the table does not have, and nothing changes."""
        with self._lock:
            query = Filter(rows=rows)
            missing = np.setdiff1d(np.asarray(query.rows, dtype=np.int64), self.table.frame["row"].to_numpy())
            if len(missing):
                raise ValueError(f"rows {missing[:5].tolist()} are not in the table ({len(missing)} missing)")
            previous = self.view.filter
            page = self.view.set_filter(query)
            if previous.rows is None:
                self._before_selection = previous
            return page

    def clear_selection(self) -> Page:
        """Drop the row selection and show the filter it replaced (no selection: nothing changes)."""
        with self._lock:
            previous, self._before_selection = self._before_selection, None
            if self.view.filter.rows is None:
                return self.view.page
            return self.view.set_filter(previous if previous is not None else replace(self.view.filter, rows=None))

    def page(self, index: int) -> Page:
        """Show page `index` (from 0; clamped to the first or last page, as the buttons are)."""
        with self._lock:
            return self.view.set_page(index)

    def add_column(self, name: str, values: Any) -> None:
        """Add a numeric column of your own, to sort, filter, summarise and export like the run's:
        `values` is a Series indexed by `row`, or one value per row in table order (by `row`).
        Rows that arrive later get NaN. A ValueError names a clash, a wrong length or a non-number."""
        with self._lock:
            self.extra.add(name, values, self.table.frame)
            self._show(self._snapshot)

    # --- exports ------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path | None = None, *, overwrite: bool | None = None) -> Path:
        """Write the selection (filtered and sorted, all columns) as CSV; returns the path. `path`
        (default: the export box): ".csv" is added unless it ends with it, a folder gets
        `gallery_selection.csv`; an existing file is replaced only with `overwrite` (default: the
        box's "overwrite"), and the run's own files never are."""
        with self._lock:
            selection = self.view.selection
            target = write_csv(
                selection, self._export_path(path), overwrite=self._overwrite(overwrite), protected=self.files
            )
            self.status.value = f"wrote {len(selection)} rows to {html.escape(str(target))}"
            return target

    def export_sheet(
        self,
        path: str | Path | None = None,
        *,
        format: str = "png",
        limit: int | None = None,
        overwrite: bool | None = None,
    ) -> Path:
        """Write a contact sheet ("png" or "html") of the selection's first `limit` rows (the export
        control's value by default); returns the path. `path` and `overwrite` as in `export_csv`."""
        with self._lock:
            selection = self.view.selection
            target, drawn = write_sheet(
                selection,
                self._export_path(path),
                self.display,
                self.maps,
                style=self.style,
                metric=self.controls.metric.value,
                class_names=self.bundle.categories,
                format=format,
                limit=int(self.export.limit.value) if limit is None else limit,
                overwrite=self._overwrite(overwrite),
                protected=self.files,
            )
            self.status.value = (
                f"wrote a contact sheet of {drawn} of {len(selection)} rows to {html.escape(str(target))}"
            )
            return target

    def _export_path(self, path: str | Path | None) -> str | Path:
        return self.export.path.value if path is None else path

    def _overwrite(self, overwrite: bool | None) -> bool:
        return bool(self.export.overwrite.value) if overwrite is None else bool(overwrite)


__all__ = ["GalleryAPI"]
