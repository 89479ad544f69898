"""The session cache recomputes exactly what a change invalidates, and agrees with `explain`."""
from __future__ import annotations

import pytest
import torch

import xcam_widgets as xw
from conftest import TinyVGGNet
from xcam_widgets.session import Session


@pytest.fixture
def counted():
    torch.manual_seed(0)
    net = TinyVGGNet().eval()
    calls = []
    net.register_forward_pre_hook(lambda m, i: calls.append(1))
    return net, calls


X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))


def test_cache_invalidation_counts_forward_passes(counted):
    net, calls = counted
    s = Session(net, X)
    s.layers  # discovery: one forward of its own
    calls.clear()
    s.explanation("features.4", "xgradcam", 2)
    assert len(calls) == 1  # one capture: every candidate layer, one forward + one backward
    s.explanation("features.4", "gradcam", 2)
    s.explanation("features.4", "layercam", 2)
    s.explanation("features.1", "xgradcam", 2)  # another layer: same capture
    assert len(calls) == 1
    s.explanation("features.4", "xgradcam", 3)  # another class: one more pass
    assert len(calls) == 2
    s.explanation("features.4", "xgradcam", 2)  # back: cached
    assert len(calls) == 2 and s.stats["capture"] == 2
    s.set_image(X.flip(-1))
    s.explanation("features.4", "xgradcam", 2)
    assert len(calls) == 3
    top1 = s.predictions(1)[0].index  # the predictions' pass doubles as the top-1 class's capture
    s.explanation("features.4", "gradcam", top1)
    assert len(calls) == 4


def test_session_results_equal_explain(counted):
    net, _ = counted
    s = Session(net, X)
    for layer in ("features.1", "features.4"):
        for method in ("xgradcam", "gradcam++", "ablationcam", "scorecam"):
            got = s.explanation(layer, method, 1)
            want = xw.explain(net, X, layer, method=method, target=1)
            torch.testing.assert_close(got.raw, want.raw, rtol=1e-5, atol=1e-6, msg=f"{layer} {method}")
    d = s.diagnosis("features.4", "xgradcam", 1, batch_size=5)
    want = xw.diagnose(net, X, "features.4", method="xgradcam", target=1, batch_size=5)
    torch.testing.assert_close(d.true_drop, want.true_drop)


def test_bad_image_keeps_the_previous_one(counted):
    net, _ = counted
    s = Session(net, X)
    before = s.x.clone()
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.set_image(torch.full((3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="one image; got a batch of 2"):
        s.set_image(torch.zeros(2, 3, 16, 16))
    with pytest.raises(TypeError, match="no preprocessing"):
        s.set_image(b"\x89PNG")
    assert torch.equal(s.x, before)


def test_progress_callback_can_cancel_a_slow_method(counted):
    net, _ = counted
    s = Session(net, X)
    seen = []

    def stop_after_first(done, total):
        seen.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.explanation("features.4", "scorecam", 1, progress=stop_after_first, batch_size=4)
    assert seen == [(4, 12)]
    full = s.explanation("features.4", "scorecam", 1, batch_size=4)  # nothing half-done was cached
    torch.testing.assert_close(full.raw, xw.explain(net, X, "features.4", method="scorecam", target=1).raw)
