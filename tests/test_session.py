"""xcam_widgets.session: the cache recomputes exactly what a change invalidates, agrees with `explain`
bit for bit, keeps the model's state under concurrent use, and never mixes two images."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import TinyVGGNet
from torch import nn

import xcam_widgets as xw
from xcam_widgets.session import Session
from xcam_widgets.views import low_res_map


@pytest.fixture
def counted():
    """A net that counts its forward passes, and the backward passes that reach `features.3`
    (through it only when a layer at or before its input is asked for) and the classifier (every one)."""
    torch.manual_seed(0)
    net = TinyVGGNet().eval()
    calls = {"forward": 0, "backward": 0, "features.3": 0}

    def count(key):
        def hook(*args):
            calls[key] += 1

        return hook

    net.register_forward_pre_hook(count("forward"))
    net.classifier.register_full_backward_hook(count("backward"))
    net.features[3].register_full_backward_hook(count("features.3"))
    return net, calls


X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))
X2 = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(6))


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")  # fx tracing a net with a backward hook
def test_a_class_or_layer_costs_one_backward_pass_to_the_layers_shown_and_no_forward(counted):
    net, calls = counted
    s = Session(net, X)
    assert s.layers  # discovery: one forward of its own
    calls.update(forward=0, backward=0)
    s.explanation("features.4", "xgradcam", 2)
    assert calls == {"forward": 1, "backward": 1, "features.3": 0}  # the image's one forward pass
    s.explanation("features.4", "gradcam", 2)
    s.explanation("features.4", "layercam", 2)
    assert calls == {"forward": 1, "backward": 1, "features.3": 0}  # other gradient methods: arithmetic only
    s.explanation("features.4", "xgradcam", 3)  # another class: a backward pass that stops at the layer
    assert calls == {"forward": 1, "backward": 2, "features.3": 0}
    s.explanation("features.1", "xgradcam", 3)  # a layer further back: one backward pass through features.3
    assert calls == {"forward": 1, "backward": 3, "features.3": 1}
    s.explanation("features.4", "xgradcam", 2)  # back: cached
    s.explanation("features.1", "xgradcam", 3)
    assert calls == {"forward": 1, "backward": 3, "features.3": 1}
    s.set_image(X2)
    s.explanation("features.4", "xgradcam", 2)
    assert calls == {"forward": 2, "backward": 4, "features.3": 1}
    top1 = s.predictions(1)[0].index  # the kept pass gives the predictions too
    s.explanation("features.4", "gradcam", top1)
    assert calls["forward"] == 2
    assert s.graph_bytes > 0
    assert xw.hook_counts(net)["_forward_hooks"] == 0  # the recorders are gone; the graph stays


def test_session_results_equal_explain_bit_for_bit(vgg_net):
    s = Session(vgg_net, X)
    for layer in ("features.1", "features.4"):
        for target in (1, 4, 1):  # a class switch after a layer switch, and back
            for method in xw.METHODS:
                if method == "cam":
                    continue  # no GAP→linear head here (tested in test_explorer)
                got = s.explanation(layer, method, target)
                want = xw.explain(vgg_net, X, layer, method=method, target=target)
                assert torch.equal(got.raw, want.raw), (layer, method, target)
                assert torch.equal(got.map, want.map), (layer, method, target)
    d = s.diagnosis("features.4", "xgradcam", 1, batch_size=5)
    want = xw.diagnose(vgg_net, X, "features.4", method="xgradcam", target=1, batch_size=5)
    torch.testing.assert_close(d.true_drop, want.true_drop)
    assert torch.equal(
        s.capture(1, ["features.4"]).gradients["features.4"],
        xw.capture(vgg_net, X[None], "features.4", 1).gradients["features.4"],
    )


def test_bad_image_keeps_the_previous_one(vgg_net):
    s = Session(vgg_net, X)
    before, generation = s.x.clone(), s.generation
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.set_image(torch.full((3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="one image; got a batch of 2"):
        s.set_image(torch.zeros(2, 3, 16, 16))
    with pytest.raises(TypeError, match="no preprocessing"):
        s.set_image(b"\x89PNG")
    assert torch.equal(s.x, before) and s.generation == generation
    with pytest.raises(ValueError, match="not a candidate layer"):
        s.explanation("classifier.1", "gradcam", 1)
    with pytest.raises(ValueError, match="out of range"):
        s.explanation("features.4", "gradcam", 9)


def test_progress_callback_can_cancel_a_slow_method(vgg_net):
    s = Session(vgg_net, X)
    seen = []

    def stop_after_first(done, total):
        seen.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.explanation("features.4", "scorecam", 1, progress=stop_after_first, batch_size=4)
    assert seen == [(4, 12)]
    full = s.explanation("features.4", "scorecam", 1, batch_size=4)  # nothing half-done was cached
    assert torch.equal(full.raw, xw.explain(vgg_net, X, "features.4", method="scorecam", target=1).raw)


def test_an_image_change_during_a_computation_never_reaches_the_new_image(vgg_net):
    """The upload-during-class-change race, made deterministic: the image changes while Score-CAM
    runs for the old one (inside its progress callback). The old result must not be returned or
    cached for the new image, and nothing computed from then on may mix the two."""
    s = Session(vgg_net, X)
    old_generation = s.generation

    def upload_now(done, total):
        if s.generation == old_generation:
            s.set_image(X2)

    old = s.explanation("features.4", "scorecam", 1, progress=upload_now, batch_size=4)
    assert s.generation == old_generation + 1
    assert torch.equal(old.raw, xw.explain(vgg_net, X, "features.4", method="scorecam", target=1).raw)
    for method in ("scorecam", "xgradcam"):
        new = (
            s.explanation("features.4", method, 1, batch_size=4)
            if method == "scorecam"
            else s.explanation("features.4", method, 1)
        )
        assert torch.equal(new.raw, xw.explain(vgg_net, X2, "features.4", method=method, target=1).raw), method


def bn_net() -> nn.Module:
    """A train-mode net with BatchNorm: a forward pass in train mode would change its statistics."""
    torch.manual_seed(0)
    return nn.Sequential(
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


def test_two_threads_on_one_session_keep_the_model_state_and_agree_with_explain():
    """What the Explorer's diagnostics worker and view worker do at once: one thread diagnoses, the
    other switches classes and methods. Flags, statistics and hooks stay; results equal `explain`'s."""
    net = bn_net()
    statistics = {k: v.clone() for k, v in net.state_dict().items()}
    s = Session(net, X)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def diagnose():
        start.wait()
        try:
            for method in ("xgradcam", "ablationcam", "gradcam"):
                s.diagnosis("3", method, 1, batch_size=2)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def view():
        start.wait()
        try:
            for i in range(30):
                layer, method = ("3", "0", "4")[i % 3], ("gradcam", "layercam", "scorecam")[i % 3]
                s.explanation(layer, method, i % 5, **({"batch_size": 4} if method == "scorecam" else {}))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=diagnose), threading.Thread(target=view)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert all(m.training for m in net.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in statistics.items())
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}
    for i in range(3):
        layer, method = ("3", "0", "4")[i], ("gradcam", "layercam", "scorecam")[i]
        options = {"batch_size": 4} if method == "scorecam" else {}
        want = xw.explain(net, X, layer, method=method, target=i, **options)
        assert torch.equal(s.explanation(layer, method, i, **options).raw, want.raw)


def test_weights_changed_in_place_recompute_instead_of_failing_or_going_stale(vgg_net):
    """The kept forward pass belongs to the weights it ran with: after an in-place edit (training,
    `load_state_dict`) the Session starts over for the same image; autograd would otherwise refuse
    the backward pass, and cached maps would show the old weights."""
    torch.manual_seed(0)
    session = Session(vgg_net, torch.randn(3, 16, 16))
    before = session.low_res_map("features.3", "gradcam", 1)
    generation = session.generation
    with torch.no_grad():
        for param in vgg_net.parameters():
            param.mul_(1.5)
    for target in (1, 2):  # a cached class and a new one
        expected = low_res_map(xw.explain(vgg_net, session.x, "features.3", method="gradcam", target=target).raw)
        np.testing.assert_array_equal(session.low_res_map("features.3", "gradcam", target), expected)
    assert session.generation == generation  # the same image
    assert not np.array_equal(before, session.low_res_map("features.3", "gradcam", 1))
