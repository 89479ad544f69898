"""The Explorer's target menus: what a map explains, by task, and what a click on the image picks.

A classifier's menus list the top-k classes, then every class, with a search box. A segmentation
model's list the classes present in the prediction; a click on the image adds and picks the connected
region of the predicted class under the cursor. A detector's list its detections; a click on a box
picks it. The menus' values are target keys (`task_views`), which the Session computes and caches by.
"""

from __future__ import annotations

import ipywidgets as W

from ..regions import outline_path
from ..session import Session
from ..task_views import TargetKey
from .controls import class_choices

# The method a view opens with. A segmentation or detection score reads the output at some positions only,
# so its gradient is local; Grad-CAM and XGrad-CAM average it into one weight per channel and spread the
# map over every instance of those channels. On the shapes nets the share of the map on the explained shape
# is 0.72 (segment) and 0.99 (detection) for HiResCAM against 0.42 and 0.17 for XGrad-CAM
# (benchmarks/results/task_localisation_cpu.md).
DEFAULT_METHODS = {"classification": "xgradcam", "segmentation": "hirescam", "detection": "hirescam"}
_WORDS = {"classification": "class", "segmentation": "segment", "detection": "detection"}
_HINTS = {
    "classification": "",
    "segmentation": "click the image to explain the connected region of the predicted class under the cursor",
    "detection": "click a box on the image, or pick a detection above, to explain it",
}


class TargetMenus:
    """The target and comparison menus, the class search box and a hint saying what a click does."""

    def __init__(self, session: Session, top_k: int) -> None:
        self.session, self.top_k = session, top_k
        self.target = W.Dropdown(description="class", layout=W.Layout(width="460px"))
        self.compare_target = W.Dropdown(description="vs class", layout=W.Layout(width="460px"))
        self.search = W.Combobox(placeholder="search any class…", ensure_option=True, layout=W.Layout(width="220px"))
        self.hint = W.HTML()
        self.search.observe(self._on_search, names="value")

    def fill(self) -> None:
        """The menus for the session's current image (the caller holds off refreshes meanwhile)."""
        s = self.session
        task = s.task
        options: list[tuple[str, TargetKey]]
        first: TargetKey | None
        second: TargetKey | None
        if task == "classification":
            options, first, second, names = class_choices(s, self.top_k)
        else:
            options = [(choice.label, choice.key) for choice in s.choices()]
            first = s.default_target if options else None  # None: the view says why there is nothing to explain
            second = next((key for _, key in options if key != first), first)
            names = []
        for dropdown, value in ((self.target, first), (self.compare_target, second)):
            dropdown.options = options
            dropdown.value = value
        self.target.description = _WORDS[task]
        self.compare_target.description = f"vs {_WORDS[task]}"
        self.search.options = names
        self.search.layout.display = None if names else "none"
        self.hint.value = f"<i>{_HINTS[task]}</i>" if _HINTS[task] else ""

    def key_at(self, x: float, y: float) -> TargetKey | None:
        """The key a click at display pixel (x, y) picks, added to the menus if new; None if nothing is there."""
        key = self.session.key_at(x, y)
        if key is not None and all(value != key for _, value in self.target.options):
            entry = (self.session.target_name(key), key)
            for dropdown in (self.target, self.compare_target):
                value = dropdown.value
                dropdown.options = [*dropdown.options, entry]
                dropdown.value = value
        return key

    def marks(self, key: TargetKey) -> tuple[str, list[tuple[tuple[float, float, float, float], str, bool]]]:
        """What the overlay draws for `key`: the outline of the pixels a segmentation key explains (an SVG
        path, "" for none), and each listed detection's (box, label, whether it is `key`)."""
        s = self.session
        if s.task == "detection":
            return "", [(c.box, f"{c.name} {c.value:.2f}", c.key == key) for c in s.choices() if c.box is not None]
        mask = s.target_mask(key)
        return ("" if mask is None else outline_path(mask, s.display.shape[:2])), []

    def _on_search(self, change: dict) -> None:
        names = list(self.search.options)
        if change["new"] in names:
            self.target.value = names.index(change["new"])
