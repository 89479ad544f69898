"""What the shown image's prediction offers to explain, by task: classes, segments, regions, detections.

A *target key* is hashable plain data that names what a map explains, so that the Session caches by
it and a menu holds it: an int (a class), `("segment", c)` (the pixels predicted as class c),
`("region", c, id)` (one 4-connected region of them, named as in `regions.region_at`) or
`("detection", i)` (the clean pass's i-th detection). `target_of` turns a key into the target
`xw.explain` takes. Pure functions of the clean pass's output; no widgets.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch

from .models.bundle import Task
from .regions import region_at, region_of
from .targets import DetectionTarget, SegmentationTarget, Target, detections_of, segmentation_logits

TargetKey = Union[int, tuple]
MIN_DETECTION_SCORE = 0.05  # detections listed for a detector's image (torchvision's own default threshold)


@dataclass(frozen=True)
class Choice:
    """One thing a map can explain: its key, its menu text, its class name, and its value (class
    probability, share of the predicted pixels, or detection score); `box` (x1, y1, x2, y2) for a detection."""

    key: TargetKey
    label: str
    name: str
    value: float
    box: tuple[float, float, float, float] | None = None


def task_of(output: Any) -> Task:
    """The task an output's form says: detections (a list of dicts with boxes, scores, labels),
    per-pixel logits `[B, C, H, W]` (segmentation), else classification."""
    try:
        detections_of(output)
        return "detection"
    except TypeError:
        pass
    try:
        segmentation_logits(output)
        return "segmentation"
    except (TypeError, ValueError):
        return "classification"


def class_name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def predicted_labels(output: Any) -> torch.Tensor:
    """`[H, W]` argmax class of each pixel of the first image of a segmentation output."""
    return segmentation_logits(output)[0].detach().argmax(dim=0)


def segment_choices(output: Any, names: Sequence[str]) -> list[Choice]:
    """The classes present in the prediction, most pixels first: explaining one sums its logits over
    the pixels predicted as it."""
    labels = predicted_labels(output)
    counts = torch.bincount(labels.flatten(), minlength=int(labels.max()) + 1).tolist()
    total = labels.numel()
    present = sorted((c for c, n in enumerate(counts) if n), key=lambda c: -counts[c])
    return [
        Choice(
            ("segment", c),
            f"{class_name(names, c)} ({counts[c] / total:.1%} of pixels)",
            class_name(names, c),
            counts[c] / total,
        )
        for c in present
    ]


def detection_choices(output: Any, names: Sequence[str], min_score: float = MIN_DETECTION_SCORE) -> list[Choice]:
    """The first image's detections scoring at least `min_score`, best first."""
    det = detections_of(output)[0]
    scores = det["scores"].detach().float().cpu()
    choices = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if float(scores[i]) < min_score:
            break
        name = class_name(names, int(det["labels"][i]))
        box = tuple(round(float(v), 1) for v in det["boxes"][i].detach().cpu())
        label = f"#{i} {name} {float(scores[i]):.2f} at [{', '.join(f'{v:.0f}' for v in box)}]"
        choices.append(Choice(("detection", i), label, name, float(scores[i]), box))  # type: ignore[arg-type]
    return choices


def default_key(task: Task, output: Any, names: Sequence[str]) -> TargetKey:
    """What a segmentation or detection view explains first: the largest predicted class that is not
    named background (else the largest), or the best detection."""
    if task == "segmentation":
        segments = segment_choices(output, names)
        shapes = [c for c in segments if "background" not in c.name.lower()]
        return (shapes or segments)[0].key
    if task == "detection":
        found = detection_choices(output, names)
        if not found:
            raise ValueError(f"the detector found nothing scoring at least {MIN_DETECTION_SCORE} on this image")
        return found[0].key
    raise ValueError(f"a {task} output has no default key: pass a class index")


def region_key(output: Any, row: int, col: int) -> TargetKey:
    """The key of the predicted region under output pixel (row, col)."""
    label, region_id, _ = region_at(predicted_labels(output), row, col)
    return ("region", label, region_id)


def detection_at(choices: Sequence[Choice], x: float, y: float) -> TargetKey | None:
    """The smallest listed detection whose box contains the point (x, y); None if none does."""
    boxes = [(c.box, c.key) for c in choices if c.box is not None]
    inside = [(box, key) for box, key in boxes if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
    if not inside:
        return None
    return min(inside, key=lambda found: (found[0][2] - found[0][0]) * (found[0][3] - found[0][1]))[1]


_KEY_LENGTHS = {"segment": 2, "region": 3, "detection": 2}


def checked_key(key: Any) -> TargetKey:
    """`key` as a target key: any integer (NumPy's too) becomes an int class index; a tuple must be one of
    the kinds in the module docstring, with integer entries. Anything else is a ValueError naming it."""
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, tuple) and key and _KEY_LENGTHS.get(key[0]) == len(key):
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in key[1:]):
            return (key[0], *(int(v) for v in key[1:]))
    raise ValueError(
        f"unknown target {key!r}: expected a class index, ('segment', class), ('region', class, id) "
        "or ('detection', index)"
    )


def target_of(key: TargetKey, output: Any) -> Target:
    """The target that `key` names on this output (see the module docstring)."""
    key = checked_key(key)
    if isinstance(key, int):
        return key
    if key[0] == "segment":
        return SegmentationTarget(key[1])
    if key[0] == "region":
        return SegmentationTarget(key[1], mask=region_of(predicted_labels(output), key[1], key[2]))
    det = detections_of(output)[0]
    index = key[1]
    if not 0 <= index < len(det["scores"]):
        raise ValueError(f"detection {index} does not exist: this image has {len(det['scores'])} detections")
    return DetectionTarget(det["boxes"][index].detach(), int(det["labels"][index]))


def key_mask(key: TargetKey, output: Any) -> np.ndarray | None:
    """The bool `[H, W]` pixels (at the output's resolution) that a segment or region key explains; None otherwise."""
    key = checked_key(key)
    if not isinstance(key, tuple) or key[0] not in ("segment", "region"):
        return None
    target = target_of(key, output)
    assert isinstance(target, SegmentationTarget)
    if target.mask is not None:
        return target.mask[0].bool().cpu().numpy()
    return (predicted_labels(output) == target.category).cpu().numpy()
