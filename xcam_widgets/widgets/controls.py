"""What the Explorer's controls hold and how they read: the state that decides what is computed,
layer menu labels, checked uploads, and the fast-mode default of the Score-CAM family. Tested without a page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import ipywidgets as W

from ..discovery import LayerInfo
from ..images import MAX_BYTES
from ..session import Session
from ..task_views import TargetKey
from .options import NONE_WORDS, OptionControl

# The exact Score-CAM family runs channels × samples masked forward passes. Over this budget the Explorer
# starts in fast mode (at 224×224 on a 2-core CPU one pass of EfficientNet-Lite0 takes about 0.1–0.2 s).
MASKED_PASS_BUDGET = 256
# Fast mode scores this many channels: on EfficientNet-Lite0 `features` (1,280 channels), over the four bundled
# photos, 19.5–30.5× faster in wall time with displayed-map Pearson r 0.989–0.999 to the exact map; 32 channels
# fell to r = 0.931 on one photo (benchmarks/results/scorecam_cpu.md).
FAST_TOP_CHANNELS = 64


@dataclass(frozen=True)
class ViewState:
    """Everything that decides what is computed (display settings are not here); `image` is the
    session's image generation the state was made for."""

    layer: str
    target: TargetKey  # a class index, or a segment, region or detection (see `task_views`)
    method: str
    options: tuple[tuple[str, Any], ...]
    image: int
    tab: int = 0
    compare_target: TargetKey = 0


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


def needs_fast_mode(channels: int, samples: int) -> bool:
    """Whether the exact map needs more than `MASKED_PASS_BUDGET` masked passes (channels × samples)
    and scoring `FAST_TOP_CHANNELS` channels would score fewer."""
    return channels > FAST_TOP_CHANNELS and channels * samples > MASKED_PASS_BUDGET


class FastMode:
    """Sets a method's `top_channels` control to `FAST_TOP_CHANNELS` where the exact map needs too many
    masked passes and the user has not chosen a value; resets it to none where it is not needed.

    A user's edit of a value set here declines fast mode for that method on that layer: it is not set there again."""

    def __init__(self, controls: Mapping[str, Mapping[str, OptionControl]]) -> None:
        self._controls = controls  # method → its option controls
        self._set: dict[str, str] = {}  # method → the layer for which its control holds the value set here
        self._declined: set[tuple[str, str]] = set()  # (method, layer) where the user changed that value

    def apply(self, method: str, layer: str, layers: Sequence[LayerInfo]) -> str:
        """Update `method`'s `top_channels` control for `layer`; the note to show ("" for none)."""
        controls = self._controls[method]
        control = controls.get("top_channels")
        if control is None:
            return ""
        widget = control.widget
        if method in self._set and widget.value != str(FAST_TOP_CHANNELS):
            self._declined.add((method, self._set.pop(method)))
        samples = controls["samples"].widget.value if "samples" in controls else 1
        channels = next((info.shape[0] for info in layers if info.name == layer), 0)
        if needs_fast_mode(channels, samples) and (method, layer) not in self._declined:
            if method in self._set or widget.value.strip().lower() in NONE_WORDS:
                widget.value = str(FAST_TOP_CHANNELS)
                self._set[method] = layer
                return (
                    f"fast mode: scoring the top {FAST_TOP_CHANNELS} of {channels:,} channels (r ≥ 0.989 to the exact "
                    "map on EfficientNet-Lite0's four photos, benchmarks/results/scorecam_cpu.md); set top channels "
                    "to none for the exact map"
                )
        if self._set.pop(method, None) is not None:  # set here for a layer where it is not wanted
            widget.value = "none"
        return ""


class ClassChoices(NamedTuple):
    """The class menus' entries (top-k predictions with probabilities first, then every class by
    name), the top two classes, and every class name for the search box."""

    options: list[tuple[str, TargetKey]]
    first: TargetKey
    second: TargetKey
    names: list[str]


def class_choices(session: Session, top_k: int) -> ClassChoices:
    top = session.choices(top_k)
    names = [session.class_name(i) for i in range(session.logits.numel())]
    shown = {choice.key for choice in top}
    ranked: list[tuple[str, TargetKey]] = [(choice.label, choice.key) for choice in top]
    rest: list[tuple[str, TargetKey]] = [(name, i) for i, name in enumerate(names) if i not in shown]
    return ClassChoices(ranked + rest, top[0].key, top[min(1, len(top) - 1)].key, names)


def all_option_widgets(option_controls: Mapping[str, Mapping[str, Any]]) -> list[W.Widget]:
    """The widgets of every method's option controls."""
    return [control.widget for controls in option_controls.values() for control in controls.values()]
