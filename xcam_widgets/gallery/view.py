"""The Gallery's view state: which table, filter, sort, page size and page; no widgets.

Every change is checked by computing the selection it asks for before anything is assigned, so a
bad argument raises and leaves the view as it was. A new filter or sort goes back to the first
page; a new page size keeps the first row on screen visible; a grown table (rows arriving from
the runner) keeps the filter, the sort and the page.
"""

from __future__ import annotations

from ..checks import positive_int
from .query import Filter, Sort
from .table import GalleryTable, Page, Selection, page_bounds

DEFAULT_PAGE_SIZE = 24


class GalleryView:
    """What one Gallery shows: `selection` (filtered and sorted rows) and `page` (the rows on screen)."""

    def __init__(self, table: GalleryTable, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if not isinstance(table, GalleryTable):
            raise ValueError(f"GalleryView needs a GalleryTable, got {type(table).__name__}")
        self.table = table
        self.filter = Filter()
        self.sort = Sort()
        self.page_size = positive_int("page size", page_size)
        self.page_index = 0

    @property
    def selection(self) -> Selection:
        return self.table.select(self.filter, self.sort)

    @property
    def page(self) -> Page:
        """The rows on screen (the index is clamped, so it is always a valid page)."""
        return self.selection.page(self.page_index, self.page_size)

    def set_table(self, table: GalleryTable) -> Page:
        """Show a new snapshot (e.g. with more rows), keeping the filter, sort and page."""
        if not isinstance(table, GalleryTable):
            raise ValueError(f"set_table needs a GalleryTable, got {type(table).__name__}")
        table.select(self.filter, self.sort)  # raises if the new table lacks a column the view uses
        self.table = table
        page = self.page
        self.page_index = page.index
        return page

    def set_filter(self, filter: Filter) -> Page:
        """Filter the rows and go back to the first page."""
        self.table.select(filter, self.sort)
        self.filter, self.page_index = filter, 0
        return self.page

    def set_sort(self, column: str | None, descending: bool = False) -> Page:
        """Sort by `column` (None: by `row`) and go back to the first page."""
        sort = Sort(column, descending)
        self.table.select(self.filter, sort)
        self.sort, self.page_index = sort, 0
        return self.page

    def set_page_size(self, size: int) -> Page:
        """Change the page size; the page shown is the one that holds the current first row."""
        size = positive_int("page size", size)
        _, _, start, _ = page_bounds(len(self.selection), self.page_size, self.page_index)
        self.page_size, self.page_index = size, start // size
        return self.page

    def set_page(self, index: int) -> Page:
        """Go to page `index`, clamped to the first or last page."""
        index, _, _, _ = page_bounds(len(self.selection), self.page_size, index)
        self.page_index = index
        return self.page

    def next_page(self) -> Page:
        return self.set_page(self.page_index + 1)

    def previous_page(self) -> Page:
        return self.set_page(self.page_index - 1)
