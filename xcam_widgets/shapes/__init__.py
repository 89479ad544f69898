"""The shapes benchmark: synthetic images whose right answer is known, the small nets trained on it,
and a watermarked variant with a net that learnt the watermark instead of the shapes."""

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
    "IMAGE_SIZE",
    "MARK_MODES",
    "MARK_SIZE",
    "SHAPES_MODELS",
    "SHAPE_CLASSES",
    "SHORTCUT_MODEL",
    "ShapesBatch",
    "ShapesGAPNet",
    "ShapesVGGNet",
    "ShortcutBatch",
    "load_shapes_model",
    "make_shapes",
    "make_shortcut_shapes",
    "mark_patterns",
    "preprocess",
]
