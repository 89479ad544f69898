"""The tail after a layer, channel drops, Ablation-CAM and the GAP-linear identities."""

from __future__ import annotations

import gc
import operator
import weakref

import pytest
import torch
import torchvision
from conftest import TinyVGGNet
from torch import nn

import xcam_widgets as xw
from xcam_widgets import split
from xcam_widgets.capture import capture
from xcam_widgets.methods.context import MethodContext
from xcam_widgets.methods.rerun import channel_drops
from xcam_widgets.model_state import evaluation_mode
from xcam_widgets.split import TailGraph, gap_linear_head


def brute_force_drops(model: nn.Module, x: torch.Tensor, layer: str, cls: int) -> torch.Tensor:
    """d_k by re-running the WHOLE model with channel k zeroed by a hook: slow and obviously right."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        base = model(x)[:, cls]
        channels = None
        drops = []
        k = 0
        while channels is None or k < channels:

            def zero(m, i, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o

            handle = module.register_forward_hook(zero)
            try:
                out = model(x)[:, cls]
            finally:
                handle.remove()
            drops.append(base - out)
            if channels is None:
                store: list[int] = []
                h = module.register_forward_hook(lambda m, i, o, store=store: store.append(o.shape[1]))
                model(x)
                h.remove()
                channels = store[0]
            k += 1
    return torch.stack(drops, 1)


def drops_via_engine(
    model: nn.Module, x: torch.Tensor, layer: str, cls: int, batch_size: int = 5, use_head: bool = True
):
    with evaluation_mode(model):
        cap = capture(model, x, layer, cls)
        ctx = MethodContext(model, x, layer, cap)
        if not use_head:
            ctx.head = None  # force the re-run path
        drops = channel_drops(ctx, batch_size)
    return drops, ctx.traced


class Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx; the hook fallback must take over."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(6, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:
            y = y * 1.5
        return self.head(y)


@pytest.mark.parametrize("net_name,layer", [("vgg", "features.4"), ("vgg", "features.2"), ("gap", "features.1")])
def test_tail_drops_equal_brute_force(vgg_net, gap_net, image_batch, net_name, layer):
    net = vgg_net if net_name == "vgg" else gap_net
    drops, traced = drops_via_engine(net, image_batch, layer, 2, use_head=False)
    assert traced is True
    torch.testing.assert_close(drops, brute_force_drops(net, image_batch, layer, 2), rtol=1e-4, atol=1e-5)


def test_residual_frontier_is_fed_not_recomputed(image_batch):
    """Inside a ResNet block the tail needs the block's input (the identity branch) as a constant."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32)
    drops, traced = drops_via_engine(net, x, "layer2.0.conv1", 1, batch_size=128, use_head=False)
    assert traced is True
    expected = brute_force_drops(net, x, "layer2.0.conv1", 1)
    torch.testing.assert_close(drops, expected, rtol=1e-3, atol=1e-4)


def test_untraceable_model_falls_back_and_stays_correct():
    net = Untraceable().eval()
    x = torch.randn(2, 3, 12, 12)
    drops, traced = drops_via_engine(net, x, "body.1", 0)
    assert traced is False
    torch.testing.assert_close(drops, brute_force_drops(net, x, "body.1", 0), rtol=1e-4, atol=1e-5)


def test_traces_are_reused_until_the_structure_changes(vgg_net, image_batch, monkeypatch):
    """One trace per (model, layer); replacing a submodule retraces, and the drops follow the new
    module (a stale trace would still run the old one)."""
    traces = []
    real = split._trace_tail
    monkeypatch.setattr(split, "_trace_tail", lambda *args: traces.append(args[1]) or real(*args))
    first, _ = drops_via_engine(vgg_net, image_batch, "features.2", 1, use_head=False)
    again, _ = drops_via_engine(vgg_net, image_batch, "features.2", 1, use_head=False)
    assert traces == ["features.2"] and torch.equal(first, again)
    torch.manual_seed(5)
    vgg_net.classifier[3] = nn.Linear(32, 5)
    drops, traced = drops_via_engine(vgg_net, image_batch, "features.2", 1, use_head=False)
    assert traces == ["features.2"] * 2 and traced is True
    torch.testing.assert_close(drops, brute_force_drops(vgg_net, image_batch, "features.2", 1), rtol=1e-4, atol=1e-5)


