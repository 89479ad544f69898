"""Plotly figure builders: pure functions from arrays to figures, no widgets and no torch."""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale
from plotly.subplots import make_subplots

COLORMAPS = ("Jet", "Viridis", "Inferno", "Hot", "RdBu_r", "Greys")
MAX_CELLS = 64  # per side: a bigger map is average-pooled before it is sent (the browser smooths it anyway)
_TRANSPARENT = "rgba(0,0,0,0)"
SIMILARITY_COLORS = {"spearman": "#1f77b4", "ssim": "#ff7f0e"}
SIMILARITY_NAMES = {"spearman": "Spearman ρ", "ssim": "SSIM"}


def png_source(pixels: np.ndarray) -> str:
    """An `[H, W, 3]` uint8 image as a PNG data URI: sent once, far smaller than a JSON array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def photo_pixels(pixels: np.ndarray, clickable: bool) -> dict[str, object]:
    """How an image trace gets the photo: a PNG `source` (small), or for a figure that takes clicks the
    pixels `z` themselves (3-4x the bytes, once per image). With a `source` the widget attaches its click
    handlers only once the browser has loaded the PNG, and a figure update arriving before that leaves
    them unattached for good (plotly.js 4.1 in plotly 7's FigureWidget), so clicks would be lost."""
    return dict(z=pixels, source=None) if clickable else dict(source=png_source(pixels), z=None)


def quantized(map_low: np.ndarray) -> np.ndarray:
    """A [0, 1] map as uint8 levels 0..255, at most MAX_CELLS per side: 4 JSON bytes a cell at most,
    so an update stays under 20 KB whatever the layer."""
    rows, cols = map_low.shape
    step = max(1, -(-max(rows, cols) // MAX_CELLS))
    if step > 1:
        trimmed = map_low[: rows - rows % step or rows, : cols - cols % step or cols]
        r, c = trimmed.shape[0] // step, trimmed.shape[1] // step
        map_low = trimmed[: r * step, : c * step].reshape(r, step, c, step).mean(axis=(1, 3))
    return np.round(np.clip(map_low, 0, 1) * 255).astype(np.uint8)


def threshold_colorscale(name: str, threshold: float) -> list[list]:
    """`name`'s colours, transparent below `threshold`: thresholding restyles, it sends no data."""
    scale = get_colorscale(name)
    if threshold <= 0:
        return scale
    kept = [[threshold, sample_colorscale(scale, [threshold])[0]]] + [[p, c] for p, c in scale if p > threshold]
    return [[0.0, _TRANSPARENT], [threshold, _TRANSPARENT]] + kept


def placement(cells: tuple[int, int], image_size: tuple[int, int]) -> dict[str, float]:
    """x0, dx, y0, dy that stretch `cells` over the image in pixel coordinates."""
    (rows, cols), (height, width) = cells, image_size
    return dict(x0=width / cols / 2 - 0.5, dx=width / cols, y0=height / rows / 2 - 0.5, dy=height / rows)


def heatmap_trace(
    map_low: np.ndarray,
    image_size: tuple[int, int],
    *,
    opacity: float,
    colorscale: str,
    threshold: float = 0.0,
    showscale: bool = True,
) -> go.Heatmap:
    """The map at the layer's resolution, stretched over the image; the browser interpolates it
    (`zsmooth`), so an update sends h·w small integers, not H·W floats."""
    z = quantized(map_low)
    return go.Heatmap(
        z=z,
        **placement(z.shape, image_size),
        zmin=0,
        zmax=255,
        zsmooth="best",
        colorscale=threshold_colorscale(colorscale, threshold),
        opacity=opacity,
        showscale=showscale,
        colorbar=dict(tickvals=[0, 64, 128, 191, 255], ticktext=["0", "0.25", "0.5", "0.75", "1"]),
        hovertemplate="pixel (%{x:.0f}, %{y:.0f})<br>map %{z}/255<extra></extra>",
        name="map",
    )


def overlay_figure(
    pixels: np.ndarray,
    map_low: np.ndarray,
    *,
    opacity: float = 0.5,
    colorscale: str = "Jet",
    threshold: float = 0.0,
    side_by_side: bool = False,
    title: str = "",
    clickable: bool = False,
) -> go.Figure:
    """The photo with the heatmap over it; side by side adds the bare photo on the left.

    `clickable`: the photo, not the heatmap, takes the pointer, so a click reports the image pixel
    (the heatmap's cells are as coarse as the layer); see `photo_pixels` for how the photo is sent."""
    size = pixels.shape[:2]
    columns = 2 if side_by_side else 1
    fig = make_subplots(rows=1, cols=columns, horizontal_spacing=0.03)
    pointer = dict(hovertemplate="pixel (%{x}, %{y})<extra></extra>") if clickable else dict(hoverinfo="skip")
    if side_by_side:
        fig.add_trace(go.Image(**photo_pixels(pixels, clickable), **pointer), row=1, col=1)
    fig.add_trace(go.Image(**photo_pixels(pixels, clickable), **pointer), row=1, col=columns)
    heat = heatmap_trace(map_low, size, opacity=opacity, colorscale=colorscale, threshold=threshold)
    if clickable:  # a hovertemplate overrides hoverinfo in plotly.js: clear it, or the heatmap takes the click
        heat.update(hoverinfo="skip", hovertemplate=None)
    fig.add_trace(heat, row=1, col=columns)
    fig.update_xaxes(visible=False, range=[-0.5, size[1] - 0.5])
    fig.update_yaxes(visible=False, range=[size[0] - 0.5, -0.5], scaleanchor="x")
    fig.update_layout(title=title, width=320 * columns + 80, height=360, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def predictions_figure(
    names: Sequence[str], probabilities: Sequence[float], highlight: int | None = None, title: str = "Top predictions"
) -> go.Figure:
    colors = ["#d62728" if i == highlight else "#1f77b4" for i in range(len(names))]
    fig = go.Figure(
        go.Bar(
            x=list(probabilities)[::-1],
            y=list(names)[::-1],
            orientation="h",
            marker_color=colors[::-1],
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis=dict(range=[0, 1], tickformat=".0%"),
        width=320,
        height=260,
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig


Box = tuple[float, float, float, float]


def target_marks(
    outline: str, boxes: Sequence[tuple[Box, str, bool]], xref: str = "x", yref: str = "y"
) -> tuple[list[dict], list[dict]]:
    """Layout shapes and annotations over the image: `outline` (an SVG path in pixel coordinates) drawn
    white over black so that it shows on any colour, and each box (x1, y1, x2, y2 in pixel edges) with its
    label, the selected one in red and thicker."""
    shapes: list[dict] = []
    if outline:
        for color, thickness in (("black", 4), ("white", 2)):
            line = dict(color=color, width=thickness)
            shapes.append(dict(type="path", path=outline, xref=xref, yref=yref, line=line))
    notes = []
    for (x1, y1, x2, y2), text, selected in boxes:
        color, width = ("#ff2020", 3.0) if selected else ("white", 1.5)
        corners = dict(x0=x1 - 0.5, y0=y1 - 0.5, x1=x2 - 0.5, y1=y2 - 0.5)
        shapes.append(dict(type="rect", xref=xref, yref=yref, line=dict(color=color, width=width), **corners))
        notes.append(
            dict(
                x=x1 - 0.5,
                y=y1 - 0.5,
                xref=xref,
                yref=yref,
                text=text,
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(color=color, size=11),
                bgcolor="rgba(0,0,0,0.55)",
            )
        )
    return shapes, notes


def conservation_errors(map_sums: Sequence[float], score: float) -> tuple[np.ndarray, bool]:
    """Each method's conservation error and whether it is relative: |Σ M − S_c| / |S_c|, or, where S_c = 0
    makes that ratio undefined, the absolute |Σ M − S_c| (False). NaN where Σ M or S_c is not finite."""
    sums = np.asarray(map_sums, dtype=np.float64).reshape(-1)
    relative = score != 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.abs(sums - score) / (abs(score) if relative else 1.0)
    return np.where(np.isfinite(errors), errors, np.nan), relative


def conservation_bars(methods: Sequence[str], map_sums: Sequence[float], score: float) -> dict[str, Any]:
    """What the conservation chart draws, on a log axis (one method's Σ M of ≈ 230 against S_c ≈ 9 would
    flatten every other bar on a linear one): `y`, each method's `conservation_errors`; an exact 0 (whose
    log is -∞) drawn at `floor`, a decade below the smallest nonzero error (1e-12 when there is none),
    and labelled "exact"; a non-finite error draws no bar and is labelled "n/a". Also the bars' `text`
    and `customdata` (Σ M, error), the axis `range` (log10) and the `title` and `yaxis_title`, which name S_c."""
    errors, relative = conservation_errors(map_sums, score)
    positive = errors[errors > 0]
    floor = 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else 1e-12
    heights = [None if np.isnan(e) else (floor if e == 0 else float(e)) for e in errors]
    text = ["n/a" if np.isnan(e) else ("exact" if e == 0 else f"{e:.3g}") for e in errors]
    top = max((h for h in heights if h is not None), default=1.0)
    measure = "|Σ M − S_c| / |S_c|" if relative else "|Σ M − S_c| (S_c = 0: no relative error)"
    return dict(
        x=list(methods),
        y=heights,
        text=text,
        customdata=[[float(v), None if np.isnan(e) else float(e)] for v, e in zip(map_sums, errors)],
        floor=float(floor),
        range=[float(np.log10(floor)) - 0.5, float(np.log10(max(top, floor * 10))) + 0.5],
        title=f"Conservation error, S_c = {score:.4g}",
        yaxis_title=measure,
    )


def conservation_figure(methods: Sequence[str], map_sums: Sequence[float], score: float) -> go.Figure:
    """Conservation: each method's error against the class score S_c, on a log axis (`conservation_bars`)."""
    bars = conservation_bars(methods, map_sums, score)
    fig = go.Figure(
        go.Bar(
            x=bars["x"],
            y=bars["y"],
            text=bars["text"],
            textposition="outside",
            cliponaxis=False,  # the tallest bar's label stays readable above the plot area
            customdata=bars["customdata"],
            name="conservation error",
            hovertemplate="%{x}: Σ M = %{customdata[0]:.4g}, error %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(type="log", range=bars["range"], title=bars["yaxis_title"], title_font_size=11)
    fig.update_layout(title=bars["title"], width=420, height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def sensitivity_figure(predicted: np.ndarray, true: np.ndarray, title: str) -> go.Figure:
    """Sensitivity: per-channel predicted drop p_k against the true drop d_k; the diagonal is p = d."""
    low = float(min(predicted.min(), true.min(), 0.0))
    high = float(max(predicted.max(), true.max(), 0.0))
    fig = go.Figure(
        go.Scattergl(
            x=true,
            y=predicted,
            mode="markers",
            marker=dict(size=6, opacity=0.7),
            name="channels",
            customdata=np.arange(len(true)),
            hovertemplate="channel %{customdata}<br>true %{x:.4f}<br>predicted %{y:.4f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            line=dict(dash="dot", color="grey"),
            hoverinfo="skip",
            name="p = d",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="true drop d_k",
        yaxis_title="predicted drop p_k",
        width=420,
        height=360,
        showlegend=False,
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


def channel_figure(activation: np.ndarray, title: str) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=np.round(activation, 4), colorscale="Viridis", hovertemplate="(%{x}, %{y}) A = %{z:.3f}<extra></extra>"
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(title=title, width=300, height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def small_multiples(
    pixels: np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    colorscale: str = "Jet",
    opacity: float = 0.5,
    columns: int = 4,
) -> go.Figure:
    """A grid of overlays: one per layer, method or class."""
    rows = max(1, -(-len(maps) // columns))
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=list(titles), horizontal_spacing=0.02, vertical_spacing=0.08
    )
    source = png_source(pixels)
    for i, map_low in enumerate(maps):
        row, col = i // columns + 1, i % columns + 1
        fig.add_trace(go.Image(source=source, hoverinfo="skip"), row=row, col=col)
        fig.add_trace(
            heatmap_trace(map_low, pixels.shape[:2], opacity=opacity, colorscale=colorscale, showscale=False),
            row=row,
            col=col,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(width=200 * columns + 40, height=220 * rows + 40, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_annotations(font_size=10)
    return fig


def map_strip(
    pixels: np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    colorscale: str = "Jet",
    opacity: float = 0.5,
    tile: int = 120,
) -> go.Figure:
    """One row of overlays, `tile` pixels each: a method's maps along a sanity check."""
    fig = small_multiples(pixels, maps, titles, colorscale=colorscale, opacity=opacity, columns=max(1, len(maps)))
    fig.update_layout(width=tile * max(1, len(maps)) + 40, height=tile + 60, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def similarity_figure(
    steps: Sequence[str],
    similarity: Mapping[str, Sequence[float]],
    random_logit: Mapping[str, float] | None,
    threshold: float,
    title: str = "",
) -> go.Figure:
    """Similarity to the original map along the cascade (lines, one per measure), the mean
    random-logit similarity (diamonds at "random classes"), and the verdicts' pass mark (dashed)."""
    fig = go.Figure()
    for measure, values in similarity.items():
        color, name = SIMILARITY_COLORS.get(measure), SIMILARITY_NAMES.get(measure, measure)
        fig.add_trace(
            go.Scatter(
                x=list(steps),
                y=list(values),
                mode="lines+markers",
                name=name,
                line=dict(color=color),
                legendgroup=measure,
                hovertemplate=f"{name} %{{y:.3f}}<br>%{{x}}<extra></extra>",
            )
        )
        if random_logit is not None:
            fig.add_trace(
                go.Scatter(
                    x=["random classes"],
                    y=[random_logit[measure]],
                    mode="markers",
                    marker=dict(symbol="diamond", size=11, color=color),
                    legendgroup=measure,
                    showlegend=False,
                    hovertemplate=f"{name} %{{y:.3f}} (random classes)<extra></extra>",
                )
            )
    fig.add_hline(y=threshold, line_dash="dash", line_color="grey", annotation_text=f"pass below {threshold:g}")
    fig.update_yaxes(range=[-1.05, 1.1], title="similarity to the original")
    fig.update_xaxes(type="category", tickangle=-30)
    fig.update_layout(
        title=title, width=380, height=260, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.45)
    )
    return fig
