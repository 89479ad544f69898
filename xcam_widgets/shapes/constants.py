"""Constants of the shapes benchmark shared by training, the nets and the dataset runner.

Kept free of imports so that the runner can name the held-out images without importing the
training script, and so that the model zoo can list the nets without importing them."""

from __future__ import annotations

CAM_LAYER = "features.block4"  # the last conv block of every shapes net
HELDOUT_SEED = 10_000_019  # not a training seed (those are seed * 1000 + epoch) for the default seed

CLEAN_MODELS: tuple[str, ...] = ("shapes_gap", "shapes_vgg")  # trained on the plain benchmark: they look at the shape
SHORTCUT_MODEL = "shapes_shortcut"  # trained with a class-specific corner mark: it looks at the mark
# trained with a cue at a random position off the shape (shapes/cues.py): name -> (cue kind, the cue's class).
# A "label" net saw its label's cue on 85% of images and follows it; its "_clean" contrast saw the cue of a
# random class, which carries no information, so it looks at the shape.
CUE_MODELS: dict[str, tuple[str, str]] = {
    "shapes_sticker": ("sticker", "label"),
    "shapes_sticker_clean": ("sticker", "random"),
    "shapes_tag": ("tag", "label"),
    "shapes_tag_clean": ("tag", "random"),
}
SHAPES_MODELS: tuple[str, ...] = (*CLEAN_MODELS, SHORTCUT_MODEL, *CUE_MODELS)  # every shipped classifier
SEG_MODEL = "shapes_seg"  # the segmentation net: [B, 7, 64, 64] logits, the 6 shapes then the background
DET_MODEL = "shapes_det"  # a small CenterNet-style detector trained on the shapes' boxes (shapes/detector.py)

__all__ = [
    "CAM_LAYER",
    "CLEAN_MODELS",
    "CUE_MODELS",
    "DET_MODEL",
    "HELDOUT_SEED",
    "SEG_MODEL",
    "SHAPES_MODELS",
    "SHORTCUT_MODEL",
]
