"""Detection target: the score of the detection that best matches a given box and label."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Sequence, cast

import numpy as np
import torch
from torchvision.ops import box_iou

from .rows import OutputTarget, RowsOf, class_index, rows_of_spec

Detections = list[dict[str, torch.Tensor]]
_KEYS = ("boxes", "scores", "labels")


def detections_of(output: Any) -> Detections:
    """Per-image dicts with `boxes` `[N, 4]` (x1, y1, x2, y2), `scores` `[N]` and `labels` `[N]`: what
    torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD) return in eval mode."""
    images = [output] if isinstance(output, dict) else output
    if not isinstance(images, (list, tuple)) or not all(
        isinstance(d, dict) and all(isinstance(d.get(k), torch.Tensor) for k in _KEYS) for d in images
    ):
        raise TypeError(
            f"a detection target needs a model output that is a list of dicts with keys {list(_KEYS)} "
            f"(a torchvision detector in eval mode), got {type(output).__name__}"
        )
    return list(images)


def _as_boxes(box: Any) -> torch.Tensor:
    """`[n, 4]` float64 boxes from one box or one per image, checked: finite, positive width and height."""
    boxes = box.detach() if isinstance(box, torch.Tensor) else torch.as_tensor(np.asarray(box, dtype=np.float64))
    boxes = boxes.double()
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
        raise ValueError(
            f"box must be [x1, y1, x2, y2] or one such box per image ([B, 4]), got shape {tuple(boxes.shape)}"
        )
    if not torch.isfinite(boxes).all() or (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError(f"box must be finite with x2 > x1 and y2 > y1 (pixels, x1, y1, x2, y2), got {boxes.tolist()}")
    return boxes


def _as_labels(label: int | Sequence[int]) -> torch.Tensor:
    values = [label] if not isinstance(label, (list, tuple, torch.Tensor, np.ndarray)) else list(label)
    if not values:
        raise ValueError("label must be a class index or one per image, got an empty sequence")
    return torch.tensor([class_index("label", v.item() if hasattr(v, "item") else v) for v in values])


@dataclass(frozen=True, eq=False)
class DetectionTarget(OutputTarget):
    """S = s_d, or s_d + IoU(box, b_d) with `box_term`, where d is the detection of class `label`
    whose box b_d overlaps `box` most, among those with IoU(box, b_d) ≥ `iou_threshold`.

    The IoU term carries the gradient of the box-regression outputs, as pytorch-grad-cam's
    `FasterRCNNBoxScoreTarget` (which sums s_d + IoU over its boxes). `box` is `[x1, y1, x2, y2]` in
    the input's pixels, for every image, or `[B, 4]`; `label` an int or one per image. A box that no
    detection matches on the clean pass is an error; on later passes (masked or noisy copies) the
    detection may be gone, and the score is then 0 (`missing="zero"`, set by `bind`).
    """

    box: Any
    label: int | Sequence[int]
    iou_threshold: float = 0.5
    box_term: bool = False
    missing: Literal["raise", "zero"] = "raise"

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", _as_boxes(self.box))
        object.__setattr__(self, "label", _as_labels(self.label))
        threshold = self.iou_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"iou_threshold must be a number in (0, 1], got {threshold!r}")
        if not isinstance(self.box_term, bool):
            raise TypeError(f"box_term must be a bool, got {type(self.box_term).__name__}")
        if self.missing not in ("raise", "zero"):
            raise ValueError(f"missing must be 'raise' or 'zero', got {self.missing!r}")

    def bind(self, output: Any) -> DetectionTarget:
        self(output)  # the clean pass must contain every wanted detection: raises otherwise
        return dataclasses.replace(self, missing="zero")

    def __call__(self, output: Any, rows_of: RowsOf = None) -> torch.Tensor:
        detections = detections_of(output)
        rows = len(detections)
        boxes = rows_of_spec(self.box, rows, rows_of, "box")
        labels = rows_of_spec(cast(torch.Tensor, self.label), rows, rows_of, "label")  # a tensor since __post_init__
        return torch.stack([self._score(det, boxes[row], int(labels[row]), row) for row, det in enumerate(detections)])

    def _score(self, det: dict[str, torch.Tensor], box: torch.Tensor, label: int, row: int) -> torch.Tensor:
        scores = det["scores"]
        ious = box_iou(box[None].to(det["boxes"]), det["boxes"])[0]
        matches = ((det["labels"] == label) & (ious >= self.iou_threshold)).nonzero()[:, 0]
        if len(matches) == 0:
            if self.missing == "zero":
                return scores.sum() * 0.0  # no detection left: 0, still attached to the graph
            same = ious[det["labels"] == label]
            best = f"{float(same.max()):.3f}" if len(same) else "none"
            raise ValueError(
                f"no detection of label {label} overlaps box {[round(v, 2) for v in box.tolist()]} with "
                f"IoU >= {self.iou_threshold} in image {row}: {len(scores)} detections, labels "
                f"{sorted(set(det['labels'].tolist()))}, best IoU of a label-{label} detection {best}"
            )
        best_match = matches[ious[matches].argmax()]
        score = scores[best_match]
        return score + ious[best_match] if self.box_term else score
