"""The Gallery's drawings and export controls: a thumbnail tile, the export panel, the metric's
distribution per method (Plotly bars of histogram counts, so a page sends bin counts, not every
value) and the per-class table (HTML). The sort / filter / page controls: `gallery_controls.py`."""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import ipywidgets as W
import plotly.graph_objects as go
from traitlets import TraitError

from ..gallery import Distribution, GalleryTable
from .explorer import Explorer

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


class ExportPanel:
    """Where to write the selection (a path: ".csv", ".png" or ".html" is added unless it ends with
    it; a folder ending in "/" gets `gallery_selection.<format>` inside), how many rows a contact
    sheet holds at most, whether an existing file may be replaced, and one button per file."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = W.Text(value=path, description="export to", layout=W.Layout(width="360px"))
        self.limit = W.BoundedIntText(
            value=limit, min=1, max=10_000, description="sheet rows", layout=W.Layout(width="180px")
        )
        self.overwrite = W.Checkbox(value=False, description="overwrite", indent=False, layout=W.Layout(width="100px"))
        self.csv = W.Button(description="CSV", icon="table")
        self.png = W.Button(description="contact sheet PNG", icon="image")
        self.html = W.Button(description="contact sheet HTML", icon="file")

    def box(self) -> W.Widget:
        return W.HBox([self.path, self.limit, self.overwrite, self.csv, self.png, self.html])


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
        centres = dist.edges[:-1] / 2 + dist.edges[1:] / 2  # halves first: no overflow near ±1.8e308
        width = float(dist.edges[1] - dist.edges[0])
        for group, counts in zip(dist.groups, dist.counts):
            traces.append(go.Bar(x=centres.tolist(), y=counts.tolist(), width=width, name=str(group), opacity=0.6))
    title = "" if dist is None else f"{dist.metric} per method"
    if dist is not None and dist.outside:
        title += f"<br><sup>not in the bins: {html.escape(dist.outside)}</sup>"
    with fig.batch_update():
        fig.data = ()
        if traces:
            fig.add_traces(traces)
        fig.layout.title.text = title
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
    "explorer_on",
    "NOT_METRICS",
    "ExportPanel",
    "Tile",
    "caption_html",
    "class_table_html",
    "default_metric",
    "distribution_figure",
    "metric_columns",
    "update_distribution",
]
