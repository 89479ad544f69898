"""The shapes benchmark: synthetic images whose right answer is known, the small nets trained on it,
a watermarked variant with a net that learnt the watermark instead of the shapes, and cues at random
positions (a sticker, a tag) with nets that follow them and clean contrasts that do not."""

from .cues import CUE_KINDS, CueBatch, make_cue_shapes
from .dataset import (
    IMAGE_SIZE,
    MARK_MODES,
    MARK_SIZE,
    SHAPE_CLASSES,
    ShapesBatch,
    ShortcutBatch,
    make_shapes,
    make_shortcut_shapes,
    mark_patterns,
)
from .nets import (
    CAM_LAYER,
    CLEAN_MODELS,
    CUE_MODELS,
    SHAPES_MODELS,
    SHORTCUT_MODEL,
    ShapesGAPNet,
    ShapesVGGNet,
    load_shapes_model,
    preprocess,
)

__all__ = [
    "CAM_LAYER",
    "CLEAN_MODELS",
    "CUE_KINDS",
    "CUE_MODELS",
    "IMAGE_SIZE",
    "MARK_MODES",
    "MARK_SIZE",
    "SHAPES_MODELS",
    "SHAPE_CLASSES",
    "SHORTCUT_MODEL",
    "CueBatch",
    "ShapesBatch",
    "ShapesGAPNet",
    "ShapesVGGNet",
    "ShortcutBatch",
    "load_shapes_model",
    "make_cue_shapes",
    "make_shapes",
    "make_shortcut_shapes",
    "mark_patterns",
    "preprocess",
]
