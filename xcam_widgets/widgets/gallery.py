"""The Gallery: a dataset's evaluation as a paged grid of thumbnails, sorted and filtered by any
column, with summary plots, exports, and an Explorer opened below on any row.

The widget only wires and draws: `gallery.opening` checks the arguments and starts (or reopens)
the run, `gallery.run` collects its rows in the background, `GalleryView` filters, sorts and
pages them, `page_thumbnails` draws thumbnails from the stored maps (never from the network), and
`class_summary` / `distribution` give the summaries. The view is a `ControlledView`
(`gallery_controls`): any change of it, from the menus or from code (`GalleryAPI`: `sort`,
`filter`, `page`, `add_column`, the exports), sets the menus and redraws the tiles, so the two
never disagree; the Strategies view (`gallery_strategies`) selects rows the same way (`select_rows`).
Rows arrive in the run's thread: each batch becomes a new `GalleryTable`, built outside the lock
and swapped in under it; every change of what is shown holds `_lock`, so the run's updates and the
user's clicks never interleave.
"""

from __future__ import annotations

import html
import threading
from typing import Any, Callable, Mapping

import ipywidgets as W
import numpy as np

from ..checks import positive_int
from ..gallery import (
    DEFAULT_EXPORT_NAME,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SHEET_ROWS,
    Filter,
    GalleryTable,
    ThumbnailStyle,
    caption_lines,
    class_summary,
    distribution,
    encode_all,
    page_thumbnails,
)
from ..gallery.columns import error_flags
from ..gallery.display import DisplayImages
from ..gallery.extra import ExtraColumns
from ..gallery.opening import DEFAULT_BATCH, GalleryData, open_gallery
from ..gallery.run import GalleryRun, RunSnapshot
from ..gallery.twins import merged_label, twins
from .controls import descendants
from .explorer import Explorer
from .gallery_api import GalleryAPI
from .gallery_controls import ControlledView, Controls
from .gallery_panel import (
    NOT_METRICS,
    ExportPanel,
    Tile,
    caption_html,
    class_table_html,
    distribution_figure,
    explorer_on,
    update_distribution,
)
from .gallery_strategies import GalleryStrategies
from .live_figure import LiveFigure


