"""xcam_widgets.widgets.explorer without a browser: it shows what `explain` gives for the final state,
its option controls come from the method signatures, errors stay in the widget, display changes
recompute nothing, updates are small, a new image never shows an old map, and it stops cleanly."""

from __future__ import annotations

import html
import io
import json
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import TinyGAPNet, TinyVGGNet
from PIL import Image
from plotly.serializers import _py_to_js
from torch import nn

import xcam_widgets as xw
from xcam_widgets.views import low_res_map
from xcam_widgets.widgets.controls import layer_label
from xcam_widgets.widgets.explorer import Explorer
from xcam_widgets.widgets.figures import quantized

X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


def expected_map(net, state, image=X) -> np.ndarray:
    res = xw.explain(net, image, state.layer, method=state.method, target=state.target, **dict(state.options))
    return low_res_map(res.raw)


def png_bytes(size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_rapid_interleaved_changes_end_on_the_last_state(net):
    explorer = Explorer(net, X, background=True)
    explorer.wait()
    rng = random.Random(1234)
    layers = [o[1] for o in explorer.layer.options]
    methods = ["gradcam", "xgradcam", "gradcam++", "layercam", "hirescam", "ablationcam", "scorecam"]
    for run in range(60):
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
        np.testing.assert_array_equal(explorer.shown_map, expected_map(net, explorer.state))
    explorer.close()


def test_untouched_controls_show_what_explain_gives_for_every_method():
    """The option controls start at the method's own defaults: with none touched, every method's
    map is `xw.explain(...)`'s with no options, bit for bit (GAP head, so CAM applies too)."""
    torch.manual_seed(0)
    gap = TinyGAPNet().eval()
    explorer = Explorer(gap, X, background=False)
    for method in xw.METHODS:
        explorer.method.value = method
        assert explorer.status.value == "", (method, explorer.status.value)
        state = explorer.state
        want = xw.explain(gap, X, state.layer, method=method, target=state.target)
        np.testing.assert_array_equal(explorer.shown_map, low_res_map(want.raw), err_msg=method)
        assert dict(state.options) == dict(xw.REGISTRY[method].options), method


def test_option_controls_come_from_the_method_signatures(net):
    explorer = Explorer(net, X, background=False)
    for method, spec in xw.REGISTRY.items():
        explorer.method.value = method
        shown = {w.description: w for w in explorer.options_box.children}
        assert set(shown) == {name.replace("_", " ") for name in spec.options}, method
    explorer.method.value = "sscam"
    shown = {w.description: w for w in explorer.options_box.children}
    assert type(shown["batch size"]).__name__ == "IntText" and shown["batch size"].value == 32
    assert type(shown["noise"]).__name__ == "FloatText" and shown["noise"].value == 0.2
    assert type(shown["seed"]).__name__ == "IntText" and shown["seed"].value == 0
    explorer.method.value = "smoothgradcam++"  # same option names, other defaults: separate controls
    assert {w.description: w.value for w in explorer.options_box.children}["noise"] == 0.15


def test_option_values_reach_the_method_and_bad_ones_are_clear_errors(net):
    explorer = Explorer(net, X, background=False)
    explorer.method.value = "sscam"
    controls = explorer.option_controls["sscam"]
    controls["seed"].widget.value = 3
    controls["samples"].widget.value = 2
    assert explorer.status.value == ""
    state = explorer.state
    assert dict(state.options)["seed"] == 3 and dict(state.options)["samples"] == 2
    np.testing.assert_array_equal(explorer.shown_map, expected_map(net, state))
    if "top_channels" in controls:  # an Optional[int] option: a text box that reads "none" as None
        assert controls["top_channels"].widget.value == "none"
        controls["top_channels"].widget.value = "4"
        assert dict(explorer.state.options)["top_channels"] == 4
        np.testing.assert_array_equal(explorer.shown_map, expected_map(net, explorer.state))
        shown = explorer.shown_map.copy()
        controls["top_channels"].widget.value = "many"
        assert "top_channels must be a whole number or &#x27;none&#x27;" in explorer.status.value
        np.testing.assert_array_equal(explorer.shown_map, shown)
        controls["top_channels"].widget.value = "none"
    controls["samples"].widget.value = 0
    assert "samples" in explorer.status.value and "positive" in explorer.status.value


def test_a_class_switch_after_a_layer_switch_shows_exactly_explains_map(net):
    explorer = Explorer(net, X, background=False)
    for layer, target, method in (
        ("features.1", 3, "xgradcam"),
        ("features.1", 0, "xgradcam"),
        ("features.4", 0, "gradcam++"),
        ("features.4", 2, "gradcam++"),
        ("features.1", 2, "layercam"),
    ):
        explorer.layer.value = layer
        explorer.method.value = method
        explorer.target.value = target
        assert explorer.shown_state == explorer.state
        np.testing.assert_array_equal(explorer.shown_map, expected_map(net, explorer.state))


def test_errors_show_in_the_widget_and_the_view_stays(net):
    bundle = xw.ModelBundle("tiny", net, lambda im: TF.to_tensor(im.resize((16, 16))), list("abcde"), 16)
    explorer = Explorer(bundle, X, background=False)
    shown = explorer.shown_map.copy()
    explorer._on_upload({"new": ({"name": "a.png", "size": 10, "content": memoryview(b"not an image")},)})
    assert "ValueError" in explorer.status.value and "not an image" in explorer.status.value
    too_big = memoryview(bytes(xw.images.MAX_BYTES + 1))
    explorer._on_upload({"new": ({"name": "big.png", "size": 10, "content": too_big},)})
    assert "the limit is" in explorer.status.value  # the content's own length counts, not the claimed size
    explorer._on_upload({"new": ({"name": "a.png", "type": "image/png"},)})
    assert "the upload has no file content" in explorer.status.value
    np.testing.assert_array_equal(explorer.shown_map, shown)
    explorer.method.value = "cam"  # not valid on this VGG-style layer
    assert "CAM needs layer" in explorer.status.value
    np.testing.assert_array_equal(explorer.shown_map, shown)
    explorer.method.value = "gradcam"  # still usable
    assert explorer.status.value == ""
    np.testing.assert_array_equal(explorer.shown_map, expected_map(net, explorer.state))
    plain = Explorer(net, X, background=False)
    plain._on_upload({"new": ({"name": "a.png", "size": 10, "content": memoryview(b"x")},)})
    assert "no preprocessing" in plain.status.value


def test_an_upload_without_a_size_is_loaded(net):
    bundle = xw.ModelBundle("tiny", net, lambda im: TF.to_tensor(im.resize((16, 16))), list("abcde"), 16)
    explorer = Explorer(bundle, X, background=False)
    explorer._on_upload({"new": ({"name": "a.png", "content": memoryview(png_bytes())},)})
    assert "Error" not in explorer.status.value and explorer.session.generation == 2
    assert explorer.status.value == f"<i>{html.escape(explorer.session.display_note)}</i>"  # a lambda's frame
    image = TF.to_tensor(Image.open(io.BytesIO(png_bytes())).convert("RGB").resize((16, 16)))
    np.testing.assert_array_equal(explorer.shown_map, expected_map(net, explorer.state, image))


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


def test_a_page_that_connects_late_gets_the_current_figure(net):
    """What a reloaded page (or Voilà, or Binder) asks the kernel for is what is shown now."""
    explorer = Explorer(net, X, background=False)
    explorer.method.value = "layercam"
    explorer.target.value = 3
    explorer.layer.value = "features.1"
    state = explorer.overlay.get_state()  # what ipywidgets sends to a page that connects
    heat = state["_widget_data"][-1]
    assert heat["name"] == "map"
    assert heat["z"] == quantized(expected_map(net, explorer.state)).tolist()
    assert "LayerCAM · features.1 · class 3" in state["_widget_layout"]["title"]["text"]


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


def test_layer_labels_mark_where_xgradcam_equals_gradcam():
    torch.manual_seed(0)
    labels = [layer_label(info) for info in xw.candidate_layers(TinyGAPNet().eval(), (3, 16, 16))]
    assert labels[3] == "  features.3  ReLU 12×16×16  [XGrad-CAM = Grad-CAM]"
    assert labels[0] == "  features.0  Conv2d 8×16×16"


def test_an_image_change_during_a_class_change_never_shows_the_old_images_map(net):
    """The upload-during-class-change race, made deterministic: the view worker is held inside
    Score-CAM's last progress report for the old image while a new image arrives."""
    x2 = X * 4  # another top-1 class than X's
    new_top1 = int(net(x2[None]).argmax())
    explorer = Explorer(net, X, background=True)
    explorer.method.value = "scorecam"  # 12 channels, batch 32: one progress report, after the masked passes
    explorer.wait()
    assert explorer.state.target != new_top1
    entered, proceed = threading.Event(), threading.Event()
    show_progress = explorer.worker._on_progress

    def held(done, total):
        if not proceed.is_set():
            entered.set()
            assert proceed.wait(60)
        show_progress(done, total)

    explorer.worker._on_progress = held
    old_x = explorer.session.x
    explorer.target.value = new_top1  # the class change: Score-CAM for the old image starts
    assert entered.wait(60)
    upload = threading.Thread(target=explorer._set_image, args=(x2,))
    upload.start()
    deadline = time.monotonic() + 60
    while explorer.session.x is old_x and time.monotonic() < deadline:
        time.sleep(0.01)
    proceed.set()  # the old image's Score-CAM finishes now, after the new image arrived
    upload.join(60)
    explorer.wait()
    assert explorer.state.target == new_top1 and explorer.shown_state == explorer.state
    want = expected_map(net, explorer.state, x2)
    np.testing.assert_array_equal(explorer.shown_map, want)
    np.testing.assert_array_equal(explorer.session.low_res_map(explorer.state.layer, "scorecam", new_top1), want)
    explorer.close()


def test_diagnostics_and_view_workers_at_once_keep_the_model_state():
    torch.manual_seed(0)
    bn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).train()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    explorer = Explorer(bn, X, background=True)
    explorer.method.value = "ablationcam"
    for target in range(5):
        explorer.axioms.diagnose_button.click()
        explorer.target.value = target
        explorer.method.value = ("gradcam", "ablationcam")[target % 2]
    explorer.wait()
    assert explorer.status.value == "", explorer.status.value
    assert all(m.training for m in bn.modules())
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in before.items())
    assert xw.hook_counts(bn) == {k: 0 for k in xw.hook_counts(bn)}
    np.testing.assert_array_equal(explorer.shown_map, expected_map(bn, explorer.state))
    assert explorer.axioms.diagnosis is not None and explorer.axioms.diagnosis.method in ("gradcam", "ablationcam")
    explorer.close()


def test_close_stops_the_computation(net):
    explorer = Explorer(net, X, background=True)
    explorer.method.value = "scorecam"
    explorer.close()
    assert explorer.worker._thread is None and explorer.axioms.worker._thread is None
    explorer.method.value = "gradcam"  # a closed Explorer computes nothing more
    assert explorer.worker._thread is None
    assert explorer.overlay.comm is None and explorer.comm is None


def test_a_process_that_exits_while_the_explorer_computes_exits_cleanly():
    """The issue's reproduction: before, the interpreter aborted (exit 134, "terminate called
    without an active exception") because a worker thread was inside torch at exit."""
    code = "import xcam_widgets as xw; ex = xw.Explorer(); ex.method.value = 'scorecam'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr
