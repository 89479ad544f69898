"""Exact axiom identities (docs/methods.md) and the diagnostics built on them."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import TinyGAPNet, TinyVGGNet
from test_split_ablation import brute_force_drops

import xcam_widgets as xw


def vgg(bias: bool) -> TinyVGGNet:
    torch.manual_seed(0)
    return TinyVGGNet(bias=bias).eval()


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("layer", ["features.4", "features.2"])  # ReLU, max-pool and linear layers after it
def test_bias_free_head_conserves_exactly_for_xgradcam_not_gradcam(layer):
    net = vgg(bias=False)
    xgrad = xw.diagnose(net, X, layer, method="xgradcam", target=1)
    grad = xw.diagnose(net, X, layer, method="gradcam", target=1)
    torch.testing.assert_close(xgrad.conservation_error, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(xgrad.bias_term, torch.zeros(2))
    assert (grad.conservation_error > 1e-2).all()


@pytest.mark.parametrize("layer", ["features.4", "features.2", "features.1"])
def test_xgradcam_residual_equals_bias_sum(layer):
    net = vgg(bias=True)
    d = xw.diagnose(net, X, layer, method="xgradcam", target=3)
    torch.testing.assert_close(d.score - d.map_sum, d.bias_term, rtol=1e-4, atol=1e-4)
    assert d.bias_term.abs().min() > 1e-3  # the identity is not trivially 0 = 0


def test_bias_identity_with_batchnorm_on_resnet():
    """ResNet's tail after layer3 is ReLU, conv, BatchNorm (eval), residual adds, pooling, linear."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics and shifts
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(1, 3, 32, 32)
    d = xw.diagnose(net, x, "layer3", method="xgradcam", target=4, batch_size=256)
    torch.testing.assert_close(d.score - d.map_sum, d.bias_term, rtol=1e-3, atol=1e-3)


def test_gap_linear_head_closed_form_drops_and_zero_sensitivity_error():
    torch.manual_seed(0)
    net = TinyGAPNet().eval()
    d = xw.diagnose(net, X, "features", method="xgradcam", target=2)
    torch.testing.assert_close(d.true_drop, brute_force_drops(net, X, "features", 2), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d.sensitivity_error, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.sensitivity_r, torch.ones(2), atol=1e-5, rtol=0)


def test_diagnose_fields_match_their_definitions():
    net = vgg(bias=True)
    d = xw.diagnose(net, X, "features.4", method="gradcam", target=0, batch_size=5)
    res = xw.explain(net, X, "features.4", method="gradcam", target=0)
    predicted = res.contributions.sum((2, 3))
    true = brute_force_drops(net, X, "features.4", 0)
    torch.testing.assert_close(d.predicted_drop, predicted)
    torch.testing.assert_close(d.true_drop, true, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d.conservation_error, (res.score - res.raw.sum((1, 2))).abs() / res.score.abs())
    torch.testing.assert_close(
        d.sensitivity_error, (true - predicted).abs().sum(1) / true.abs().sum(1), rtol=1e-4, atol=1e-6
    )
    import numpy as np

    for b in range(2):
        r = np.corrcoef(predicted[b].numpy(), true[b].numpy())[0, 1]
        assert abs(float(d.sensitivity_r[b]) - r) < 1e-4


def test_unscaled_methods_say_so():
    net = vgg(bias=True)
    d = xw.diagnose(net, X, "features.4", method="scorecam", target=0, batch_size=12)
    assert d.conservation_error is None and d.sensitivity_error is None
    assert "no score scale" in d.note
    assert torch.isfinite(d.sensitivity_r).all()


def test_cancelling_channels_by_hand():
    A = torch.zeros(1, 4, 1, 3)
    A[0, 0, 0] = torch.tensor([1.0, -1.0, 0.005])  # |Σ| = 0.005 < 1 % of Σ|·| = 2.005: cancels
    A[0, 1, 0] = torch.tensor([1.0, -0.9, 0.0])  # |Σ| = 0.1, 5 % of 1.9: does not
    A[0, 2, 0] = torch.tensor([2.0, 3.0, 0.0])  # one sign: never
    # channel 3 is all zero: α_k = 0 by definition, nothing ill-conditioned
    assert xw.diagnostics.cancelling_channels(A).tolist() == [1]
    assert xw.diagnostics.cancelling_channels(A, ratio=0.06).tolist() == [2]


def test_xgradcam_note_flags_cancelling_layers_only():
    """Instance normalisation makes every channel's spatial sum exactly 0 (up to rounding): all 6
    channels cancel there; after the ReLU that follows, none can."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.InstanceNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    normalised = xw.diagnose(net, X, "1", method="xgradcam", target=0, batch_size=6)
    assert normalised.note.startswith("6 of 6 channels have activations that nearly cancel")
    assert xw.diagnose(net, X, "2", method="xgradcam", target=0, batch_size=6).note == ""
    assert xw.diagnose(net, X, "1", method="gradcam", target=0, batch_size=6).note == ""  # no division by Σ A
