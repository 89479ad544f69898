"""Bad arguments raise ValueError/TypeError whose message names the problem."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import TinyVGGNet
from torch import nn

import xcam_widgets as xw


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


X = torch.randn(2, 3, 16, 16)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"method": "gradcamm"}, ValueError, r"unknown method 'gradcamm'; available methods: cam, gradcam"),
        ({"method": 3}, TypeError, "method must be a string"),
        (
            {"layer": "features.44"},
            ValueError,
            r"layer 'features.44' is not a submodule.*Close matches: \['features.4'",
        ),
        ({"layer": 12}, TypeError, "layer must be a dotted module name"),
        ({"layer": nn.Conv2d(3, 3, 1)}, ValueError, "is not a submodule"),
        ({"layer": []}, ValueError, "layer list is empty"),
        ({"layer": ["features.4", "features.4"]}, ValueError, "names a layer twice"),
        ({"layer": "classifier.1"}, ValueError, r"outputs shape \(2, 32\), which has no \[K, h, w\] spatial grid"),
        ({"target": 5}, ValueError, r"target class 5 is out of range: the model has 5 classes"),
        ({"target": -1}, ValueError, "target class -1 is out of range"),
        ({"target": 1.0}, TypeError, "target must be None, an int"),
        ({"target": True}, TypeError, "target must be None, an int"),
        ({"target": [1, 2, 3]}, ValueError, "target has 3 classes for a batch of 2 images"),
        ({"target": [1, 2.5]}, TypeError, "integer class indices"),
        ({"target": torch.tensor([0.5, 1.0])}, TypeError, "integer class indices"),
        ({"target": lambda out: out}, TypeError, "must return a 1-D tensor"),
        ({"target": lambda out: out[:, 0] * float("nan")}, ValueError, "the target score of image 0 is nan"),
        ({"batch_size": 4}, ValueError, r"unknown option 'batch_size' for method 'xgradcam'; its options: none"),
        ({"method": "ablationcam", "batch_size": 0}, ValueError, "batch_size must be a positive int"),
        (
            {"method": "ablationcam", "bacth_size": 8},
            ValueError,
            r"unknown option 'bacth_size'.*its options: batch_size",
        ),
        ({"method": "sscam", "noise": -1.0}, ValueError, "noise must be a finite number >= 0"),
        ({"method": "sscam", "noise": float("inf")}, ValueError, "noise must be a finite number >= 0, got inf"),
        ({"method": "smoothgradcam++", "noise": float("nan")}, ValueError, "noise must be a finite number >= 0"),
        (
            {"method": "smoothgradcam++", "seed": "a"},
            ValueError,
            r"seed must be an int >= 0 \(it seeds the noise\), got 'a'",
        ),
        ({"method": "sscam", "seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"method": "sscam", "seed": 1.0}, ValueError, "seed must be an int >= 0"),
        ({"method": "iscam", "samples": True}, ValueError, "samples must be a positive int, got True"),
        ({"method": "scorecam", "top_channels": 0}, ValueError, "top_channels must be a positive int, got 0"),
        ({"method": "scorecam", "top_channels": 2.5}, ValueError, "top_channels must be a positive int"),
        ({"method": "cam"}, ValueError, "CAM needs layer 'features.4' to feed global average pooling"),
    ],
)
def test_bad_arguments(net, kwargs, error, match):
    call = {"layer": "features.4", **kwargs}
    with pytest.raises(error, match=match):
        xw.explain(net, X, **call)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.randn(3, 16), ValueError, r"shape \[B, C, H, W\] or \[C, H, W\]"),
        (torch.randn(1, 1, 3, 16, 16), ValueError, r"shape \[B, C, H, W\]"),
        (torch.randn(1, 4, 16, 16), ValueError, "4 channels but the model's first convolution expects 3"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, "floating-point tensor"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN or Inf"),
        (torch.full((1, 3, 16, 16), float("inf")), ValueError, "NaN or Inf"),
        (torch.zeros(0, 3, 16, 16), ValueError, "x is empty"),
        ([[1.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_inputs(net, x, error, match):
    with pytest.raises(error, match=match):
        xw.explain(net, x, "features.4")


@pytest.mark.parametrize("make", [torch.jit.trace, torch.jit.script], ids=["traced", "scripted"])
def test_torchscript_models_are_refused_with_the_reason(net, make):
    compiled = make(net, X) if make is torch.jit.trace else make(net)
    with pytest.raises(
        TypeError, match="TorchScript module .* not supported: its compiled forward calls no Python forward hooks"
    ):
        xw.explain(compiled, X, "features.4")


def test_a_torchscript_layer_inside_a_python_model_is_refused(net):
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.jit.script(net)

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(TypeError, match="layer 'inner.features.4' is a TorchScript module"):
        xw.explain(Wrapper(), X, "inner.features.4")


def test_single_image_and_float64_input_are_accepted(net):
    single = xw.explain(net, X[0], "features.4", target=1)
    batched = xw.explain(net, X[:1].double(), "features.4", target=1)
    assert single.raw.shape == (1, 8, 8) and single.map.shape == (1, 16, 16)
    torch.testing.assert_close(single.raw, batched.raw)


def test_tuple_dict_and_logits_outputs():
    class Wrapped(nn.Module):
        def __init__(self, kind):
            super().__init__()
            torch.manual_seed(0)
            self.inner, self.kind = TinyVGGNet().eval(), kind

        def forward(self, x):
            out = self.inner(x)
            if self.kind == "tuple":
                return out, out.sum()
            if self.kind == "dict":
                return {"logits": out, "aux": out * 2}
            return type("Output", (), {"logits": out})()

    plain = xw.explain(Wrapped("tuple").inner, X, "features.4", target=2)
    for kind in ("tuple", "dict", "object"):
        res = xw.explain(Wrapped(kind), X, "inner.features.4", target=2)
        torch.testing.assert_close(res.raw, plain.raw, msg=kind)
    custom = xw.explain(Wrapped("dict"), X, "inner.features.4", target=lambda out: out["aux"][:, 2])
    torch.testing.assert_close(custom.raw, 2 * plain.raw)


def test_unknown_output_type_needs_a_callable():
    class Strange(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return {"embedding": self.conv(x).mean((2, 3))}

    with pytest.raises(TypeError, match=r"dict with keys \['embedding'\]; pass target=callable"):
        xw.explain(Strange(), X, "conv")
    res = xw.explain(Strange(), X, "conv", method="gradcam", target=lambda out: out["embedding"][:, 1])
    assert res.score.shape == (2,)


def test_layer_list_gives_one_result_per_layer_from_one_pass(net):
    calls = []
    handle = net.register_forward_pre_hook(lambda m, i: calls.append(1))
    results = xw.explain(net, X, ["features.1", "features.4"], method="gradcam", target=0)
    handle.remove()
    assert len(calls) == 1
    assert [r.layer for r in results] == ["features.1", "features.4"]
    single = xw.explain(net, X, "features.1", method="gradcam", target=0)
    torch.testing.assert_close(results[0].raw, single.raw)
    fused = xw.fuse_maps([r.map for r in results])
    torch.testing.assert_close(fused, xw.maps.scale_unit(torch.maximum(results[0].map, results[1].map)))


def test_vit_through_token_grid():
    """vit_b_16 at 32 px: 4 patch tokens on a 2×2 grid plus the class token."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_11.ln_1"
    store = []
    h = vit.get_submodule(layer).register_forward_hook(lambda m, i, o: store.append(o))
    out = vit(x)
    h.remove()
    (grad,) = torch.autograd.grad(out[0, 4], store[0])
    A = store[0][0, 1:].detach().reshape(2, 2, 768).permute(2, 0, 1)
    G = grad[0, 1:].reshape(2, 2, 768).permute(2, 0, 1)
    expected = (G.mean((1, 2))[:, None, None] * A).sum(0)
    res = xw.explain(vit, x, layer, method="gradcam", target=4, reshape=xw.token_grid())
    torch.testing.assert_close(res.raw[0], expected, rtol=1e-4, atol=1e-6)
    inferred = xw.explain(vit, x, layer, method="gradcam", target=4)  # the grid read off the patch embedding
    torch.testing.assert_close(inferred.raw[0], expected, rtol=1e-4, atol=1e-6)
