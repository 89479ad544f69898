"""Small models and an independent A/G capture shared by the engine's tests."""

from __future__ import annotations

import shutil

import pytest
import torch
from browser_helpers import chromium_context, ensure_chromium, notebook_lab
from torch import nn

import xcam_widgets

torch.set_num_threads(2)


class TinyGAPNet(nn.Module):
    """conv → ReLU → conv → ReLU → global average pooling → linear: a CAM-style head."""

    def __init__(self, classes: int = 5, bias: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1, bias=bias), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class TinyVGGNet(nn.Module):
    """conv → ReLU → max-pool → conv → ReLU → flatten → linear → ReLU → linear: a VGG-style head."""

    def __init__(self, classes: int = 5, bias: bool = True, size: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1, bias=bias),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(12 * (size // 2) ** 2, 32, bias=bias), nn.ReLU(), nn.Linear(32, classes, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def reference_capture(model: nn.Module, x: torch.Tensor, layer: str, classes: torch.Tensor):
    """A and G = ∂S_c/∂A by a plain hook and autograd, independent of xcam_widgets' capture."""
    module = dict(model.named_modules())[layer]
    store = []
    handle = module.register_forward_hook(lambda m, i, o: store.append(o))
    try:
        out = model.eval()(x)
    finally:
        handle.remove()
    score = out.gather(1, classes[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(score.sum(), store[0])
    return store[0].detach(), grad, score.detach()


@pytest.fixture
def gap_net() -> nn.Module:
    torch.manual_seed(0)
    return TinyGAPNet().eval()


@pytest.fixture
def vgg_net() -> nn.Module:
    torch.manual_seed(0)
    return TinyVGGNet().eval()


@pytest.fixture
def image_batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core machine, thread hand-offs cost more than the maths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_shapes_vgg():
    """The shapes VGG net with seeded random weights: the runner's tests need a model, not a trained one."""
    torch.manual_seed(0)
    return xcam_widgets.load_model("shapes_vgg", pretrained=False, device="cpu")


# --- browser tests (test_browser*.py) ------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; installed when missing and we are root, else the test skips (`ensure_chromium`)."""
    path, why = ensure_chromium()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def notebook_browser(chromium, request, tmp_path_factory):
    """A Chromium context for a module that runs its own notebook; that module's `HERE` folder (its
    screenshots and server log) is emptied first."""
    folder = request.module.HERE
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with chromium_context(chromium, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def notebook_server(request, tmp_path_factory):
    """(base URL, token, server): JupyterLab serving only the module's notebook `NOTEBOOK`, made of its `CELLS`."""
    module = request.module
    home = tmp_path_factory.mktemp("lab")
    with notebook_lab(module.CELLS, module.NOTEBOOK, home, module.HERE / "jupyterlab.log") as served:
        yield served
