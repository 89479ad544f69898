"""The Gallery's controls and drawings: a thumbnail tile, the sort / filter / export controls, the
metric's distribution per method (Plotly bars of histogram counts, so a page sends bin counts, not
every value) and the per-class table (HTML). Controls only describe a `Filter` and a `Sort`; the
Gallery (`gallery.py`) hands them to the widget-free `GalleryView`."""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from traitlets import TraitError

from ..gallery import Distribution, Filter, GalleryTable, Range, Sort
from ..gallery.query import ERRORS, OUTCOMES
from .explorer import Explorer

ANY = "(any)"
BY_ROW = "(row)"
NO_RANGE = "(none)"
PAGE_SIZES: tuple[int, ...] = (12, 24, 48, 96)
NOT_METRICS: frozenset[str] = frozenset(
    {  # identifiers and text: never a metric (an empty table's columns all
        "row",
        "image",
        "class",
        "label",
        "predicted",
        "method",
        "layer",
        "class_name",
        "error",
    }
)  # look numeric)
PREFERRED_METRICS: tuple[str, ...] = (
    "energy",
    "pointing",
    "deletion",
    "insertion",
    "average_drop",
    "sensitivity_r",
    "conservation_error",
    "confidence",
)


def metric_columns(table: GalleryTable) -> list[str]:
    """The numeric columns worth summarising: every numeric column but the identifiers."""
    return [c for c in table.numeric_columns() if c not in NOT_METRICS]


def default_metric(columns: Sequence[str]) -> str | None:
    """The first of `PREFERRED_METRICS` that the table has, else its first metric column."""
    for name in PREFERRED_METRICS:
        if name in columns:
            return name
    return columns[0] if columns else None


class Tile(W.VBox):
    """One thumbnail: the image (JPEG bytes), its caption and a button that opens the Explorer on
    its row. `row` is the table row shown, or None for an unused tile."""

    def __init__(self, side: int) -> None:
        self.row: int | None = None
        self.image = W.Image(format="jpeg", width=side, height=side)
        self.caption = W.HTML(layout=W.Layout(width=f"{side + 24}px"))
        self.button = W.Button(description="explore", layout=W.Layout(width=f"{side + 24}px"))
        super().__init__(
            [self.image, self.caption, self.button],
            layout=W.Layout(border="1px solid #ddd", padding="2px", align_items="center"),
        )

    def show(self, row: int | None, caption: str, image: bytes | None) -> None:
        """Show `row` with `caption` (HTML) and, when given, new image bytes; None hides the tile."""
        self.row = row
        if row is None:
            self.layout.display = "none"
            return
        if image is not None:
            self.image.value = image
        self.caption.value = caption
        self.button.description = f"explore #{row}"
        self.layout.display = None


def caption_html(lines: Sequence[str], error: bool) -> str:
    """Caption lines as escaped HTML, red for an error row."""
    colour = "#b00" if error else "#222"
    text = "<br>".join(html.escape(line) for line in lines)
    return f"<div style='font-size:11px;line-height:1.25;color:{colour};word-break:break-all'>{text}</div>"


class Controls:
    """Sort, metric and filter controls; `sort()` and `filter()` read them (a ValueError names a bad value)."""

    def __init__(self, page_size: int) -> None:
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
        self.page_size = W.Dropdown(
            options=sorted({*PAGE_SIZES, page_size}),
            value=page_size,
            description="per page",
            layout=W.Layout(width="160px"),
        )
        self.previous = W.Button(description="◀", layout=W.Layout(width="40px"))
        self.next = W.Button(description="▶", layout=W.Layout(width="40px"))
        self.page_label = W.HTML()

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
        )

    def box(self) -> W.Widget:
        return W.VBox(
            [
                W.HBox([self.metric, self.sort_by, self.descending]),
                W.HBox([self.classes, self.methods, self.layers]),
                W.HBox([self.outcome, self.errors, self.range_column, self.low, self.high]),
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
        )


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


class ExportPanel:
    """Where to write the selection: a base path (".csv", ".png" or ".html" is added), how many rows
    a contact sheet holds at most, and one button per file."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = W.Text(value=path, description="export to", layout=W.Layout(width="360px"))
        self.limit = W.BoundedIntText(
            value=limit, min=1, max=10_000, description="sheet rows", layout=W.Layout(width="180px")
        )
        self.csv = W.Button(description="CSV", icon="table")
        self.png = W.Button(description="contact sheet PNG", icon="image")
        self.html = W.Button(description="contact sheet HTML", icon="file")

    def box(self) -> W.Widget:
        return W.HBox([self.path, self.limit, self.csv, self.png, self.html])


def distribution_figure(dist: Distribution | None, height: int = 300) -> go.Figure:
    """The metric's histogram per method (bars of counts over shared bins, overlaid)."""
    fig = go.Figure(
        layout=go.Layout(
            barmode="overlay",
            height=height,
            width=400,
            margin=dict(l=40, r=10, t=40, b=40),
            title=dict(text="", font=dict(size=13)),
            legend=dict(orientation="h"),
        )
    )
    update_distribution(fig, dist)
    return fig


def update_distribution(fig: go.Figure, dist: Distribution | None) -> None:
    """Redraw `fig` for `dist` (None: no metric)."""
    traces = []
    if dist is not None:
        centres = (dist.edges[:-1] + dist.edges[1:]) / 2
        width = float(np.diff(dist.edges).mean()) if len(dist.edges) > 1 else 1.0
        for group, counts in zip(dist.groups, dist.counts):
            traces.append(go.Bar(x=centres.tolist(), y=counts.tolist(), width=width, name=str(group), opacity=0.6))
    with fig.batch_update():
        fig.data = ()
        if traces:
            fig.add_traces(traces)
        fig.layout.title.text = "" if dist is None else f"{dist.metric} per method"
        fig.layout.xaxis.title.text = "" if dist is None else dist.metric
        fig.layout.yaxis.title.text = "rows"


def class_table_html(frame: Any, metric: str | None) -> str:
    """The per-class summary (`gallery.class_summary`) as an HTML table."""
    if frame is None or len(frame) == 0:
        return "<i>no rows selected</i>"
    shown = frame.rename(columns={"metric_mean": f"mean {metric}" if metric else "mean metric"})
    table = shown.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.3f}", border=0, escape=True)
    return f"<div style='font-size:12px;max-height:300px;overflow:auto'><b>per class</b>{table}</div>"


def explorer_on(bundle: Any, image: Any, record: Mapping[str, Any], row: int, background: bool) -> Explorer:
    """An Explorer on `image` showing `record`'s layer, method and class, with `bundle`'s model object
    (never a copy); a value the Explorer cannot take is a ValueError naming the row."""
    explorer = Explorer(model=bundle, image=image, background=background)
    try:
        explorer.layer.value = record["layer"]
        explorer.method.value = record["method"]
        explorer.target.value = int(record["class"])
    except TraitError as error:
        explorer.close()
        raise ValueError(
            f"the Explorer cannot show row {row} ({record['method']} at {record['layer']}, "
            f"class {record['class']}): {error}"
        ) from None
    return explorer


__all__ = [
    "ANY",
    "explorer_on",
    "BY_ROW",
    "NOT_METRICS",
    "NO_RANGE",
    "PAGE_SIZES",
    "Controls",
    "ExportPanel",
    "Tile",
    "caption_html",
    "class_table_html",
    "default_metric",
    "distribution_figure",
    "metric_columns",
    "update_distribution",
]
