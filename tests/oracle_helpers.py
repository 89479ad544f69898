"""What the oracle tests share: the models, inputs and our maps; the comparisons; and pytorch-grad-cam's
("pgc" below) run of a method. The oracles are the dev extras pytorch-grad-cam (PyPI grad-cam 1.5.7) and
torchcam 0.5.0; without them every oracle test module is skipped.

Setting
-------
torchvision classifiers with random, seeded weights (resnet18, vgg11, densenet121, mobilenet_v3_small,
efficientnet_b0, convnext_tiny), a seeded batch of 2 images at 64x64, target class 3. Two adjustments,
both seeded: BatchNorm running statistics are those of one random batch (with the default statistics
the logits of mobilenet_v3_small and efficientnet_b0 are 1e-10..1e-15, where the oracles' additive
epsilons would dominate), and ConvNeXt's layer scales are drawn from U(0.5, 1) instead of 1e-6 (every
block is otherwise the identity). Parameters are frozen; the oracles get an input that requires grad.
Score-CAM and Ablation-CAM run on `SmallNet` (6-12 channels, 24x24) and ResNet-18's layer4 at 32 px.

Tolerances: |ours - theirs| <= tol * max|theirs|, tol = TOL = 1e-5 (measured: <= 1e-6, most ~2e-7;
many exactly 0); the test modules name where float32 conditioning (not a definition) needs more.

`XCAM_ORACLE_REPORT=1 pytest -s tests/test_oracles_gradient.py tests/test_oracles_perturbation.py`
prints the measured differences, per module.
"""

from __future__ import annotations

import contextlib
import functools
import os
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import xcam_widgets as xw

pgc = pytest.importorskip("pytorch_grad_cam")
tcm = pytest.importorskip("torchcam.methods")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TOL = 1e-5
TARGET = 3
BATCH = 2
SIZE = 64
TC_EPS = 1e-8  # torchcam: XGradCAM's denominator and its min-max normalisation

MEASURED: dict[str, float] = {}  # largest relative differences, printed with XCAM_ORACLE_REPORT=1


# ----------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------
def _set_batchnorm_statistics(model: nn.Module, seed: int, size: int) -> None:
    """Running statistics from one seeded random batch (train mode, no grad), then eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, exactly its statistics
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size, generator=generator))


@functools.lru_cache(maxsize=None)
def torchvision_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    _set_batchnorm_statistics(model, seed=1, size=SIZE)
    for module in model.modules():
        if isinstance(module, torchvision.models.convnext.CNBlock):
            # ConvNeXt initialises its layer scale to 1e-6: every block is then ~ the identity, and
            # the network ~ a per-pixel LayerNorm of the stem (HiResCAM's map ~ float32 noise).
            nn.init.uniform_(module.layer_scale, 0.5, 1.0)
    # Frozen, as for inference: no parameter gradients. We need none; pgc's loss.backward() would
    # otherwise fill .grad of every parameter (VGG's 100M-weight classifier dominates the run time),
    # so the oracles get an input that requires grad instead (pgc's own `compute_input_gradient`).
    model.requires_grad_(False)
    return model.eval()


@functools.lru_cache(maxsize=None)
def image_batch(size: int = SIZE, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1234))


class SmallNet(nn.Module):
    """A few channels for the Score-CAM / Ablation-CAM family: `features.3` is at the input's
    resolution, `features.6` at a third of it (an odd upsampling factor); the head is flatten → linear,
    so Ablation-CAM re-runs the tail rather than using the GAP→linear closed form."""

    def __init__(self, size: int = 24, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(12 * (size // 3) ** 2, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


SMALL_SIZE = 24


@functools.lru_cache(maxsize=None)
def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet(SMALL_SIZE).eval()
    with torch.no_grad():
        head = net.classifier[1]
        head.weight.mul_(30)  # logits of order 1: Score-CAM's softmax weights are then far from uniform
        # S_c of the two images straddles 0, so Ablation-CAM's S versus |S| shows
        head.bias[TARGET] -= net(image_batch(SMALL_SIZE))[:, TARGET].mean()
    return net


# ----------------------------------------------------------------------------------------------
# Comparison helpers
# ----------------------------------------------------------------------------------------------
def _tensor(value) -> torch.Tensor:
    return (value.detach() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))).double()


def assert_scaled_close(actual, expected, what: str, tol: float = TOL) -> float:
    """|actual - expected| <= tol * max|expected|; returns (and records) the relative difference."""
    actual, expected = _tensor(actual), _tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    scale = float(expected.abs().max())
    assert scale > 0, f"{what}: the reference is all zeros, the comparison would prove nothing"
    difference = float((actual - expected).abs().max()) / scale
    MEASURED[what] = max(difference, MEASURED.get(what, 0.0))
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol * scale, msg=lambda m: f"{what}: {m}")
    return difference


def assert_unit_maps_close(actual, expected, what: str, tol: float = TOL) -> None:
    """Maps in [0, 1]: absolute tolerance; at least one image must have a non-trivial map."""
    expected = _tensor(expected)
    assert float(expected.amax()) > 0.5, f"{what}: the reference maps are all (nearly) zero"
    assert_scaled_close(actual, expected, what, tol)


def torchcam_normalize(maps: torch.Tensor) -> torch.Tensor:
    """torchcam's `_CAM._normalize`: subtract the min, divide by (the new max + 1e-8), per image."""
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / (maps.amax(dim=(1, 2), keepdim=True) + TC_EPS)


