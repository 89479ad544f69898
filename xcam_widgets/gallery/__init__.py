"""The Gallery's logic without widgets: filter, sort and page the evaluation table; summarise it;
draw thumbnails from the stored low-resolution maps; export the selection; run the evaluation in
the background (`run`) or reopen an earlier one (`opening`); join the user's own columns
(`extra`); find methods whose maps are the same at a layer (`twins`).

The widget (`xcam_widgets.widgets.gallery`) only wires controls to these and draws their output.
"""

from .colormaps import COLORMAPS, colormap_lut
from .display import DisplayImages
from .export import DEFAULT_EXPORT_NAME, DEFAULT_SHEET_ROWS, SHEET_FORMATS, export_target, write_csv, write_sheet
from .opening import GalleryData, is_earlier_run, open_gallery
from .query import Filter, Range, Sort
from .run import RUN_STATES, GalleryRun, RunSnapshot
from .sheet import caption_lines, contact_sheet_html, contact_sheet_png, sheet_cells
from .summaries import CLASS_SUMMARY_COLUMNS, Distribution, class_summary, distribution
from .table import GalleryTable, Page, Selection, page_bounds
from .thumbnails import ThumbnailStyle, encode, encode_all, page_thumbnails, thumbnail, unit_map, upsample
from .view import DEFAULT_PAGE_SIZE, GalleryView

__all__ = [
    "CLASS_SUMMARY_COLUMNS",
    "COLORMAPS",
    "DEFAULT_EXPORT_NAME",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SHEET_ROWS",
    "RUN_STATES",
    "SHEET_FORMATS",
    "DisplayImages",
    "Distribution",
    "Filter",
    "GalleryData",
    "GalleryRun",
    "GalleryTable",
    "GalleryView",
    "Page",
    "Range",
    "RunSnapshot",
    "Selection",
    "Sort",
    "ThumbnailStyle",
    "caption_lines",
    "class_summary",
    "colormap_lut",
    "contact_sheet_html",
    "contact_sheet_png",
    "sheet_cells",
    "distribution",
    "encode",
    "encode_all",
    "export_target",
    "is_earlier_run",
    "open_gallery",
    "page_bounds",
    "page_thumbnails",
    "thumbnail",
    "unit_map",
    "upsample",
    "write_csv",
    "write_sheet",
]
