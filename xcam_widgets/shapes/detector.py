"""`shapes_det`: a small anchor-free detector trained on the shapes boxes, in the manner of CenterNet
(Zhou et al., "Objects as Points", 2019), so that detection has a trained offline example.

`features` (the classifiers' conv blocks, 64x64 -> 16x16, `features.block4` is the CAM layer) -> one
more conv block (`neck`, receptive field 33 pixels, more than the largest shape) -> two 1x1 convs on
the 16x16 grid of 4-pixel cells:
- `centres`: one logit per shape class and cell; sigmoid ŷ_c,ij is the chance that a shape of class c
  has its box centre in cell (i, j). Trained with CenterNet's focal loss against Gaussian bumps.
- `boxes`: the centre's offset inside the cell (dx, dy, in cells) and the box's width and height (in
  cells), trained with L1 at the true centre cells only.

Decoding (`forward`): a detection is a cell where ŷ is the maximum of its 3x3 neighbourhood and at
least `min_score`; box = centre ± size / 2 in pixels (x1, y1, x2, y2, clipped to the image); score = ŷ,
differentiable, so every CAM method explains it and a box term carries the size outputs' gradient.
The output is what torchvision's detectors return in eval mode: one dict per image with `boxes` `[N, 4]`,
`scores` `[N]` and `labels` `[N]` (the shape's class index), best first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from .dataset import IMAGE_SIZE, SHAPE_CLASSES, ShapesBatch
from .nets import WIDTHS, _block, _features

CELL = 4  # pixels per cell of the 16x16 grid
GRID = IMAGE_SIZE // CELL
# Held-out (1,000 images, 40 % pairs): at 0.3, 11 detections fall on no true shape and none is missed; at
# torchvision's 0.05, 2,725 low peaks of background texture would be listed.
MIN_SCORE = 0.3
MAX_DETECTIONS = 20
PRIOR = 0.1  # initial ŷ of every cell, as in CenterNet (the centre logits' bias starts at logit(0.1))


class ShapesDetNet(nn.Module):
    """Centre heatmaps and box sizes on a 16x16 grid; detections in torchvision's format (see the module docstring)."""

    def __init__(self, min_score: float = MIN_SCORE, max_detections: int = MAX_DETECTIONS) -> None:
        super().__init__()
        self.features = _features()
        self.neck = _block(WIDTHS[-1], WIDTHS[-1])
        self.centres = nn.Conv2d(WIDTHS[-1], len(SHAPE_CLASSES), 1)
        self.boxes = nn.Conv2d(WIDTHS[-1], 4, 1)
        nn.init.constant_(self.centres.bias, math.log(PRIOR / (1 - PRIOR)))  # type: ignore[arg-type]
        self.min_score, self.max_detections = min_score, max_detections

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(centre logits `[B, 6, 16, 16]`, box terms `[B, 4, 16, 16]`: dx, dy, w, h in cells)."""
        hidden = self.neck(self.features(x))
        return self.centres(hidden), self.boxes(hidden)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        logits, terms = self.heads(x)
        heat = torch.sigmoid(logits)
        peaks = (heat.detach() == F.max_pool2d(heat.detach(), 3, stride=1, padding=1)) & (
            heat.detach() >= self.min_score
        )
        return [self._decode(heat[b], terms[b], peaks[b]) for b in range(len(heat))]

    def _decode(self, heat: Tensor, terms: Tensor, peaks: Tensor) -> dict[str, Tensor]:
        labels, rows, cols = peaks.nonzero(as_tuple=True)
        scores = heat[labels, rows, cols]
        order = scores.detach().argsort(descending=True)[: self.max_detections]
        labels, rows, cols, scores = labels[order], rows[order], cols[order], scores[order]
        dx, dy, width, height = terms[:, rows, cols]
        cx, cy = (cols + 0.5 + dx) * CELL, (rows + 0.5 + dy) * CELL
        half_w, half_h = width.clamp(min=0) * CELL / 2, height.clamp(min=0) * CELL / 2
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1).clamp(0, IMAGE_SIZE)
        return {"boxes": boxes.reshape(-1, 4), "scores": scores, "labels": labels}


def true_boxes(data: ShapesBatch) -> tuple[Tensor, Tensor]:
    """(`[N, 2, 4]` boxes x1, y1, x2, y2 in pixels around each shape's mask, x2 and y2 exclusive;
    `[N, 2]` their classes, -1 where an image has one shape). Boxes of absent shapes are 0."""
    boxes = torch.zeros(len(data), 2, 4)
    for image, slot in (data.labels >= 0).nonzero().tolist():
        rows, cols = data.masks[image, data.labels[image, slot]].nonzero(as_tuple=True)
        boxes[image, slot] = torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()
    return boxes, data.labels


def training_targets(data: ShapesBatch) -> tuple[Tensor, Tensor, Tensor]:
    """(Gaussian centre heatmaps `[N, 6, 16, 16]` peaking at 1 in each box's centre cell, with σ a sixth
    of the box's larger side in cells; box terms `[N, 4, 16, 16]` at those cells; the bool `[N, 16, 16]`
    cells that hold a centre)."""
    boxes, labels = true_boxes(data)
    heat = torch.zeros(len(data), len(SHAPE_CLASSES), GRID, GRID)
    terms = torch.zeros(len(data), 4, GRID, GRID)
    centre_cells = torch.zeros(len(data), GRID, GRID, dtype=torch.bool)
    ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    for image, slot in (labels >= 0).nonzero().tolist():
        x1, y1, x2, y2 = (boxes[image, slot] / CELL).tolist()
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        col, row = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
        sigma = max(x2 - x1, y2 - y1) / 6
        bump = torch.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
        c = labels[image, slot]
        heat[image, c] = torch.maximum(heat[image, c], bump)
        terms[image, :, row, col] = torch.tensor([cx - col - 0.5, cy - row - 0.5, x2 - x1, y2 - y1])
        centre_cells[image, row, col] = True
    return heat, terms, centre_cells


def detection_loss(logits: Tensor, terms: Tensor, heat: Tensor, true_terms: Tensor, centre_cells: Tensor) -> Tensor:
    """CenterNet's loss: focal loss on the heatmaps (α = 2, β = 4) plus 0.1 × L1 of the box terms at the
    centre cells, each over the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = heat == 1
    focal = torch.where(positive, (1 - p) ** 2 * torch.log(p), (1 - heat) ** 4 * p**2 * torch.log(1 - p))
    centres = centre_cells.sum().clamp(min=1)
    box = (terms - true_terms).abs().sum(1)[centre_cells].sum()
    return -focal.sum() / centres + 0.1 * box / centres


