"""Low precision, memory that stays flat, and property-based checks of explain's arguments."""

from __future__ import annotations

import gc
import resource

import pytest
import torch
from conftest import TinyVGGNet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcam_widgets as xw

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_gives_finite_maps_close_to_float32(device, dtype):
    torch.manual_seed(0)
    reference = TinyVGGNet().eval()
    net = TinyVGGNet().eval()
    net.load_state_dict(reference.state_dict())
    net = net.to(device=device, dtype=dtype)
    for method in xw.METHODS:
        if method == "cam":
            continue
        res = xw.explain(net, X, "features.4", method=method, target=1)
        want = xw.explain(reference, X, "features.4", method=method, target=1)
        assert res.map.device.type == device
        assert torch.isfinite(res.map).all() and torch.isfinite(res.raw).all(), method
        if method not in ("sscam", "smoothgradcam++", "eigencam", "eigengradcam"):  # noise / SVD sign
            tolerance = 0.15 if dtype != torch.float32 else 1e-4
            assert (res.map.float().cpu() - want.map).abs().max() < tolerance, method


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def test_repeated_explain_keeps_memory_and_tensor_count_flat():
    torch.manual_seed(0)
    net = TinyVGGNet().eval()
    methods = ["xgradcam", "gradcam++", "ablationcam", "scorecam", "eigencam"]
    for method in methods:  # warm-up: allocator pools and lazy imports settle
        xw.explain(net, X, "features.4", method=method, target=1)
    tensors, rss = live_tensors(), rss_mb()
    for i in range(60):
        xw.explain(net, X, ["features.1", "features.4"], method=methods[i % len(methods)], target=i % 5)
    assert live_tensors() - tensors <= 5
    assert rss_mb() - rss < 30, f"RSS grew by {rss_mb() - rss:.1f} MB"
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}


def test_explorer_state_changes_keep_memory_flat():
    torch.manual_seed(0)
    net = TinyVGGNet().eval()
    explorer = xw.Explorer(net, X[0], background=False)
    layers = [o[1] for o in explorer.layer.options]
    for i in range(10):
        explorer.layer.value = layers[i % len(layers)]
    tensors, rss = live_tensors(), rss_mb()
    for i in range(60):
        explorer.layer.value = layers[i % len(layers)]
        explorer.target.value = i % 5
        explorer.method.value = ("gradcam", "xgradcam", "layercam")[i % 3]
    assert live_tensors() - tensors <= 200  # bounded by the session's LRU cache, not by the step count
    assert rss_mb() - rss < 40


method_names = st.sampled_from(xw.METHODS)
targets = st.one_of(
    st.none(),
    st.integers(-3, 8),
    st.floats(-1, 6),
    st.booleans(),
    st.lists(st.integers(-1, 6), min_size=0, max_size=3),
    st.text(max_size=3),
)
layers = st.one_of(
    st.sampled_from(["features.1", "features.4", "features", "classifier.1", "nope", ""]), st.integers(), st.none()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=method_names, target=targets, layer=layers)
def test_explain_arguments_either_work_or_raise_clear_errors(method, target, layer):
    """Any combination: a correct result, or ValueError/TypeError — never another exception, NaN
    or a changed model."""
    torch.manual_seed(0)
    net = TinyVGGNet().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    options = {"batch_size": 16} if "batch_size" in xw.REGISTRY[method].options else {}
    if "samples" in xw.REGISTRY[method].options:
        options["samples"] = 2
    try:
        res = xw.explain(net, X, layer, method=method, target=target, **options)
    except (ValueError, TypeError) as error:
        assert str(error)
    else:
        assert torch.isfinite(res.map).all()
        assert res.map.shape == (2, 16, 16) and float(res.map.max()) <= 1.0 and float(res.map.min()) >= 0.0
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}
