"""What a map explains: the target score S_c, one per image, from a model output.

`xw.explain(..., target=...)` takes a class index (or one per image, or None for the top-1 class),
any callable `output -> [B]` scores, or one of the ready-made targets here:

- `SegmentationTarget(category, mask=None, reduction="sum")`: a class's logits over a pixel mask
  (default: the pixels predicted as that class);
- `DetectionTarget(box, label, iou_threshold=0.5, box_term=False)`: the score of the detection that
  best matches a box and label (torchvision's Faster R-CNN, RetinaNet, FCOS, SSD);
- `EmbeddingSimilarity(reference)`: cosine similarity to a reference embedding.
"""

from .classes import Scorer, Target, class_indices, logits_of, make_scorer
from .detection import DetectionTarget, detections_of
from .embedding import EmbeddingSimilarity, embedding_of
from .rows import OutputTarget
from .segmentation import SegmentationTarget, segmentation_logits

__all__ = [
    "DetectionTarget",
    "EmbeddingSimilarity",
    "OutputTarget",
    "Scorer",
    "SegmentationTarget",
    "Target",
    "class_indices",
    "detections_of",
    "embedding_of",
    "logits_of",
    "make_scorer",
    "segmentation_logits",
]