class BranchesOnTraining(nn.Module):
    """The traced graph differs between train and eval mode."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(6, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x):
        y = self.body(x)
        return self.head(y * 0.5 if self.training else y)


def test_a_trace_asked_for_in_train_mode_is_the_eval_graph_and_leaves_the_flags(image_batch, monkeypatch):
    """Tracing holds evaluation_mode: the trace is of the graph every use runs (eval), the model's own
    flags are put back, and the later eval-mode use reuses that trace."""
    traces = []
    real = split._trace_tail
    monkeypatch.setattr(split, "_trace_tail", lambda *args: traces.append(args[1]) or real(*args))
    net = BranchesOnTraining()
    net(image_batch)  # materialise the lazy layer
    graph = split.trace_tail(net.train(), "body.1")  # e.g. layer discovery on a model left in train mode
    assert all(m.training for m in net.modules())
    assert not any(n.target is operator.mul for n in graph.module.graph.nodes)  # no train-mode `y * 0.5`
    drops, traced = drops_via_engine(net.eval(), image_batch, "body.1", 2, use_head=False)
    assert traced is True and traces == ["body.1"]
    torch.testing.assert_close(drops, brute_force_drops(net, image_batch, "body.1", 2), rtol=1e-4, atol=1e-5)


def test_a_cached_trace_does_not_keep_the_model_alive():
    net = TinyVGGNet().eval()
    xw.explain(net, torch.randn(1, 3, 16, 16), "features.4", method="ablationcam", target=0)
    assert isinstance(split._TRACES[net]["features.4"][1], TailGraph)
    alive = weakref.ref(net)
    del net
    gc.collect()
    assert alive() is None


def test_gap_linear_closed_form_equals_re_run(gap_net, image_batch):
    assert gap_linear_head(gap_net, "features") is gap_net.fc
    closed, _ = drops_via_engine(gap_net, image_batch, "features", 4, use_head=True)
    rerun, traced = drops_via_engine(gap_net, image_batch, "features", 4, use_head=False)
    assert traced is True
    torch.testing.assert_close(closed, rerun, rtol=1e-4, atol=1e-6)


def test_gap_linear_head_detection():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    vgg = torchvision.models.vgg11(weights=None).eval()
    effnet = torchvision.models.efficientnet_b0(weights=None).eval()
    assert gap_linear_head(resnet, "layer4") is resnet.fc
    assert gap_linear_head(effnet, "features") is effnet.classifier[1]
    assert gap_linear_head(resnet, "layer3") is None
    assert gap_linear_head(vgg, "features.18") is None


def test_ablationcam_weights_are_relative_drops(vgg_net, image_batch):
    res = xw.explain(vgg_net, image_batch, "features.4", method="ablationcam", target=1, batch_size=7)
    expected = brute_force_drops(vgg_net, image_batch, "features.4", 1) / res.score.abs()[:, None]
    torch.testing.assert_close(res.weights, expected, rtol=1e-4, atol=1e-6)


def test_ablationcam_with_negative_score_keeps_supporting_channels_positive(vgg_net, image_batch):
    """A negative class score divided by itself would flip the sign; |S_c| keeps it."""
    cls = int(vgg_net(image_batch[:1]).argmin())
    res = xw.explain(vgg_net, image_batch[:1], "features.4", method="ablationcam", target=cls)
    assert res.score[0] < 0
    drops = brute_force_drops(vgg_net, image_batch[:1], "features.4", cls)
    assert torch.equal(torch.sign(res.weights), torch.sign(drops))


def test_xgradcam_equals_gradcam_before_gap_linear():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    grad = xw.explain(net, x, "layer4", method="gradcam", target=3)
    xgrad = xw.explain(net, x, "layer4", method="xgradcam", target=3)
    torch.testing.assert_close(xgrad.raw, grad.raw, rtol=1e-4, atol=1e-6)
    alive = xgrad.contributions.abs().sum((2, 3)) > 0  # dead channels get α=0 in XGrad-CAM, unseen in the map
    torch.testing.assert_close(xgrad.weights[alive], grad.weights[alive], rtol=1e-4, atol=1e-7)


def test_xgradcam_differs_from_gradcam_on_a_vgg_head(vgg_net, image_batch):
    grad = xw.explain(vgg_net, image_batch, "features.4", method="gradcam", target=3)
    xgrad = xw.explain(vgg_net, image_batch, "features.4", method="xgradcam", target=3)
    assert (xgrad.weights - grad.weights).abs().max() > 1e-3 * grad.weights.abs().max()


def test_cam_is_z_times_gradcam_before_gap_linear():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    cam = xw.explain(net, x, "layer4", method="cam", target=[3, 7])
    grad = xw.explain(net, x, "layer4", method="gradcam", target=[3, 7])
    Z = grad.raw.shape[1] * grad.raw.shape[2]
    torch.testing.assert_close(cam.weights, net.fc.weight[[3, 7]].detach())
    torch.testing.assert_close(cam.raw, Z * grad.raw, rtol=1e-4, atol=1e-5)


def reference_masks(net: nn.Module, x: torch.Tensor, cls: int) -> list[torch.Tensor]:
    """Score-CAM's masks by hand: each channel of `features`, upsampled, min-max scaled."""
    import torch.nn.functional as F
    from conftest import reference_capture

    A, _, _ = reference_capture(net, x, "features", torch.tensor([cls]))
    masks = []
    for k in range(A.shape[1]):
        m = F.interpolate(A[:, k : k + 1], size=x.shape[2:], mode="bilinear", align_corners=False)
        span = m.max() - m.min()
        masks.append((m - m.min()) / span if span > 0 else torch.zeros_like(m))
    return masks


