"""Writing a selection to files: its rows as CSV, and a contact sheet of its first rows (PNG or
standalone HTML). A sheet is capped (`limit` rows): its thumbnails are drawn, so it costs time
and memory per row, while the CSV holds every selected row.

Where a file goes (`export_target`): the path as given, with the format's suffix added unless it
already ends with it (so `run.v2` and `run.v3` write `run.v2.csv` and `run.v3.csv`); a folder
(an existing one, or a path ending in "/") gets `DEFAULT_EXPORT_NAME` inside it. An existing
file is replaced only with `overwrite=True` (the file is created exclusively otherwise, so a
file that appears meanwhile is not replaced either), and a run's own files never are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..checks import positive_int
from .sheet import caption_lines, contact_sheet_html, contact_sheet_png, sheet_cells
from .table import Selection
from .thumbnails import ThumbnailStyle

SHEET_FORMATS: tuple[str, ...] = ("png", "html")
DEFAULT_SHEET_ROWS = 200
DEFAULT_EXPORT_NAME = "gallery_selection"


def export_target(path: str | os.PathLike, format: str, protected: Iterable[Path] = ()) -> Path:
    """The file an export of `format` ("csv", "png", "html") to `path` writes (see the module
    docstring). A ValueError for an empty path, a PermissionError for one of the run's own files
    (`protected`: files, and folders whose whole content is protected)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"an export path must be a str or a path, got {type(path).__name__}")
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError(
            f"the export path is empty; give a file such as '{DEFAULT_EXPORT_NAME}.{format}' or a folder ending in '/'"
        )
    target = Path(text).expanduser()
    if str(text).endswith(("/", os.sep)) or target.is_dir():
        target = target / f"{DEFAULT_EXPORT_NAME}.{format}"
    elif target.suffix.lower() != f".{format}":
        target = target.with_name(f"{target.name}.{format}")
    resolved = target.resolve()
    for own in protected:
        own = own.resolve()
        if resolved == own or own in resolved.parents:
            raise PermissionError(
                f"{str(target)!r} is one of the run's own files ({str(own)!r}); exports never replace them: "
                "choose another path"
            )
    return target


def write_csv(
    selection: Selection, path: str | os.PathLike, *, overwrite: bool = False, protected: Iterable[Path] = ()
) -> Path:
    """The selection (all columns, display order) as CSV at `export_target(path, "csv")`; returns that path."""
    target = export_target(path, "csv", protected)
    with _opened(target, overwrite, "w") as file:
        selection.frame().to_csv(file, index=False)
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
    overwrite: bool = False,
    protected: Iterable[Path] = (),
) -> tuple[Path, int]:
    """A contact sheet of the selection's first `limit` rows at `export_target(path, format)`
    (`format` "png" or "html"), captioned with `caption_lines(row, metric, class_names)`; returns
    the path and the number of rows drawn."""
    if format not in SHEET_FORMATS:
        raise ValueError(f"format must be one of {SHEET_FORMATS}, got {format!r}")
    target = export_target(path, format, protected)
    _check_free(target, overwrite)  # before drawing: a refusal costs nothing
    page = selection.page(0, positive_int("limit", limit))
    thumbs = sheet_cells(page, display, maps, style)  # each photo beside its overlay: a small cue stays visible
    captions = [caption_lines(record, metric, class_names) for record in page.frame.to_dict("records")]
    data = contact_sheet_png(thumbs, captions) if format == "png" else contact_sheet_html(thumbs, captions).encode()
    with _opened(target, overwrite, "wb") as file:
        file.write(data)
    return target, len(page)


def _check_free(target: Path, overwrite: bool) -> None:
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot export to {str(target)!r}: it is a folder")
    if target.exists() and not overwrite:
        raise _exists(target)


def _opened(target: Path, overwrite: bool, mode: str) -> IO[Any]:
    """`target` opened for writing: exclusively (mode "x") unless `overwrite`."""
    _check_free(target, overwrite)
    try:
        return open(target, mode if overwrite else mode.replace("w", "x"), encoding=None if "b" in mode else "utf-8")
    except FileExistsError:
        raise _exists(target) from None


def _exists(target: Path) -> FileExistsError:
    return FileExistsError(f"{str(target)!r} exists; pass overwrite=True (or tick 'overwrite') to replace it")


__all__ = ["DEFAULT_EXPORT_NAME", "DEFAULT_SHEET_ROWS", "SHEET_FORMATS", "export_target", "write_csv", "write_sheet"]
