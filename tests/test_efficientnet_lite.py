"""EfficientNet-Lite0: strict loading of the shipped weights, correct predictions, fx-traceable, exact GAP head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import ResNet50_Weights

from xcam_widgets.images import SAMPLE_IMAGES, sample_image
from xcam_widgets.models.efficientnet_lite import (
    EfficientNetLite0,
    efficientnet_lite0,
    remap_reference_keys,
    tf_same_pad,
    weights_path,
)
from xcam_widgets.models.zoo import load_model

CATEGORIES = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
EXPECTED = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile", "space shuttle"},
}


@pytest.fixture(scope="module")
def bundle():
    return load_model("efficientnet_lite0", device="cpu")


def test_checkpoint_keys_remap_one_to_one():
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    remapped = remap_reference_keys(state)
    assert len(remapped) == len(state) == 296
    assert set(remapped) == set(EfficientNetLite0().state_dict())
    assert remapped["features.stage4.0.depthwise.conv.weight"] is state["_blocks.5._depthwise_conv.weight"]


def test_unexpected_checkpoint_key_is_an_error():
    with pytest.raises(ValueError, match=r"unexpected key '_blocks\.99\._bn1\.weight'"):
        remap_reference_keys({"_blocks.99._bn1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected key 'classifier\.weight'"):
        remap_reference_keys({"classifier.weight": torch.zeros(1)})


def test_architecture():
    model = efficientnet_lite0(pretrained=False)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    names = dict(model.named_modules())
    for name in ["features.stem.conv", "features.stage6.3.depthwise.conv", "features.head", "avgpool", "fc"]:
        assert name in names
    assert [name for name, _ in model.named_children()] == ["features", "avgpool", "flatten", "dropout", "fc"]


def test_pretrained_top1_on_sample_photos(bundle):
    model, preprocess, categories = bundle
    x = torch.stack([preprocess(sample_image(name)) for name in EXPECTED])
    with torch.no_grad():
        probs = model(x).softmax(1)
    for name, p in zip(EXPECTED, probs, strict=False):
        assert categories[int(p.argmax())] in EXPECTED[name], name
    cat_mass = probs[0, [CATEGORIES.index(c) for c in EXPECTED["chelsea"]]].sum()
    assert cat_mass > 0.8  # the three cat classes share the mass
    assert probs[1, CATEGORIES.index("espresso")] > 0.9


def test_logits_are_linear_in_the_pooled_last_feature_map(bundle):
    """The CAM identity: logits = fc(mean over h, w of features(x)), with no layer in between."""
    model = bundle.model
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (2, 1280, 3, 4)
        assert torch.allclose(model(x), model.fc(feats.mean((2, 3))), atol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (65, 97), (9, 8)])
def test_fx_symbolic_trace_matches_eager(bundle, size):
    traced = torch.fx.symbolic_trace(bundle.model)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert torch.equal(traced(x), bundle.model(x))
    assert any(node.target is tf_same_pad for node in traced.graph.nodes)


@pytest.mark.parametrize("n, k, before, after", [(8, 3, 0, 1), (9, 3, 1, 1), (8, 5, 1, 2), (9, 5, 2, 2)])
def test_tf_same_pad(n, k, before, after):
    """Stride 2: total padding (ceil(n / 2) - 1) * 2 + k - n, the odd pixel at the end; output ceil(n / 2)."""
    x = torch.randn(1, 1, n, n)
    padded = tf_same_pad(x, k, 2)
    assert torch.equal(padded, F.pad(x, (before, after, before, after)))
    assert F.conv2d(padded, torch.ones(1, 1, k, k), stride=2).shape[-1] == -(-n // 2)


def test_stem_batchnorm_statistics_favour_tf_scaling(bundle):
    """The preprocessing choice, as a regression test: after (255 x - 127) / 128 the stem conv output's
    statistics sit closer to the stem BatchNorm's running statistics than after ImageNet mean / std.
    The mean is closer on every photo; the variance only over the pooled photos (it follows contrast)."""
    model = bundle.model
    bn = model.features.stem.bn
    live = bn.running_var > 1e-6
    x = torch.stack([bundle.preprocess(sample_image(name)) for name in SAMPLE_IMAGES])  # (255 x - 127) / 128
    pixels = x * (128 / 255) + 127 / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    imagenet = (pixels - mean[:, None, None]) / std[:, None, None]

    def mismatch(inputs: torch.Tensor) -> tuple[float, float]:
        """Mean over live channels of |mean - running mean| / running sd and of |log(var / running var)|."""
        with torch.no_grad():
            a = model.features.stem.conv(model.features.stem.pad(inputs))
        z = (a.mean((0, 2, 3)) - bn.running_mean).abs() / bn.running_var.sqrt()
        log_ratio = (a.var((0, 2, 3)) / bn.running_var).log().abs()
        return float(z[live].mean()), float(log_ratio[live].mean())

    for i in range(len(SAMPLE_IMAGES)):
        assert mismatch(x[i : i + 1])[0] < 0.7 * mismatch(imagenet[i : i + 1])[0], SAMPLE_IMAGES[i]
    assert sum(mismatch(x)) < 0.6 * sum(mismatch(imagenet))
