"""What the Strategies view draws, without widgets: the scatter's points and colours, the group menu,
the cluster cards' text and images, and the causal check's summary.

The scatter is one trace for all points (50,000 stay light): the colour of a point is a number, the
colour scale says what it means. For a category (cluster, class, correctness) the number is the id
itself and the scale is a step function, one band of `PALETTE` per integer id between the smallest
and the largest (a not-clustered row, cluster -1, is grey); a metric gets a continuous scale.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..gallery.colormaps import colormap_lut
from ..gallery.thumbnails import encode
from .discovery import TOO_FEW

if TYPE_CHECKING:  # pragma: no cover
    from .causal import CausalCheck
    from .discovery import Discovery

PALETTE: tuple[str, ...] = (  # Plotly's qualitative "Plotly" colours
    "#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
)  # fmt: skip
UNCLUSTERED = "#bbbbbb"
CATEGORIES: tuple[str, ...] = ("cluster", "class", "correct")
MAX_BANDS = 1024  # more distinct ids than this: a continuous scale (a step per id would be a huge scale)
METRIC_SCALE = "Viridis"
MAP_SIDE = 64  # mean maps are drawn at this side (nearest neighbour), crops as they are


@dataclass(frozen=True)
class Colours:
    """Per point `values` (float32; NaN: no value, drawn grey) and the scale that gives their colours."""

    mode: str
    values: np.ndarray
    colorscale: str | list[list[Any]]
    cmin: float
    cmax: float
    discrete: bool


@dataclass(frozen=True)
class Card:
    """One cluster card: its id, the summary as HTML, the mean map and prototype crops as PNG bytes."""

    cluster: int
    summary: str
    mean_map: bytes
    crops: tuple[bytes, ...]
    crop_titles: tuple[str, ...]


def points_frame(discovery: Discovery, table: pd.DataFrame) -> pd.DataFrame:
    """The scatter's points in `discovery.assignments` order, with the table's columns of each row
    (class, correct, metrics) joined on `row`."""
    points = discovery.assignments[["row", "group", "cluster", "x", "y"]].reset_index(drop=True)
    extra = [c for c in table.columns if c not in points.columns]
    joined = points.merge(table[["row", *extra]], on="row", how="left", validate="one_to_one")
    return joined


def colour_modes(points: pd.DataFrame) -> list[str]:
    """ "cluster", then "class" and "correct" where the table has them, then every numeric metric column."""
    skip = {"row", "group", "cluster", "x", "y", "image", "label", "predicted", "class"}
    modes = ["cluster"] + [c for c in ("class", "correct") if c in points.columns]
    numeric = points.select_dtypes(include=["number", "bool"]).columns
    return modes + [c for c in numeric if c not in skip and c not in modes]


def colours(points: pd.DataFrame, mode: str) -> Colours:
    """The colour of each point for `mode` (see the module docstring)."""
    if mode not in colour_modes(points):
        raise ValueError(f"colour mode must be one of {colour_modes(points)}, got {mode!r}")
    values = pd.to_numeric(points[mode], errors="coerce").to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    integral = bool(np.all(finite == np.round(finite)))
    if mode in CATEGORIES and integral and high - low + 1 <= MAX_BANDS:
        return Colours(mode, values.astype(np.float32), band_scale(int(low), int(high)), low - 0.5, high + 0.5, True)
    return Colours(mode, values.astype(np.float32), METRIC_SCALE, low, high if high > low else low + 1, False)


def band_colour(value: int) -> str:
    """A category id's colour: `PALETTE` by id, grey for -1 (not clustered)."""
    return UNCLUSTERED if value < 0 else PALETTE[value % len(PALETTE)]


def band_scale(low: int, high: int) -> list[list[Any]]:
    """A step colour scale over [low - 0.5, high + 0.5]: id v gets `band_colour(v)` on its own band."""
    count = high - low + 1
    scale: list[list[Any]] = []
    for i in range(count):
        colour = band_colour(low + i)
        scale += [[i / count, colour], [(i + 1) / count, colour]]
    return scale