def test_scorecam_weights_are_softmax_of_masked_scores(gap_net, image_batch):
    """Hand computation: upsample each channel, min-max scale, mask the input, score, softmax."""
    x = image_batch[:1]
    masks = reference_masks(gap_net, x, 2)
    with torch.no_grad():
        scores = [gap_net(x * m)[0, 2] for m in masks]
    expected = torch.softmax(torch.stack(scores), 0)
    res = xw.explain(gap_net, x, "features", method="scorecam", target=2, batch_size=5)
    torch.testing.assert_close(res.weights[0], expected, rtol=1e-4, atol=1e-7)


def test_iscam_integrates_the_mask(gap_net, image_batch):
    x, n = image_batch[:1], 3
    masks = reference_masks(gap_net, x, 0)
    with torch.no_grad():
        scores = [sum(gap_net(x * m * (i / n))[0, 0] for i in range(1, n + 1)) / n for m in masks]
    res = xw.explain(gap_net, x, "features", method="iscam", target=0, samples=n)
    torch.testing.assert_close(res.weights[0], torch.softmax(torch.stack(scores), 0), rtol=1e-4, atol=1e-7)


class SlicesSequential(nn.Module):
    """`forward` slices an nn.Sequential: the slice is a new, unregistered module, so torch.fx
    raises NameError ("module is not installed as a submodule")."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features[4:](self.features[:4](x))), 1))


def test_any_tracing_failure_falls_back_to_the_hook_tail():
    net, x = SlicesSequential().eval(), torch.randn(2, 3, 12, 12)
    with pytest.raises(split.UntraceableError, match="NameError"):
        split.trace_tail(net, "features.3")
    drops, traced = drops_via_engine(net, x, "features.3", 1)
    assert traced is False
    torch.testing.assert_close(drops, brute_force_drops(net, x, "features.3", 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("error", [KeyError, ZeroDivisionError, NameError])
def test_an_error_of_any_type_inside_torch_fx_falls_back(image_batch, monkeypatch, error):
    def fails(model, layer):
        raise error("inside torch.fx")

    monkeypatch.setattr(split, "_trace_tail", fails)
    net = TinyVGGNet().eval()
    drops, traced = drops_via_engine(net, image_batch, "features.2", 3, use_head=False)
    assert traced is False
    torch.testing.assert_close(drops, brute_force_drops(net, image_batch, "features.2", 3), rtol=1e-4, atol=1e-5)


def test_a_failed_trace_is_remembered(monkeypatch):
    calls = []
    real = split._trace_tail
    monkeypatch.setattr(split, "_trace_tail", lambda *args: calls.append(args[1]) or real(*args))
    net = SlicesSequential().eval()
    for _ in range(2):
        assert gap_linear_head(net, "features.5") is None
    assert calls == ["features.5"]


def test_model_that_slices_a_sequential_works_with_every_entry_point():
    net, x = SlicesSequential().eval(), torch.randn(2, 3, 12, 12)
    res = xw.explain(net, x, "features.3", method="ablationcam", target=1)
    expected = brute_force_drops(net, x, "features.3", 1) / res.score.abs()[:, None]
    torch.testing.assert_close(res.weights, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"CAM must check .* torch.fx cannot trace SlicesSequential .*NameError"):
        xw.explain(net, x, "features.5", method="cam", target=1)
    diagnosis = xw.diagnose(net, x, "features.3", method="xgradcam", target=1)
    assert diagnosis.bias_term is None  # needs the traced graph
    torch.testing.assert_close(diagnosis.true_drop, brute_force_drops(net, x, "features.3", 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        diagnosis.explanation.raw, xw.explain(net, x, "features.3", method="xgradcam", target=1).raw
    )
    layers = xw.candidate_layers(net, (3, 12, 12))
    assert [info.name for info in layers][-3:] == ["features.4", "features.5", "pool"]  # "features" never runs
    assert not any(info.gap_linear for info in layers)  # unknown without a trace, so not claimed
