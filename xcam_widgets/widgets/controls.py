"""What the Explorer's controls hold and how they read: the state that decides what is computed,
layer menu labels, and checked uploads. Plain functions, tested without a page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import ipywidgets as W

from ..discovery import LayerInfo
from ..images import MAX_BYTES


@dataclass(frozen=True)
class ViewState:
    """Everything that decides what is computed (display settings are not here); `image` is the
    session's image generation the state was made for."""

    layer: str
    target: int
    method: str
    options: tuple[tuple[str, Any], ...]
    image: int
    tab: int = 0
    compare_target: int = 0


def layer_label(info: LayerInfo) -> str:
    """The layer menu's entry: indented name, module type, output shape, and where XGrad-CAM = Grad-CAM."""
    marker = "  [XGrad-CAM = Grad-CAM]" if info.gap_linear else ""
    channels, height, width = info.shape
    return f"{'  ' * info.depth}{info.name}  {info.kind} {channels}×{height}×{width}{marker}"


def upload_bytes(upload: Any) -> bytes:
    """The bytes of one `FileUpload` entry (a dict with `content`), refused over `MAX_BYTES`.

    The size is the content's own length: a client that sends no (or a wrong) `size` changes nothing."""
    if not isinstance(upload, Mapping) or "content" not in upload:
        keys = sorted(upload) if isinstance(upload, Mapping) else type(upload).__name__
        raise ValueError(f"the upload has no file content (got {keys}); upload the image again")
    name = upload.get("name", "the upload")
    size = memoryview(upload["content"]).nbytes
    if size > MAX_BYTES:
        raise ValueError(f"{name} is {size:,} bytes; the limit is {MAX_BYTES:,}")
    return bytes(upload["content"])


def descendants(widget: W.Widget) -> Iterator[W.Widget]:
    for child in getattr(widget, "children", ()):
        yield child
        yield from descendants(child)
