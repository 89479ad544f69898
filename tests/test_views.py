"""xcam_widgets.views and the Session's view API: plain arrays for any front end, checked against
`explain`, a plain forward pass and hand computations, with no widgets."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from conftest import reference_capture

import xcam_widgets as xw
from xcam_widgets.discovery import LayerInfo
from xcam_widgets.session import Session
from xcam_widgets.views import low_res_map, spread_layers

X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture
def session(vgg_net) -> Session:
    return Session(vgg_net, X)


def by_hand(raw: torch.Tensor) -> np.ndarray:
    """ReLU, then min-max to [0, 1] (all zeros when constant), in numpy."""
    m = np.maximum(raw[0].double().numpy(), 0)
    span = m.max() - m.min()
    return ((m - m.min()) / span if span > 0 else np.zeros_like(m)).astype(np.float32)


def test_low_res_map_is_relu_then_min_max_of_the_first_map():
    raw = torch.tensor([[[-1.0, 0.5], [2.0, 1.0]], [[9.0, 9.0], [9.0, 9.0]]])
    np.testing.assert_allclose(low_res_map(raw), [[0.0, 0.25], [1.0, 0.5]])
    np.testing.assert_array_equal(low_res_map(torch.full((1, 3, 3), 4.0)), np.zeros((3, 3)))
    np.testing.assert_array_equal(low_res_map(-torch.ones(1, 2, 2)), np.zeros((2, 2)))


def test_spread_layers_picks_evenly_at_the_shallowest_depth_with_four():
    def info(name: str, depth: int) -> LayerInfo:
        return LayerInfo(name, "Conv2d", (4, 8, 8), depth, False)

    layers = [info(f"block{b}.conv{c}", 1) for b in range(3) for c in range(3)] + [info("head", 0)]
    # depth 0 offers one layer, depth 1 all ten: ten layers, `count` of them spread evenly
    assert spread_layers(layers, "head", count=4) == ["block0.conv0", "block1.conv0", "block2.conv0", "head"]
    assert spread_layers(layers, "block1.conv2", count=12) == [f"block{b}.conv{c}" for b in range(2) for c in range(3)]
    with pytest.raises(ValueError, match="not a candidate layer"):
        spread_layers(layers, "nope")
    with pytest.raises(ValueError, match="count must be a positive int"):
        spread_layers(layers, "head", count=0)


def test_low_res_map_and_sweep_maps_equal_explain(session, vgg_net):
    np.testing.assert_array_equal(
        session.low_res_map("features.4", "layercam", 2),
        by_hand(xw.explain(vgg_net, X, "features.4", method="layercam", target=2).raw),
    )
    names = session.sweep_layers()
    assert names == [info.name for info in session.layers]  # six layers, fewer than 12: all of them
    maps = session.sweep_maps("xgradcam", 3)
    assert list(maps) == names
    for name, got in maps.items():
        want = by_hand(xw.explain(vgg_net, X, name, method="xgradcam", target=3).raw)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)
    maps = session.sweep_maps("ablationcam", 3, ["features.1", "features"], options={"batch_size": 5})
    want = xw.explain(vgg_net, X, "features", method="ablationcam", target=3, batch_size=5)
    np.testing.assert_allclose(maps["features"], by_hand(want.raw), rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")  # fx tracing a net with a backward hook
def test_a_sweep_takes_one_backward_pass_for_all_its_layers(vgg_net):
    backward = []
    vgg_net.classifier.register_full_backward_hook(lambda *args: backward.append(1))
    s = Session(vgg_net, X)
    s.sweep_maps("gradcam", 1)
    assert len(backward) == 1
    s.sweep_maps("layercam", 1)
    assert len(backward) == 1


def test_conservation_bars_are_the_map_sums_against_the_logit(session, vgg_net):
    bars = session.conservation("features.4", 2)
    assert bars.methods == tuple(m for m in xw.METHODS if xw.REGISTRY[m].scaled and not xw.REGISTRY[m].uses_model)
    assert "scorecam" not in bars.methods and "eigencam" not in bars.methods
    for method, total in zip(bars.methods, bars.sums):
        want = float(xw.explain(vgg_net, X, "features.4", method=method, target=2).raw.sum())
        assert total == pytest.approx(want, rel=1e-6), method
    with torch.no_grad():
        assert bars.score == pytest.approx(float(vgg_net(X[None])[0, 2]), rel=1e-6)
    top1 = int(vgg_net(X[None]).argmax())
    assert session.conservation("features.4").target == top1
    assert session.conservation("features.1", 0, ["hirescam"]).methods == ("hirescam",)


def test_method_and_class_maps_equal_explain(session, vgg_net):
    maps = session.method_maps(
        "features.1", 4, ("gradcam", "eigencam", "scorecam"), options={"scorecam": {"batch_size": 3}}
    )
    assert list(maps) == ["gradcam", "eigencam", "scorecam"]
    for method, got in maps.items():
        want = by_hand(xw.explain(vgg_net, X, "features.1", method=method, target=4).raw)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=method)
    pair = session.class_maps("features.4", "gradcam++", [0, 3, 0])
    assert list(pair) == [0, 3]
    for target, got in pair.items():
        want = by_hand(xw.explain(vgg_net, X, "features.4", method="gradcam++", target=target).raw)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="unknown option 'samples'"):
        session.class_maps("features.4", "scorecam", [0], options={"samples": 2})


def test_channel_activation_is_the_layers_output_channel(session, vgg_net):
    A, _, _ = reference_capture(vgg_net, X[None], "features.4", torch.tensor([0]))
    np.testing.assert_array_equal(session.channel_activation("features.4", 7), A[0, 7].numpy())
    with pytest.raises(ValueError, match=r"channel must be an int in 0..11"):
        session.channel_activation("features.4", 12)
    with pytest.raises(ValueError, match="not a candidate layer"):
        session.channel_activation("classifier.1", 0)


def test_a_new_image_releases_the_kept_forward_pass(session):
    session.explanation("features.4", "gradcam", 1)
    assert session.graph_bytes > 0
    kept = weakref.ref(session._image.graph)
    session.set_image(X.flip(-1))
    gc.collect()
    assert kept() is None and session.graph_bytes == 0
