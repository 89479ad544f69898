"""Two small CNNs for the shapes benchmark, one per kind of head that CAM methods care about.

`ShapesGAPNet` ends in global average pooling and a linear layer, so CAM is defined on its last
block and Grad-CAM equals XGrad-CAM there. `ShapesVGGNet` flattens its features into fully connected
layers, where the two differ. Both are plain `nn.Sequential` trees (torch.fx traceable) whose last
conv block, `features.block4`, sees a 16x16 grid of the 64x64 input.

`shapes_shortcut` is a `ShapesGAPNet` trained on the watermarked shapes (`make_shortcut_shapes`):
right on the training distribution for the wrong reason, the mark in the corner. The `CUE_MODELS`
are `ShapesGAPNet`s trained with a sticker or a tag at a random position (`cues.make_cue_shapes`):
`shapes_sticker` and `shapes_tag` follow their cue, their `_clean` contrasts do not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .constants import CAM_LAYER as CAM_LAYER  # re-exported: the block that CAM methods explain
from .constants import CLEAN_MODELS as CLEAN_MODELS
from .constants import CUE_MODELS as CUE_MODELS
from .constants import SHAPES_MODELS as SHAPES_MODELS
from .constants import SHORTCUT_MODEL as SHORTCUT_MODEL
from .dataset import IMAGE_SIZE, SHAPE_CLASSES

MEAN, STD = 0.5, 0.25
WIDTHS = (16, 32, 64, 64)  # channels of the four conv blocks
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _block(c_in: int, c_out: int, stride: int = 1, pool: bool = False) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> ReLU, then an optional 2x2 max pool."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), bn=nn.BatchNorm2d(c_out), relu=nn.ReLU()
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def _features() -> nn.Sequential:
    """Four blocks: 64x64 -> 32x32 (strided conv) -> 16x16 (max pool) -> 16x16 -> 16x16.
    The receptive field of `block4` is 25 pixels, about the size of the largest shape."""
    w1, w2, w3, w4 = WIDTHS
    return nn.Sequential(
        OrderedDict(
            block1=_block(3, w1, stride=2),
            block2=_block(w1, w2, pool=True),
            block3=_block(w2, w3),
            block4=_block(w3, w4),
        )
    )


class ShapesGAPNet(nn.Sequential):
    """features -> global average pooling -> linear: logits = W mean_xy(A) + b."""

    def __init__(self, num_classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__(
            OrderedDict(
                features=_features(),
                pool=nn.AdaptiveAvgPool2d(1),
                classifier=nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(WIDTHS[-1], num_classes))),
            )
        )


class ShapesVGGNet(nn.Sequential):
    """features -> 4x4 max pool (a 4x4 grid, as VGG's last pool leaves 7x7 of 224x224) -> flatten ->
    two fully connected layers with ReLU and dropout -> linear."""

    def __init__(self, num_classes: int = len(SHAPE_CLASSES), hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__(
            OrderedDict(
                features=_features(),
                pool=nn.MaxPool2d(4),
                classifier=nn.Sequential(
                    OrderedDict(
                        flatten=nn.Flatten(),
                        fc1=nn.Linear(WIDTHS[-1] * 4 * 4, hidden),
                        relu1=nn.ReLU(),
                        drop1=nn.Dropout(dropout),
                        fc2=nn.Linear(hidden, hidden),
                        relu2=nn.ReLU(),
                        drop2=nn.Dropout(dropout),
                        fc3=nn.Linear(hidden, num_classes),
                    )
                ),
            )
        )


def build(name: str) -> nn.Sequential:
    """A freshly initialised net by its `SHAPES_MODELS` name."""
    nets = {"shapes_gap": ShapesGAPNet, "shapes_vgg": ShapesVGGNet, SHORTCUT_MODEL: ShapesGAPNet}
    nets.update(dict.fromkeys(CUE_MODELS, ShapesGAPNet))
    if name not in nets:
        raise ValueError(f"name must be one of {SHAPES_MODELS}, got {name!r}")
    return nets[name]()


def weights_path(name: str) -> Path:
    return DATA_DIR / f"{name}.pt"


def load_shapes_model(name: str) -> tuple[nn.Sequential, Callable[[Image.Image | Tensor], Tensor], list[str]]:
    """`(model, preprocess, categories)` with the shipped weights, the model in eval mode on the CPU."""
    model = build(name)
    model.load_state_dict(torch.load(weights_path(name), map_location="cpu", weights_only=True))
    return model.eval(), preprocess, list(SHAPE_CLASSES)


def preprocess(image: Image.Image | Tensor) -> Tensor:
    """A PIL image, or a float tensor `[3, H, W]` or `[B, 3, H, W]` in [0, 1], to the nets' input:
    resized bilinearly to 64x64 (antialiased), then normalised as (x - 0.5) / 0.25."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    elif isinstance(image, Tensor):
        if not image.is_floating_point():
            raise TypeError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
        if image.ndim not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"image must be [3, H, W] or [B, 3, H, W], got {list(image.shape)}")
        x = image
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            batch = x if x.ndim == 4 else x[None]
            batch = F.interpolate(batch, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True)
            x = batch if x.ndim == 4 else batch[0]
    else:
        raise TypeError(f"image must be a PIL image or a torch tensor, got {type(image).__name__}")
    return (x - MEAN) / STD
