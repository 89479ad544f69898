"""`shapes_det`: a detector read off the shapes segmentation net, so that detection has an offline example.

It is not trained on boxes. Each 4-connected region that `shapes_seg` predicts as one shape becomes a
detection: its box encloses the region (x1, y1, x2, y2 in pixels, x2 and y2 exclusive) and its score is
the mean softmax probability of that shape over the region's pixels, so the score is differentiable and
every CAM method can explain it. The output is what torchvision's detectors return in eval mode: one
dict per image with `boxes` `[N, 4]`, `scores` `[N]` and `labels` `[N]` (the shape's class index).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..regions import components
from .seg import BACKGROUND, ShapesSegNet

MIN_PIXELS = 8  # smaller predicted regions are noise at the edge of a shape, not detections


class ShapesBoxes(ShapesSegNet):
    """Boxes around the segmentation net's predicted regions (see the module docstring). The same layers
    and weights as `ShapesSegNet`, so its CAM layers and state dict are the segmentation net's."""

    def __init__(self, min_pixels: int = MIN_PIXELS) -> None:
        super().__init__()
        self.min_pixels = min_pixels

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        probabilities = torch.softmax(super().forward(x), dim=1)
        labels = probabilities.detach().argmax(dim=1)
        return [self._detections(probabilities[b], labels[b]) for b in range(len(labels))]

    def _detections(self, probabilities: Tensor, labels: Tensor) -> dict[str, Tensor]:
        boxes, scores, classes = [], [], []
        for shape in labels.unique().tolist():
            if shape == BACKGROUND:
                continue
            ids = components(labels == shape)
            for region_id in ids.unique().tolist():
                region = ids == region_id
                if region_id == 0 or int(region.sum()) < self.min_pixels:
                    continue
                rows, cols = region.nonzero(as_tuple=True)
                boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
                scores.append(probabilities[shape][region].mean())
                classes.append(shape)
        device = probabilities.device
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4),
            "scores": torch.stack(scores) if scores else probabilities.new_zeros(0),
            "labels": torch.tensor(classes, dtype=torch.long, device=device),
        }
