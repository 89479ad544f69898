"""The GPU path: every method, the diagnostics, the Session and the Explorer give on CUDA what
they give on the CPU; the model is left as it was; GPU memory does not grow over repeated calls;
only two checks make the CPU wait for the GPU.

Skipped without a GPU (CI has none); run on a lent GPU machine with `pytest tests/test_cuda.py`.
TF32 is switched off while these tests compare CUDA with the CPU: with it, cuDNN's convolutions
round inputs to 10 mantissa bits, and a comparison would measure that rounding, not our code."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch
from conftest import TinyGAPNet, TinyVGGNet

import xcam_widgets as xw
from xcam_widgets.views import low_res_map
from xcam_widgets.widgets.explorer import Explorer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
NOISY = ("sscam", "smoothgradcam++")  # noise drawn by the device's own generator: not comparable
SIGN_FREE = ("eigencam", "eigengradcam")  # an SVD's sign is arbitrary: compared up to sign
NETS = {"gap": (TinyGAPNet, "features.3"), "vgg": (TinyVGGNet, "features.4")}


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def twin_nets(kind: str) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """The same weights on the CPU and on the GPU."""
    cls, layer = NETS[kind]
    torch.manual_seed(0)
    cpu = cls().eval()
    gpu = cls().eval()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda(), layer


def close(gpu: torch.Tensor, cpu: torch.Tensor, up_to_sign: bool = False) -> bool:
    gpu = gpu.detach().cpu()
    if up_to_sign:
        return torch.allclose(gpu, cpu, rtol=1e-4, atol=1e-5) or torch.allclose(-gpu, cpu, rtol=1e-4, atol=1e-5)
    return torch.allclose(gpu, cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", NETS)
@pytest.mark.parametrize("method", xw.METHODS)
def test_every_method_on_cuda_matches_the_cpu(kind, method):
    cpu_net, gpu_net, layer = twin_nets(kind)
    if method == "cam" and kind == "vgg":
        pytest.skip("CAM needs a GAP-linear head")
    want = xw.explain(cpu_net, X, layer, method=method, target=1)
    got = xw.explain(gpu_net, X, layer, method=method, target=1)  # X on the CPU: moved to the model's device
    assert got.map.is_cuda and got.contributions.is_cuda
    assert torch.isfinite(got.map).all()
    if method in NOISY:
        return
    assert close(got.score, want.score)
    assert close(got.contributions, want.contributions, up_to_sign=method in SIGN_FREE), method
    assert close(got.map, want.map, up_to_sign=method in SIGN_FREE), method


def test_diagnostics_on_cuda_match_the_cpu():
    cpu_net, gpu_net, layer = twin_nets("vgg")
    want = xw.diagnose(cpu_net, X, layer, "xgradcam", target=2, batch_size=5)
    got = xw.diagnose(gpu_net, X, layer, "xgradcam", target=2, batch_size=5)
    for field in ("map_sum", "bias_term", "predicted_drop", "true_drop", "sensitivity_error", "sensitivity_r"):
        assert close(getattr(got, field), getattr(want, field)), field
    # The axiom identity holds on the GPU too: map sum + bias term = score (bias-carrying head).
    assert torch.allclose(got.map_sum + got.bias_term, got.score, rtol=1e-4, atol=1e-4)


def test_model_state_is_restored_on_cuda_also_after_an_error():
    _, net, layer = twin_nets("vgg")
    net.train()
    net.features[0].weight.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in net.state_dict().items()}
    xw.explain(net, X, layer, method="ablationcam", target=0)
    with pytest.raises(ValueError, match="no_such_layer"):
        xw.explain(net, X, "no_such_layer", method="xgradcam")
    with pytest.raises(ValueError):
        xw.explain(net, X.cuda()[:, :2], layer)  # wrong channel count
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == [False] + [True] * (len(list(net.parameters())) - 1)
    assert all(p.is_cuda for p in net.parameters())
    assert all(torch.equal(before[name], t) for name, t in net.state_dict().items())
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}


def test_gpu_memory_returns_to_its_level_between_calls():
    _, net, layer = twin_nets("vgg")
    methods = ["xgradcam", "gradcam++", "ablationcam", "scorecam", "eigencam"]

    def run(calls: int) -> int:
        for i in range(calls):
            xw.explain(net, X, [layer, "features.1"], method=methods[i % len(methods)], target=i % 5)
        gc.collect()
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    level = run(10)  # warm-up: the caching allocator's pools, cuDNN's workspaces, cached traces
    assert run(40) <= level  # never above (two H100 runs of an earlier version ended 100-200 KB below)


def test_a_gradient_map_waits_for_the_gpu_only_at_its_two_checks():
    """A read-back stalls the CPU until the GPU has caught up, so the kernels of the next step
    cannot be queued behind running ones. Only the checks of the input and of the score read
    back (both needed for their errors), and the score is checked after the backward pass."""
    _, net, layer = twin_nets("vgg")
    x = X.cuda()
    xw.explain(net, x, layer, method="xgradcam", target=1)  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            xw.explain(net, x, layer, method="xgradcam", target=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 2 and "inputs.py" in syncs[0] and "capture.py" in syncs[1], syncs


def test_half_precision_and_autocast_on_cuda_give_maps_close_to_float32():
    cpu_net, gpu_net, layer = twin_nets("vgg")
    want = xw.explain(cpu_net, X, layer, method="xgradcam", target=1)
    half = xw.explain(gpu_net.half(), X, layer, method="xgradcam", target=1)
    gpu_net.float()
    with torch.autocast("cuda", dtype=torch.float16):
        mixed = xw.explain(gpu_net, X, layer, method="xgradcam", target=1)
    assert all(p.dtype == torch.float32 for p in gpu_net.parameters())
    for result in (half, mixed):
        assert torch.isfinite(result.map).all()
        assert (result.map.float().cpu() - want.map).abs().max() < 0.05


def test_session_and_explorer_on_cuda_show_what_explain_computes():
    torch.manual_seed(0)
    bundle = xw.load_model("shapes_vgg", pretrained=False, device="cuda")
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4))
    session = xw.Session(bundle, image)
    layer = session.default_layer
    shown = session.explanation(layer, "xgradcam", 2)
    want = xw.explain(bundle.model, session.x, layer, method="xgradcam", target=2)
    assert shown.map.is_cuda and torch.equal(shown.map, want.map)

    explorer = Explorer(bundle, image, background=False)
    explorer.method.value = "gradcam"
    assert explorer.status.value == "", explorer.status.value
    state = explorer.state
    expected = xw.explain(bundle.model, image, state.layer, method="gradcam", target=state.target).raw
    np.testing.assert_allclose(explorer.shown_map, low_res_map(expected), rtol=1e-5, atol=1e-6)
