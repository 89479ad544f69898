"""Writing a selection to files: its rows as CSV, and a contact sheet of its first rows (PNG or
standalone HTML). A sheet is capped (`limit` rows): its thumbnails are drawn, so it costs time
and memory per row, while the CSV holds every selected row."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import positive_int
from .sheet import caption_lines, contact_sheet_html, contact_sheet_png
from .table import Selection
from .thumbnails import ThumbnailStyle, page_thumbnails

SHEET_FORMATS: tuple[str, ...] = ("png", "html")
DEFAULT_SHEET_ROWS = 200


def write_csv(selection: Selection, path: str | os.PathLike) -> Path:
    """The selection (all columns, display order) as CSV at `path`."""
    target = Path(path)
    selection.to_csv(target)
    return target


def write_sheet(
    selection: Selection,
    path: str | os.PathLike,
    display: Callable[[Any], np.ndarray | None],
    maps: Mapping[int, np.ndarray],
    *,
    style: ThumbnailStyle | None = None,
    metric: str | None = None,
    class_names: Sequence[str] = (),
    format: str = "png",
    limit: int = DEFAULT_SHEET_ROWS,
) -> tuple[Path, int]:
    """A contact sheet of the selection's first `limit` rows at `path` (`format` "png" or "html"),
    captioned with `caption_lines(row, metric, class_names)`; returns the path and the number of
    rows drawn."""
    if format not in SHEET_FORMATS:
        raise ValueError(f"format must be one of {SHEET_FORMATS}, got {format!r}")
    page = selection.page(0, positive_int("limit", limit))
    thumbs = page_thumbnails(page, display, maps, style)
    captions = [caption_lines(record, metric, class_names) for record in page.frame.to_dict("records")]
    target = Path(path)
    if format == "png":
        target.write_bytes(contact_sheet_png(thumbs, captions))
    else:
        target.write_text(contact_sheet_html(thumbs, captions), encoding="utf-8")
    return target, len(page)


__all__ = ["DEFAULT_SHEET_ROWS", "SHEET_FORMATS", "write_csv", "write_sheet"]