def pgc_postprocess(raw: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """pgc's path from the raw map to the final one (`compute_cam_per_layer` then
    `aggregate_multi_layers` with one layer), run with pgc's own `scale_cam_image` on our raw map."""
    cam = np.maximum(raw.detach().float().numpy(), 0)
    per_layer = scale_cam_image(cam, (size[1], size[0]))[:, None]
    return scale_cam_image(np.maximum(per_layer, 0).mean(axis=1))


def svd_sign(ours: torch.Tensor, theirs) -> torch.Tensor:
    """Per image, the sign s in {-1, +1} with ours ≈ s * theirs (the SVD's sign is arbitrary)."""
    dot = (_tensor(ours) * _tensor(theirs)).flatten(1).sum(1)
    return torch.where(dot < 0, -1.0, 1.0).double()


@functools.lru_cache(maxsize=None)
def ours(model_name: str, layer: str, method: str, size: int = SIZE, **options) -> xw.Explanation:
    model = small_net() if model_name == "small" else torchvision_model(model_name)
    x = image_batch(SMALL_SIZE if model_name == "small" else size)
    return xw.explain(model, x, layer, method=method, target=TARGET, **options)


def _model_and_input(model_name: str, size: int = SIZE) -> tuple[nn.Module, torch.Tensor]:
    if model_name == "small":
        return small_net(), image_batch(SMALL_SIZE)
    return torchvision_model(model_name), image_batch(size)


def _oracle_input(x: torch.Tensor) -> torch.Tensor:
    """The oracles hook the layer's output and need it to require grad, with frozen parameters too."""
    return x.detach().clone().requires_grad_(True)


@functools.lru_cache(maxsize=None)
def our_capture(model_name: str, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Our A and G = ∂S_c/∂A (xw.capture), `[B, K, h, w]`."""
    model, x = _model_and_input(model_name)
    cap = xw.capture(model, x, layer, TARGET)
    return cap.activations[layer], cap.gradients[layer]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """These tensors are tiny: one thread is as fast, and far faster on a shared, loaded CPU (no
    OpenMP / OpenBLAS threads spinning while they wait for a core; pgc's NumPy SVDs took 40x longer)."""
    try:
        from threadpoolctl import threadpool_limits  # with scikit-learn, a dependency of grad-cam
    except ImportError:  # pragma: no cover
        threadpool_limits = contextlib.nullcontext
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# pytorch-grad-cam
# ----------------------------------------------------------------------------------------------
PGC_METHODS = {
    "gradcam": pgc.GradCAM,
    "xgradcam": pgc.XGradCAM,
    "hirescam": pgc.HiResCAM,
    "gradcam-elementwise": pgc.GradCAMElementWise,
    "layercam": pgc.LayerCAM,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
}
PGC_WEIGHTED = {"gradcam", "xgradcam", "scorecam", "ablationcam"}
PGC_EXTRA = {"scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM}


def _record_weights(cam) -> list:
    """Keep the weights that pgc's own forward computes (Score/Ablation-CAM are not re-run for them)."""
    used: list = []
    get_cam_weights = cam.get_cam_weights
    cam.get_cam_weights = lambda *args: used.append(get_cam_weights(*args)) or used[-1]
    return used


@functools.lru_cache(maxsize=None)
def pgc_run(model_name: str, layer: str, method: str, size: int = SIZE, **options) -> SimpleNamespace:
    """pgc's final map, its raw map before ReLU and its weights, from the A and G it hooked.

    pgc's gradient methods share `BaseCAM.forward`: a forward and a backward pass with the hooks of
    `ActivationsAndGradients`, then `compute_cam_per_layer` and `aggregate_multi_layers`. GradCAM runs
    it all; the other gradient classes get that pass's hooked A and G and run the rest of
    `BaseCAM.forward` themselves (one model pass per model instead of seven). Score-CAM and
    Ablation-CAM run entirely: they re-run the model."""
    model, x = _model_and_input(model_name, size)
    module = model.get_submodule(layer)
    x = _oracle_input(x)
    targets = [ClassifierOutputTarget(TARGET)] * x.shape[0]
    cam = {**PGC_METHODS, **PGC_EXTRA}[method](model, [module], **options)
    used = _record_weights(cam)
    try:
        if method in ("gradcam", "scorecam", "ablationcam"):
            final = cam(x, targets)
            scores = cam.outputs[:, TARGET].detach().double()
            A = cam.activations_and_grads.activations[0]
            G = cam.activations_and_grads.gradients[0] if cam.activations_and_grads.gradients else None
        else:
            shared = pgc_run(model_name, layer, "gradcam", size)
            A, G, scores = shared.A, shared.G, shared.scores
            cam.activations_and_grads.activations, cam.activations_and_grads.gradients = [A], [G]
            final = cam.aggregate_multi_layers(cam.compute_cam_per_layer(x, targets, False))
        if method in PGC_WEIGHTED:
            (weights,) = used
            raw = (weights[:, :, None, None] * A.numpy()).sum(axis=1)  # pgc's BaseCAM.get_cam_image
        else:
            weights, raw = None, cam.get_cam_image(x, module, targets, A.numpy(), G.numpy(), False)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return SimpleNamespace(final=final, raw=raw, weights=weights, A=A, G=G, scores=scores)


def release_and_report(*module_caches: Any) -> None:
    """Clear the cached models and runs (VGG-11 alone holds 0.5 GB; other modules need none of them),
    `module_caches` being a test module's own; print `MEASURED` with XCAM_ORACLE_REPORT=1."""
    for cached in (torchvision_model, small_net, ours, our_capture, pgc_run, *module_caches):
        cached.cache_clear()
    if os.environ.get("XCAM_ORACLE_REPORT"):
        print("\nlargest relative differences (|ours - theirs| / max|theirs|):")
        for key in sorted(MEASURED):
            print(f"  {MEASURED[key]:.2e}  {key}")
    MEASURED.clear()