def average_precision(detections: list[dict[str, Tensor]], data: ShapesBatch, iou: float = 0.5) -> tuple[float, float]:
    """(mean over classes of the VOC-style AP at IoU ≥ `iou`, recall of all the detections): AP is the area
    under the precision-recall curve made monotone (all-point interpolation), detections matched greedily
    best score first, each true box at most once."""
    boxes, labels = true_boxes(data)
    per_class, found, total = [], 0, 0
    for c in range(len(SHAPE_CLASSES)):
        truths = {i: boxes[i][labels[i] == c] for i in range(len(data))}
        count = sum(len(t) for t in truths.values())
        ranked = sorted(
            (
                (float(s), i, b)
                for i, d in enumerate(detections)
                for s, b, found_label in zip(d["scores"], d["boxes"], d["labels"])
                if found_label == c
            ),
            key=lambda item: -item[0],
        )
        used = {i: torch.zeros(len(t), dtype=torch.bool) for i, t in truths.items()}
        hits = []
        for _, i, box in ranked:
            overlaps = box_iou(box[None].detach(), truths[i])[0] if len(truths[i]) else torch.zeros(0)
            best = int(overlaps.argmax()) if len(overlaps) else -1
            hit = best >= 0 and float(overlaps[best]) >= iou and not bool(used[i][best])
            if hit:
                used[i][best] = True
            hits.append(hit)
        found, total = found + sum(hits), total + count
        per_class.append(_voc_ap(torch.tensor(hits, dtype=torch.bool), count))
    return sum(per_class) / len(per_class), found / max(total, 1)


def _voc_ap(hits: Tensor, positives: int) -> float:
    """Area under the precision-recall curve with precision made monotone (VOC 2010+)."""
    if positives == 0:
        return 0.0
    tp = hits.float().cumsum(0)
    recall = torch.cat([torch.zeros(1), tp / positives, torch.ones(1)])
    precision = torch.cat([torch.ones(1), tp / torch.arange(1, len(hits) + 1), torch.zeros(1)])
    precision = precision.flip(0).cummax(0).values.flip(0)
    return float(((recall[1:] - recall[:-1]) * precision[1:]).sum())