def scale_colour(colours: Colours, value: float) -> str:
    """The colour a discrete `Colours` scale gives `value` (what plotly draws for that point)."""
    if not colours.discrete or not np.isfinite(value):
        raise ValueError("scale_colour reads discrete scales at finite values only")
    span = colours.cmax - colours.cmin
    band = min(int((value - colours.cmin) / span * (len(colours.colorscale) // 2)), len(colours.colorscale) // 2 - 1)
    return str(colours.colorscale[2 * band][1])


def colour_ticks(colours: Colours, categories: list[str] | None = None, most: int = 30) -> dict[str, Any]:
    """A discrete scale's colour bar labels: each id present (class names where known, -1 "not
    clustered"); none for a metric or more than `most` ids."""
    if not colours.discrete:
        return dict(tickvals=None, ticktext=None)
    ids = np.unique(colours.values[np.isfinite(colours.values)]).astype(int).tolist()
    if len(ids) > most:
        return dict(tickvals=None, ticktext=None)
    names = [
        "not clustered"
        if v < 0 and colours.mode == "cluster"
        else categories[v]
        if colours.mode == "class" and categories and 0 <= v < len(categories)
        else str(v)
        for v in ids
    ]
    return dict(tickvals=ids, ticktext=names)


def group_options(discovery: Discovery) -> list[tuple[str, int]]:
    """The group menu: "name (n rows)" per clustered group, "name: too few rows (n)" for the others."""
    options = []
    for g in discovery.groups.itertuples():
        if g.status == TOO_FEW:
            options.append((f"{g.group_name}: {TOO_FEW} ({g.size}), not clustered", int(g.group)))
        else:
            options.append((f"{g.group_name} ({g.size} rows)", int(g.group)))
    return options


def group_clusters(discovery: Discovery, group: int) -> pd.DataFrame:
    """The clusters of `group`, best rank first."""
    clusters = discovery.clusters
    return clusters[clusters["group"] == group].sort_values(["rank", "cluster"]).reset_index(drop=True)


def group_note(discovery: Discovery, group: int) -> str:
    """The group's line above its cards: its size, the eigengap's suggested k and the k used."""
    info = discovery.groups[discovery.groups["group"] == group]
    if info.empty:
        raise ValueError(f"no group {group!r}; groups are {discovery.groups['group'].tolist()}")
    g = info.iloc[0]
    name = html.escape(str(g["group_name"]))
    if g["status"] == TOO_FEW:
        return f"<b>{name}</b>: {TOO_FEW} ({int(g['size'])}), not clustered"
    return (
        f"<b>{name}</b>: {int(g['size'])} rows, suggested k = {int(g['suggested_k'])} (eigengap), "
        f"k = {int(g['k'])}; {discovery.features} features, {html.escape(discovery.method)} at "
        f"{html.escape(discovery.layer)}"
    )


def card(discovery: Discovery, cluster: int) -> Card:
    """Cluster `cluster`'s card: size, rank, score, suggested k, top channels, mean map and crops."""
    rows = discovery.clusters[discovery.clusters["cluster"] == cluster]
    if rows.empty:
        raise ValueError(f"no cluster {cluster!r}; clusters are {discovery.clusters['cluster'].tolist()}")
    c = rows.iloc[0]
    group = discovery.groups[discovery.groups["group"] == c["group"]].iloc[0]
    lines = [
        f"<b>cluster {cluster}</b> · rank {int(c['rank'])} of {int(group['k'])} in {html.escape(str(c['group_name']))}",
        f"size {int(c['size'])} · score {float(c['score']):.3f} · suggested k {int(group['suggested_k'])}",
    ]
    channels = discovery.top_channels.get(cluster, [])
    if channels:
        lines.append(f"top channels {', '.join(str(k) for k in channels)}")
    if "mean_energy" in c and np.isfinite(c["mean_energy"]):
        lines.append(f"mean energy {float(c['mean_energy']):.3f}")
    prototypes = discovery.prototypes.get(cluster, [])
    if not prototypes and discovery.prototype_note:
        lines.append(f"<i>{html.escape(discovery.prototype_note)}</i>")
    crops = tuple(encode(np.ascontiguousarray(p.crop), "PNG") for p in prototypes)
    titles = tuple(f"row {p.row}" + (f", channel {p.channel}" if p.channel >= 0 else "") for p in prototypes)
    summary = "<div style='font-size:12px;line-height:1.3'>" + "<br>".join(lines) + "</div>"
    return Card(cluster, summary, map_png(discovery.mean_maps[cluster]), crops, titles)


def map_png(mean_map: np.ndarray, side: int = MAP_SIDE, colormap: str = "Jet") -> bytes:
    """A map scaled to [0, 1] by its maximum (0 for a map with no positive value), coloured and
    enlarged to about `side` pixels (nearest neighbour), as PNG bytes."""
    m = np.clip(np.nan_to_num(np.asarray(mean_map, dtype=np.float64)), 0, None)
    m = m / m.max() if m.max() > 0 else m
    factor = max(1, side // max(m.shape))
    levels = np.round(np.kron(m, np.ones((factor, factor))) * 255).astype(np.uint8)
    return encode(colormap_lut(colormap)[levels], "PNG")


def causal_html(check: CausalCheck) -> str:
    """The causal check's verdict and table as HTML."""
    if check.effect <= 0:
        verdict = "no sign that the model uses this evidence more than a random region of the same area"
    elif check.contrast > 0:
        verdict = "the model uses this evidence, and it matters more to these images than to the rest of the class"
    else:
        verdict = "the model uses this evidence, as much in the rest of the class: it is not specific to this cluster"
    table = check.table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="–")
    return (
        f"<div style='font-size:11px'><b>causal check</b> ({html.escape(check.how)}): effect {check.effect:.3f}, "
        f"contrast {check.contrast:.3f}: {verdict}{table}</div>"
    )


def selected_rows(points: pd.DataFrame, indices: Any) -> np.ndarray:
    """The `row` keys of the scatter's points at `indices` (a selection or click on the one trace)."""
    at = np.asarray(list(indices), dtype=np.int64)
    if len(at) and (at.min() < 0 or at.max() >= len(points)):
        raise ValueError(f"point indices must lie in [0, {len(points)}), got {at.min()}..{at.max()}")
    return points["row"].to_numpy(dtype=np.int64)[at]


__all__ = [
    "CATEGORIES",
    "PALETTE",
    "Card",
    "Colours",
    "band_colour",
    "band_scale",
    "card",
    "causal_html",
    "colour_ticks",
    "colour_modes",
    "colours",
    "group_clusters",
    "group_note",
    "group_options",
    "map_png",
    "points_frame",
    "scale_colour",
    "selected_rows",
]
