"""Captions and contact sheets: the selection's thumbnails as one PNG (drawn with PIL, so no
kaleido is needed) or as one self-contained HTML page (images inlined as base64).

A sheet's cell shows the bare photo beside its overlay (`sheet_cells`): at a usual opacity the heatmap
covers the very cue a user looks for, so the photo must be seen unpainted too."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import PurePath
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..checks import positive_int
from .table import Page
from .thumbnails import ThumbnailStyle, blend, encode, page_thumbnails

CAPTION_PX = 12  # line height of the default font at its size 10
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
CELL_GAP = 2  # px of background between a cell's photo and its overlay


def photo_beside_overlay(photo: np.ndarray, overlay: np.ndarray, gap: int = CELL_GAP) -> np.ndarray:
    """One `[h, 2w + gap, 3]` uint8 cell: the bare photo, `gap` background columns, then the overlay
    (both `[h, w, 3]`, the same size)."""
    if photo.shape != overlay.shape or photo.ndim != 3:
        raise ValueError(f"a photo {photo.shape} and its overlay {overlay.shape} must be the same [h, w, 3]")
    strip = np.empty((photo.shape[0], gap, 3), dtype=np.uint8)
    strip[:] = BACKGROUND
    return np.concatenate([photo, strip, overlay], axis=1)


def sheet_cells(
    page: Page,
    display: Callable[[Any], np.ndarray | None],
    maps: Mapping[int, np.ndarray],
    style: ThumbnailStyle | None = None,
) -> list[np.ndarray]:
    """One photo | overlay cell per row of `page` (`photo_beside_overlay`), for `contact_sheet_png` and
    `contact_sheet_html`. The photo is the image downsized to `style.side` (a grey placeholder where
    `display` gives None), the overlay `maps[row]` blended over it as in the Gallery's tiles; each
    image is loaded once per page (`page_thumbnails`)."""
    style = style or ThumbnailStyle()
    photos = page_thumbnails(page, display, {}, style)  # no maps: the bare downsized photos
    rows = page.rows.tolist()
    return [photo_beside_overlay(p, blend(p, maps[r] if r in maps else None, style)) for p, r in zip(photos, rows)]


def caption_lines(
    record: Mapping[str, Any], metric: str | None = None, class_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Short caption lines for one table row: which row and image, method and layer, label and
    prediction (as `class_names[i]` where given, else the index), and the metric's value (or the
    row's error message)."""
    image = record.get("image", "")
    name = PurePath(image).name if isinstance(image, str) else str(image)
    lines = [f"#{record.get('row', '')} {name}", f"{record.get('method', '')} {record.get('layer', '')}"]
    outcome = _outcome(record, class_names or ())
    if outcome:
        lines.append(outcome)
    error = record.get("error")
    if isinstance(error, str) and error.strip():
        lines.append(f"error: {error.strip()}")
    elif metric is not None:
        value = _number(record.get(metric))
        lines.append(f"{metric} {'n/a' if value is None else format(value, '.3g')}")
    return tuple(lines)


def _outcome(record: Mapping[str, Any], class_names: Sequence[str]) -> str:
    """'label 3 -> pred 5 (wrong)', 'label 3 (right)', or 'pred 5' when the image has no label (-1);
    without either, the class name (or nothing). A class with a name in `class_names` shows it."""
    label, predicted = _whole(record.get("label")), _whole(record.get("predicted"))

    def named(index: int) -> str:
        return class_names[index] if 0 <= index < len(class_names) else str(index)

    if label is None or label < 0:
        name = record.get("class_name")
        return f"pred {named(predicted)}" if predicted is not None else (name if isinstance(name, str) else "")
    if predicted is None:
        return f"label {named(label)}"
    if predicted == label:
        return f"label {named(label)} (right)"
    return f"label {named(label)} -> pred {named(predicted)} (wrong)"


def _whole(value: Any) -> int | None:
    """An int for a finite number (a CSV may give 3.0), else None."""
    number = _number(value)
    return None if number is None else int(number)


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing, NaN or non-numeric value."""
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def contact_sheet_png(
    thumbnails: Sequence[np.ndarray], captions: Sequence[Sequence[str]], *, columns: int = 6, padding: int = 6
) -> bytes:
    """A grid of `thumbnails` (uint8 `[h, w, 3]`) with each one's caption lines below it, as PNG bytes.
    Captions are cut to the tile's width. An empty selection gives a small blank sheet."""
    columns = positive_int("columns", columns)
    if len(captions) != len(thumbnails):
        raise ValueError(f"{len(thumbnails)} thumbnails but {len(captions)} captions")
    font = ImageFont.load_default()
    tile_w = max((t.shape[1] for t in thumbnails), default=96)
    tile_h = max((t.shape[0] for t in thumbnails), default=96)
    text_h = CAPTION_PX * max((len(c) for c in captions), default=0)
    cell_w, cell_h = tile_w + padding, tile_h + text_h + padding
    grid_rows = max(1, math.ceil(len(thumbnails) / columns))
    width = padding + cell_w * min(columns, max(1, len(thumbnails)))
    sheet = Image.new("RGB", (width, padding + cell_h * grid_rows), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (thumb, lines) in enumerate(zip(thumbnails, captions)):
        x = padding + (i % columns) * cell_w
        y = padding + (i // columns) * cell_h
        sheet.paste(Image.fromarray(thumb), (x, y))
        for j, line in enumerate(lines):
            draw.text((x, y + tile_h + j * CAPTION_PX), _fit(draw, font, line, tile_w), fill=INK, font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")  # optimize=True would take ~10x longer for a few % fewer bytes
    return buffer.getvalue()


def _fit(draw: ImageDraw.ImageDraw, font: Any, text: str, width: int) -> str:
    """`text`, cut and ended with '...' to fit in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def contact_sheet_html(
    thumbnails: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    *,
    title: str = "xcam-widgets Gallery",
    format: str = "JPEG",
) -> str:
    """A standalone HTML page: a grid of the thumbnails, inlined as base64 `format` images, with
    their captions (escaped). It needs no file and no network to open."""
    if len(captions) != len(thumbnails):
        raise ValueError(f"{len(thumbnails)} thumbnails but {len(captions)} captions")
    mime = "image/jpeg" if format == "JPEG" else "image/png"
    figures = []
    for thumb, lines in zip(thumbnails, captions):
        data = base64.b64encode(encode(thumb, format)).decode("ascii")
        text = "<br>".join(html.escape(line) for line in lines)
        figures.append(
            f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(lines[0] if lines else "")}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;margin:16px}main{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;width:min-content}figcaption{font-size:11px;line-height:1.3}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head>\n<body><h1>{html.escape(title)}</h1>\n<p>{len(thumbnails)} rows</p>\n"
        f"<main>\n" + "\n".join(figures) + "\n</main></body></html>\n"
    )
