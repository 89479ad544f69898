"""The user's model is left exactly as it was: parameters, flags, hooks, .grad — also after errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torchvision
from conftest import TinyGAPNet, TinyVGGNet
from torch import nn

import xcam_widgets as xw
from xcam_widgets.model_state import evaluation_mode, model_lock

CHEAP = {"batch_size": 64, "samples": 2}


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        xw.hook_counts(model),
        [p.grad for p in model.parameters()],
    )


def assert_unchanged(model: nn.Module, before) -> None:
    state, training, requires_grad, hooks, grads = before
    after = model.state_dict()
    assert state.keys() == after.keys()
    for key, value in state.items():
        assert torch.equal(value, after[key]), key  # bitwise, buffers included (BatchNorm statistics)
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == requires_grad
    assert xw.hook_counts(model) == hooks
    assert all(p.grad is None for p in model.parameters()) and all(g is None for g in grads)


def prepared(model: nn.Module) -> nn.Module:
    """Training mode with frozen early parameters: the flags we must put back."""
    model.train()
    params = list(model.parameters())
    for p in params[: len(params) // 3]:
        p.requires_grad_(False)
    return model


MODELS = [
    ("tiny_gap", lambda: TinyGAPNet(), "features", 16),
    ("tiny_vgg", lambda: TinyVGGNet(), "features.4", 16),
    ("resnet18", lambda: torchvision.models.resnet18(weights=None, num_classes=10), "layer1", 32),
    (
        "mobilenet_v3_small",
        lambda: torchvision.models.mobilenet_v3_small(weights=None, num_classes=10),
        "features.3",
        32,
    ),
]


@pytest.mark.parametrize("name,factory,layer,size", MODELS, ids=[m[0] for m in MODELS])
def test_every_method_leaves_model_unchanged(name, factory, layer, size):
    torch.manual_seed(0)
    model = prepared(factory())
    x = torch.randn(2, 3, size, size)
    for method in xw.METHODS:
        if method == "cam" and name not in ("tiny_gap",):
            continue
        before = snapshot(model)
        options = {k: v for k, v in CHEAP.items() if k in xw.REGISTRY[method].options}
        res = xw.explain(model, x, layer, method=method, target=1, **options)
        assert torch.isfinite(res.map).all(), method
        assert_unchanged(model, before)


class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        self.conv(x)
        raise RuntimeError("boom inside forward")


def test_model_unchanged_when_forward_raises():
    model = prepared(RaisesInForward())
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        xw.explain(model, torch.randn(1, 3, 8, 8), "conv")
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"layer": "layer1.0.relu"}, ValueError, "runs more than once"),
        ({"layer": "layer3", "target": 10}, ValueError, "out of range"),
        ({"layer": "layer3", "method": "cam"}, ValueError, "global average pooling"),
        (
            {"layer": "layer3", "method": "ablationcam", "target": lambda out: out[:, 0] * float("nan")},
            ValueError,
            "not finite",
        ),
    ],
)
def test_model_unchanged_after_failing_halfway(kwargs, error, match):
    torch.manual_seed(0)
    model = prepared(torchvision.models.resnet18(weights=None, num_classes=10))
    before = snapshot(model)
    with pytest.raises(error, match=match):
        xw.explain(model, torch.randn(1, 3, 32, 32), **kwargs)
    assert_unchanged(model, before)


def test_inplace_relu_after_layer_keeps_pre_relu_activations():
    """DenseNet applies F.relu(inplace=True) to features.norm5: A must be the BatchNorm output."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    cap = xw.capture(model, x, "features.norm5", target=2)
    A = cap.activations["features.norm5"]
    assert (A < 0).any()  # pre-ReLU values survived the in-place op
    store = []
    h = model.features.norm5.register_forward_hook(lambda m, i, o: store.append(o.clone()))
    logits = model(x)
    h.remove()
    torch.testing.assert_close(A, store[0])
    torch.testing.assert_close(cap.score, logits[:, 2].detach())


def test_frozen_model_and_no_grad_context_still_work():
    model = TinyVGGNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    before = snapshot(model)
    with torch.no_grad():
        res = xw.explain(model, torch.randn(1, 3, 16, 16), "features.4", method="gradcam", target=0)
    assert res.raw.abs().sum() > 0
    assert_unchanged(model, before)


def work_from_threads(model: nn.Module, x: torch.Tensor, jobs: list) -> list:
    """Run `jobs` (callables of the model and x), each twice, from one thread per job started together."""
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return [job(model, x) for _ in range(2)]

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


THREAD_JOBS = [
    lambda m, x: xw.explain(m, x, "layer4", method="gradcam", target=1).raw,
    lambda m, x: xw.explain(m, x, ["layer3", "layer4"], method="layercam", target=2)[1].raw,
    lambda m, x: xw.explain(m, x, "layer4", method="ablationcam", target=1, batch_size=128).raw,
    lambda m, x: xw.diagnose(m, x, "layer3", method="xgradcam", target=1, batch_size=128).sensitivity_r,
]


def test_threads_sharing_a_train_mode_model_take_turns():
    """Without the per-model lock (model_state.model_lock), one call's `eval()` and restore interleave
    with another's forward: the model ends with `training == False`, BatchNorm statistics move, and each
    call's recorder sees the other's forward ("runs more than once")."""
    torch.manual_seed(0)
    model = prepared(torchvision.models.resnet18(weights=None, num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    before = snapshot(model)
    alone = [job(model, x) for job in THREAD_JOBS]
    together = work_from_threads(model, x, THREAD_JOBS)
    assert_unchanged(model, before)
    assert model.training and model.layer4[1].bn2.training
    for expected, results in zip(alone, together):
        for result in results:
            torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


def test_evaluation_mode_holds_the_model_lock_and_nests():
    model, inside, leave = TinyVGGNet(), threading.Event(), threading.Event()

    def hold():
        with evaluation_mode(model):
            with evaluation_mode(model):  # a nested call in the same thread re-enters
                inside.set()
                leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    try:
        assert not model_lock(model).acquire(blocking=False)  # another thread must wait its turn
        assert model_lock(TinyVGGNet()).acquire(blocking=False)  # another model's lock is free
    finally:
        leave.set()
        holder.join()
    assert model_lock(model).acquire(blocking=False)
    model_lock(model).release()
    assert model.training  # restored by the outermost call
