"""The Explorer without a browser: it shows what `explain` gives for the final state, errors stay
in the widget, display changes recompute nothing, updates are small."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from plotly.serializers import _py_to_js

import xcam_widgets as xw
from conftest import TinyVGGNet
from xcam_widgets.widgets.explorer import Explorer, low_res_map
from xcam_widgets.widgets.figures import quantized

X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


def expected_map(net, state) -> np.ndarray:
    res = xw.explain(net, X, state.layer, method=state.method, target=state.target, **dict(state.options))
    return low_res_map(res.raw)


def test_rapid_interleaved_changes_end_on_the_last_state(net):
    explorer = Explorer(net, X, background=True)
    explorer.wait()
    rng = random.Random(1234)
    layers = [o[1] for o in explorer.layer.options]
    methods = ["gradcam", "xgradcam", "gradcam++", "layercam", "hirescam", "ablationcam", "scorecam"]
    for run in range(100):
        for _ in range(rng.randint(1, 6)):
            control = rng.choice(["layer", "target", "method"])
            if control == "layer":
                explorer.layer.value = rng.choice(layers)
            elif control == "target":
                explorer.target.value = rng.randrange(5)
            else:
                explorer.method.value = rng.choice(methods)
        explorer.wait()
        assert explorer.status.value == "", explorer.status.value
        assert explorer.shown_state == explorer.state, run
        np.testing.assert_allclose(explorer.shown_map, expected_map(net, explorer.state), rtol=1e-5, atol=1e-6)


def test_errors_show_in_the_widget_and_the_view_stays(net):
    import torchvision.transforms.functional as TF

    bundle = xw.ModelBundle("tiny", net, lambda im: TF.to_tensor(im.resize((16, 16))), list("abcde"), 16)
    explorer = Explorer(bundle, X, background=False)
    shown = explorer.shown_map.copy()
    explorer._on_upload({"new": ({"name": "a.png", "size": 10, "content": memoryview(b"not an image")},)})
    assert "ValueError" in explorer.status.value and "not an image" in explorer.status.value
    explorer._on_upload({"new": ({"name": "big.png", "size": xw.images.MAX_BYTES + 1, "content": memoryview(b"")},)})
    assert "the limit is" in explorer.status.value
    np.testing.assert_array_equal(explorer.shown_map, shown)
    explorer.method.value = "cam"  # not valid on this VGG-style layer
    assert "CAM needs layer" in explorer.status.value
    np.testing.assert_array_equal(explorer.shown_map, shown)
    explorer.method.value = "gradcam"  # still usable
    assert explorer.status.value == ""
    np.testing.assert_allclose(explorer.shown_map, expected_map(net, explorer.state), rtol=1e-5, atol=1e-6)
    plain = Explorer(net, X, background=False)
    plain._on_upload({"new": ({"name": "a.png", "size": 10, "content": memoryview(b"x")},)})
    assert "no preprocessing" in plain.status.value


def test_display_changes_recompute_nothing(net):
    explorer = Explorer(net, X, background=False)
    stats = dict(explorer.session.stats)
    z = explorer.overlay.data[-1].z
    explorer.opacity.value = 0.8
    explorer.colormap.value = "Viridis"
    explorer.threshold.value = 0.5
    assert dict(explorer.session.stats) == stats
    np.testing.assert_array_equal(explorer.overlay.data[-1].z, z)
    assert explorer.overlay.data[-1].colorscale[0][1] == "rgba(0,0,0,0)"


def test_method_options_appear_only_where_they_apply(net):
    explorer = Explorer(net, X, background=False)
    shown = lambda: {n for n, w in explorer.option_widgets.items() if w.layout.display != "none"}  # noqa: E731
    explorer.method.value = "xgradcam"
    assert shown() == set()
    explorer.method.value = "sscam"
    assert shown() == {"batch_size", "samples", "noise"}
    explorer.method.value = "ablationcam"
    assert shown() == {"batch_size"}


def test_heatmap_update_is_under_20_kb_for_every_layer_of_a_224_image():
    torch.manual_seed(0)
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    session = xw.Session(model, torch.randn(3, 224, 224))
    biggest = max(session.layers, key=lambda info: info.shape[1] * info.shape[2])
    assert biggest.shape[1:] == (112, 112)
    z = quantized(np.random.default_rng(0).random(biggest.shape[1:]))
    payload = json.dumps(_py_to_js({"z": z, "x0": 1.0, "dx": 4.0, "y0": 1.0, "dy": 4.0}, None))
    assert len(payload) < 20_000, len(payload)
