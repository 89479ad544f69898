"""The shapes benchmark: synthetic images whose right answer is known, and two small nets for them."""

from .dataset import IMAGE_SIZE, SHAPE_CLASSES, ShapesBatch, make_shapes
from .nets import CAM_LAYER, SHAPES_MODELS, ShapesGAPNet, ShapesVGGNet, load_shapes_model, preprocess

__all__ = [
    "CAM_LAYER",
    "IMAGE_SIZE",
    "SHAPES_MODELS",
    "SHAPE_CLASSES",
    "ShapesBatch",
    "ShapesGAPNet",
    "ShapesVGGNet",
    "load_shapes_model",
    "make_shapes",
    "preprocess",
]