class Gallery(GalleryAPI, GalleryStrategies, W.VBox):
    """`Gallery(model, images, methods, layers, target, ...)`: evaluate `images` in the background
    and browse the rows as they come; or `Gallery(model, earlier_run)` to browse an
    `EvaluationResult`, the CSV of `xw.evaluate(out=...)` or its parts folder, computing nothing.

    - `model`: a `load_model` name, a `ModelBundle` or a module (with `preprocess`, except on the
      shapes benchmark); loaded once and shared by the run and every Explorer opened here.
    - `images`: anything `xw.evaluate` takes (a folder, files, "shapes:N", a torch Dataset of
      `(image, label)`), or an earlier run; `display_images`: the images of a reopened run that
      held them in memory (a Dataset or ShapesBatch).
    - `methods`, `layers`, `target`, `metrics`, `batch_size`, `device`, and `run_options` (`out`,
      `overwrite`, `steps`, `tolerance`, `chunk_size`, `method_options`, `strict`, `engine`,
      `engine_options`): as in `xw.evaluate`; they apply to a new run only, and the runner checks
      them (and `out`) before the constructor returns.
    - `metric`: the column shown in captions and summaries (default: energy, pointing, deletion, ...).
    - `background=False` waits for the whole run in the constructor (scripts, tests).

    From code: `sort`, `filter` and `page` drive the menus (as does `view.set_sort`, ...), so the
    menus, the tiles and `view.page.rows` always agree; `add_column` adds a column of your own.
    Where Grad-CAM = XGrad-CAM (a layer before global average pooling and a linear layer), the
    view says so, and "one tile for identical maps" (on by default for the default methods)
    shows one tile labelled with both. `close()` stops the run after its current batch; so does
    the interpreter's exit.
    """

    def __init__(
        self,
        model: Any,
        images: Any,
        methods: Any = None,
        layers: Any = None,
        target: Any = None,
        *,
        metrics: Any = None,
        batch_size: int = DEFAULT_BATCH,
        device: Any = None,
        preprocess: Any = None,
        display_images: Any = None,
        metric: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        thumbnail_side: int = 96,
        colormap: str = "Jet",
        opacity: float = 0.5,
        export_path: str = DEFAULT_EXPORT_NAME,
        export_limit: int = DEFAULT_SHEET_ROWS,
        background: bool = True,
        **run_options: Any,
    ) -> None:
        self.style = ThumbnailStyle(thumbnail_side, colormap, opacity)
        positive_int("page_size", page_size)
        positive_int("export_limit", export_limit)
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"metric must be a column name, got {metric!r}")
        self._lock = threading.RLock()
        self._ready = self._closed = self._quiet = False
        self._background = background
        self._shown: tuple[int, int] = (-1, -1)  # (snapshot version, extra columns version) on screen
        self._thumb_key: tuple | None = None
        self._summary_key: tuple | None = None
        self.extra = ExtraColumns()
        self.explorer: Explorer | None = None
        self.explorer_row: int | None = None
        data = open_gallery(
            model,
            images,
            methods=methods,
            layers=layers,
            target=target,
            metrics=metrics,
            batch_size=batch_size,
            device=device,
            preprocess=preprocess,
            display_images=display_images,
            listener=self._on_run_update,
            run_options=run_options,
        )
        self.bundle, self.run, self.source, self.files = data.bundle, data.run, data.source, data.files
        self.model = self.bundle.model
        try:
            if metric is not None and (metric not in self.run.columns or metric in NOT_METRICS):
                choices = [c for c in self.run.columns if c not in NOT_METRICS]
                raise ValueError(f"metric {metric!r} is not a value column of this run; choose one of {choices}")
            self._wanted_metric = metric
            with self._lock:
                self._build(page_size, export_path, export_limit, data)
                self.status.value = html.escape(data.note)  # first: a run that failed already shows its error
                self._show(self.run.snapshot())
                self._ready = True
        except BaseException:
            self.run.close()
            raise
        if not background:
            self.wait()

    # --- building ---------------------------------------------------------------------------------
    def _build(self, page_size: int, export_path: str, export_limit: int, data: GalleryData) -> None:
        self.display = DisplayImages(self.source, self.style.side)
        self._snapshot = self.run.snapshot()
        self.table = GalleryTable(self._snapshot.table)
        self.twins = twins(self.model, data.methods, data.layers)
        self.controls = Controls(page_size, self.twins)
        merge = self.twins if data.default_methods else ()
        self.view = ControlledView(
            self.table,
            page_size=page_size,
            controls=self.controls,
            lock=self._lock,
            changed=self._on_view_change,
            filter=Filter(merge=merge),
        )
        self.controls.merge_twins.value = bool(merge)
        self.maps: Mapping[int, np.ndarray] = {}
        self.export = ExportPanel(export_path, export_limit)
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="240px"))
        self.progress_label = W.HTML()
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=data.reopened)
        self.tiles = [Tile(self.style.side) for _ in range(page_size)]
        self.grid = W.GridBox(
            self.tiles,
            layout=W.Layout(
                grid_template_columns=f"repeat(auto-fill, {self.style.side + 32}px)", grid_gap="4px", width="60%"
            ),
        )
        self.distribution = LiveFigure(distribution_figure(None))
        self.class_table = W.HTML()
        self.explorer_box = W.VBox()
        self.cancel_button.on_click(lambda button: self.cancel())
        self.strategies_button, self.strategies_box = self._strategies_widgets()
        for widget in (*self.controls.filter_widgets, self.controls.sort_by, self.controls.descending):
            widget.observe(lambda change: self._on_control(self._apply_query), names="value")
        self.controls.metric.observe(lambda change: self._on_control(self._render), names="value")
        self.controls.page_size.observe(
            lambda change: self._on_control(lambda: self.view.set_page_size(int(change["new"]))), names="value"
        )
        self.controls.previous.on_click(lambda button: self._guarded(self.view.previous_page))
        self.controls.next.on_click(lambda button: self._guarded(self.view.next_page))
        for tile in self.tiles:
            self._wire_tile(tile)
        self.export.csv.on_click(lambda button: self._guarded(self.export_csv))
        self.export.png.on_click(lambda button: self._guarded(lambda: self.export_sheet(format="png")))
        self.export.html.on_click(lambda button: self._guarded(lambda: self.export_sheet(format="html")))
        summary = W.VBox([self.distribution, self.class_table], layout=W.Layout(width="40%", overflow="auto"))
        super().__init__(
            [
                W.HBox([self.progress, self.progress_label, self.cancel_button, self.strategies_button]),
                self.controls.box(),
                W.HBox([self.grid, summary]),
                self.export.box(),
                self.status,
                self.strategies_box,
                self.explorer_box,
            ]
        )

    def _wire_tile(self, tile: Tile) -> None:
        tile.button.on_click(lambda button: self._guarded(lambda: self._open_tile(tile)))

    # --- rows arriving (the run's thread) -----------------------------------------------------------
    def _on_run_update(self, run: GalleryRun) -> None:
        snapshot = run.snapshot()
        extra = self.extra.version
        fresh = snapshot.version > self._shown[0]
        table = GalleryTable(self.extra.apply(snapshot.table)) if fresh else None  # built off the lock
        with self._lock:
            if self._ready and not self._closed:
                self._guarded(lambda: self._show(snapshot, table if extra == self.extra.version else None))

    def _show(self, snapshot: RunSnapshot, table: GalleryTable | None = None) -> None:
        """Show a snapshot's rows (keeping the filter, sort and page) and the run's progress."""
        if snapshot.version < self._shown[0]:  # never back to fewer rows
            snapshot, table = self._snapshot, None
        if snapshot.version > self._shown[0] or self.extra.version != self._shown[1]:
            table = table if table is not None else GalleryTable(self.extra.apply(snapshot.table))
            self.view.set_table(table)
            self.table, self.maps, self._snapshot = table, snapshot.maps, snapshot
            self._shown = (snapshot.version, self.extra.version)
            self._quietly(lambda: self.controls.set_choices(table, self.bundle.categories, self._wanted_metric))
            self._render()
        done = snapshot.images_done
        total = max(snapshot.images_total, done)
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.bar_style = {"running": "info", "done": "success", "cancelled": "warning", "failed": "danger"}[
            snapshot.state
        ]
        self.cancel_button.disabled = snapshot.state != "running"
        if snapshot.error is not None:
            rows = len(snapshot.table)
            kept = f"its {rows} rows so far stay" if rows else "it computed no row"
            self._show_error(snapshot.error, f"the run stopped after {done} of {total} images; {kept}")
        self.progress_label.value = f"{done} / {total} images · {snapshot.state}"  # last: the update is whole

    # --- the user's changes (the kernel's thread) ---------------------------------------------------
    def _on_control(self, action: Callable[[], Any]) -> None:
        """A control's change, unless the Gallery itself is setting the controls."""
        if not self._quiet:
            self._guarded(action)

    def _apply_query(self) -> None:
        """Apply the filter and sort the controls describe (both are checked first: on a bad value
        the view stays as it was)."""
        query, sort = self.controls.filter(), self.controls.sort()
        self.table.select(query, sort)
        if query != self.view.filter:
            self.view.set_filter(query)
        if sort != self.view.sort:
            self.view.set_sort(sort.column, sort.descending)
        self.status.value = ""

    def _on_view_change(self) -> None:
        """After any change of the view: the controls show it, and the tiles its page."""
        self._quietly(lambda: self.controls.show(self.view.filter, self.view.sort, self.view.page_size))
        while len(self.tiles) < self.view.page_size:
            tile = Tile(self.style.side)
            self._wire_tile(tile)
            self.tiles.append(tile)
        if len(self.grid.children) != self.view.page_size:
            self.grid.children = self.tiles[: self.view.page_size]
            self._thumb_key = None
        self._render()

    def _guarded(self, action: Callable[[], Any]) -> None:
        """Run `action` under the lock; an error is shown in the widget and the view stays usable."""
        with self._lock:
            try:
                action()
            except Exception as error:  # shown, never raised into the kernel's event loop or the run
                self._show_error(error)

    def _quietly(self, action: Callable[[], Any]) -> None:
        quiet, self._quiet = self._quiet, True
        try:
            action()
        finally:
            self._quiet = quiet

    def _show_error(self, error: BaseException, note: str = "") -> None:
        suffix = f" ({html.escape(note)})" if note else ""
        self.status.value = (
            f"<span style='color:#b00'><b>{type(error).__name__}</b>: {html.escape(str(error))}{suffix}</span>"
        )

    # --- drawing ------------------------------------------------------------------------------------
    @property
    def metric(self) -> str | None:
        return self.controls.metric.value

    def _render(self) -> None:
        """Draw the page (thumbnails only when its rows or their maps changed) and the summaries."""
        page = self.view.page
        rows = page.rows.tolist()
        key = (tuple(rows), tuple(row in self.maps for row in rows), self.style)
        images: list[bytes | None] = [None] * len(rows)
        if key != self._thumb_key:
            images = list(encode_all(page_thumbnails(page, self.display, self.maps, self.style)))
            self._thumb_key = key
        records = page.frame.to_dict("records")
        errors = error_flags(page.frame.get("error"), len(page))
        merge = self.view.filter.merge
        for i, tile in enumerate(self.tiles):
            if i < len(rows):
                record = records[i]
                if merge:
                    record["method"] = merged_label(str(record.get("method")), str(record.get("layer")), merge)
                lines = caption_lines(record, self.metric, self.bundle.categories)
                tile.show(rows[i], caption_html(lines, bool(errors[i])), images[i])
            else:
                tile.show(None, "", None)
        self.controls.page_label.value = (
            f"page {page.index + 1} / {page.count} · {page.total} of {len(self.table)} rows"
        )
        self._render_summary()

    def _render_summary(self) -> None:
        key = (self._shown, self.view.filter, self.metric)
        if key == self._summary_key:
            return
        selection = self.view.selection
        metric = self.metric
        dist = distribution(selection, metric) if metric is not None and len(self.table) else None
        update_distribution(self.distribution, dist)
        classes = class_summary(selection, metric) if "class" in self.table.columns and len(self.table) else None
        self.class_table.value = class_table_html(classes, metric)
        self._summary_key = key

    # --- the Explorer -------------------------------------------------------------------------------
    def _open_tile(self, tile: Tile) -> None:
        if tile.row is not None:
            self.open_row(tile.row)

    def open_row(self, row: int) -> Explorer:
        """Open an Explorer below the grid on `row`'s image, with this Gallery's model object and
        the row's layer, method and class (the previous Explorer closes)."""
        with self._lock:
            record = self.table.record(row)
            if str(record.get("error") or "").strip():
                raise ValueError(f"row {row} has no map: its image could not be read ({record['error']})")
            if self.source is None:
                raise ValueError("the run's images are not available: pass display_images= to open the Explorer")
            image = self.source.image(record["image"])
        explorer = explorer_on(self.bundle, image, record, row, self._background)
        with self._lock:
            previous, self.explorer, self.explorer_row = self.explorer, explorer, row
            title = W.HTML(f"<b>Explorer</b> on row #{row}: image {html.escape(str(record['image']))}")
            self.explorer_box.children = [title, explorer]
        if previous is not None:
            previous.close()
        return explorer

    # --- the run's life -----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run after its current batch; the rows so far stay."""
        self.run.cancel()
        if self.run.running:
            self.status.value = "cancelling after the current batch…"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run has ended and the Explorer (if any) shows its newest state."""
        self.run.join(timeout)
        if self.explorer is not None:
            self.explorer.wait(timeout)

    def close(self) -> None:
        """Stop the run (waiting for its current batch), close the Explorer and every widget."""
        self._closed = True
        run = getattr(self, "run", None)
        if run is not None:
            run.close()
        for part in (getattr(self, "explorer", None), getattr(self, "strategies_view", None)):
            if part is not None:  # absent when the constructor raised early
                part.close()
        for widget in {id(w): w for w in (*descendants(self), *getattr(self, "tiles", ()))}.values():
            widget.close()
        super().close()


__all__ = ["Gallery"]
