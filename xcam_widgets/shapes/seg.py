"""A small fully convolutional segmentation net for the shapes benchmark (`shapes_seg`).

Output `[B, 7, 64, 64]` logits: channels 0-5 are the shape classes in `SHAPE_CLASSES` order (the same
indices as the classifiers' and as `ShapesBatch.masks`), channel 6 is the background. So a benchmark
label `c` names both the channel to explain and the ground-truth mask to score against.

The encoder is the classifiers' `features` (its last block, `features.block4`, a 16x16 grid, is the CAM
layer); a decoder upsamples to 32x32 and runs one conv block (`decoder.block5`, the block before the
classifier conv); a 1x1 conv gives the class logits, upsampled bilinearly to 64x64.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from PIL import Image
from torch import Tensor, nn

from .constants import SEG_MODEL
from .dataset import IMAGE_SIZE, SHAPE_CLASSES, ShapesBatch
from .nets import WIDTHS, _block, _features, preprocess, weights_path

SEG_CLASSES: tuple[str, ...] = (*SHAPE_CLASSES, "background")
BACKGROUND = len(SHAPE_CLASSES)  # the background's channel, after the shapes
DECODER_WIDTH = 16


class ShapesSegNet(nn.Sequential):
    """features (64 -> 16x16) -> decoder (x2 up, conv block at 32x32) -> 1x1 conv -> x2 bilinear up."""

    def __init__(self, num_classes: int = len(SEG_CLASSES)) -> None:
        super().__init__(
            OrderedDict(
                features=_features(),
                decoder=nn.Sequential(
                    OrderedDict(
                        up=nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                        block5=_block(WIDTHS[-1], DECODER_WIDTH),
                    )
                ),
                classifier=nn.Conv2d(DECODER_WIDTH, num_classes, 1),
                upsample=nn.Upsample(size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False),
            )
        )


def pixel_labels(data: ShapesBatch) -> Tensor:
    """`[N, 64, 64]` long: the class of the shape covering each pixel, `BACKGROUND` where none does
    (shapes never overlap, so at most one mask is True per pixel)."""
    covered = data.masks.any(1)
    return torch.where(covered, data.masks.float().argmax(1), BACKGROUND)


def load_seg_model() -> tuple[ShapesSegNet, Callable[[Image.Image | Tensor], Tensor], list[str]]:
    """`(model, preprocess, categories)` with the shipped weights, the model in eval mode on the CPU."""
    model = ShapesSegNet()
    model.load_state_dict(torch.load(weights_path(SEG_MODEL), map_location="cpu", weights_only=True))
    return model.eval(), preprocess, list(SEG_CLASSES)


@torch.no_grad()
def confusion(model: nn.Module, data: ShapesBatch, batch_size: int = 250) -> Tensor:
    """`[7, 7]` pixel counts: row = true class, column = predicted class (argmax over channels)."""
    k = len(SEG_CLASSES)
    counts = torch.zeros(k * k, dtype=torch.long)
    truth = pixel_labels(data)
    for start in range(0, len(data), batch_size):
        stop = start + batch_size
        predicted = model(preprocess(data.images[start:stop])).argmax(1)
        counts += torch.bincount((truth[start:stop] * k + predicted).flatten(), minlength=k * k)
    return counts.reshape(k, k)


def mean_iou(counts: Tensor) -> float:
    """mIoU = mean over classes of TP / (TP + FP + FN), from a confusion matrix pooled over all images."""
    tp = counts.diag().double()
    union = counts.sum(0).double() + counts.sum(1).double() - tp
    return (tp / union.clamp(min=1)).mean().item()


__all__ = ["BACKGROUND", "SEG_CLASSES", "ShapesSegNet", "confusion", "load_seg_model", "mean_iou", "pixel_labels"]
