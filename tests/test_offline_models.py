"""Uncached `timm:`, `hf:` and torchvision weights without a network: a quick, clear error.

The network is never used: the probe's `socket.create_connection` is replaced by fakes, and the
slow download paths (`timm.create_model(pretrained=True)`, `from_pretrained` without
`local_files_only`, torch hub's download) fail the test if they are reached at all. That no long
wait happens is shown by the probe's timeout and by those paths never running, not by wall time.
"""

from __future__ import annotations

import socket
import threading

import pytest
import torch
import torchvision

from xcam_widgets.models import hf_models, load_model

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("huggingface_hub")


UNREACHABLE = OSError(101, "Network is unreachable")


class Probe:
    """Stands in for `socket.create_connection`: records each call, then fails (or connects)."""

    def __init__(self, error: OSError | None = UNREACHABLE):
        self.calls: list[tuple[tuple[str, int], float]] = []
        self.error = error

    def __call__(self, address: tuple[str, int], timeout: float) -> object:
        self.calls.append((address, timeout))
        if self.error is not None:
            raise self.error
        return type("Connection", (), {"close": lambda self: None})()


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, offline mode off, the public hub as endpoint, no proxy."""
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture
def no_slow_download(monkeypatch):
    """Fail the test if a pretrained timm model is created or a Hub file fetched over the network."""
    create = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        if pretrained and "pretrained_cfg_overlay" not in kwargs:
            raise AssertionError("timm tried to download")
        return create(name, pretrained=pretrained, **kwargs)

    def download(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(timm, "create_model", create_model)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    for auto in (transformers.AutoConfig, transformers.AutoImageProcessor):
        load = auto.from_pretrained

        def local_only(repo, *args, _load=load, **kwargs):
            if not kwargs.get("local_files_only"):
                raise AssertionError("from_pretrained tried the network")
            return _load(repo, *args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", local_only)


def _probe(monkeypatch, error: OSError | None = UNREACHABLE) -> Probe:
    probe = Probe(error)
    monkeypatch.setattr(socket, "create_connection", probe)
    return probe


def test_uncached_timm_weights_without_a_network_fail_at_once_and_name_hf_hub_offline(
    empty_caches, no_slow_download, monkeypatch
):
    probe = _probe(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        load_model("timm:test_vit", device="cpu")
    message = str(info.value)
    assert probe.calls == [(("huggingface.co", 443), hf_models.PROBE_TIMEOUT)]
    assert hf_models.PROBE_TIMEOUT <= 2
    assert "not in the local cache and could not be downloaded: there is no network" in message
    assert "huggingface.co cannot be reached (OSError: [Errno 101] Network is unreachable)" in message
    assert "Set HF_HUB_OFFLINE=1" in message
    assert "timm.create_model('test_vit', pretrained=True)" in message and "pretrained=False" in message


def test_timm_in_offline_mode_does_not_even_probe(empty_caches, no_slow_download, monkeypatch):
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    probe = _probe(monkeypatch)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set, so no download was tried"):
        load_model("timm:test_vit", device="cpu")
    assert probe.calls == []


def test_timm_with_a_network_goes_on_to_download(empty_caches, monkeypatch):
    probe = _probe(monkeypatch, error=None)
    tried = []
    create = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        tried.append(pretrained)
        return create(name, pretrained=False, **kwargs)  # stands in for the download

    monkeypatch.setattr(timm, "create_model", create_model)
    bundle = load_model("timm:test_vit", device="cpu")
    assert bundle.name == "timm:test_vit" and tried == [True] and len(probe.calls) == 1


def test_uncached_hf_repo_without_a_network_fails_at_once_and_names_hf_hub_offline(
    empty_caches, no_slow_download, monkeypatch
):
    probe = _probe(monkeypatch, OSError(-3, "Temporary failure in name resolution"))
    with pytest.raises(RuntimeError) as info:
        load_model("hf:someone/tiny-vit", device="cpu")
    message = str(info.value)
    assert probe.calls == [(("huggingface.co", 443), hf_models.PROBE_TIMEOUT)]
    assert message.startswith(
        "the config of hf:someone/tiny-vit is not in the local Hugging Face cache and could not be downloaded: "
        "there is no network: huggingface.co cannot be reached "
        "(OSError: [Errno -3] Temporary failure in name resolution)"
    )
    assert "HF_HUB_OFFLINE=1" in message and "hf download someone/tiny-vit" in message


def test_uncached_torchvision_weights_without_a_network_fail_at_once(empty_caches, no_slow_download, monkeypatch):
    probe = _probe(monkeypatch)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    with pytest.raises(RuntimeError, match="not cached and could not be downloaded: there is no network") as info:
        load_model("resnet18", device="cpu")
    assert probe.calls == [(("download.pytorch.org", 443), hf_models.PROBE_TIMEOUT)]
    assert url in str(info.value) and "pretrained=False" in str(info.value)


def test_behind_a_proxy_the_proxy_is_probed(empty_caches, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    probe = _probe(monkeypatch)
    problem = hf_models.unreachable("https://huggingface.co", hub=True)
    assert probe.calls == [(("proxy.example", 3128), hf_models.PROBE_TIMEOUT)]
    assert problem is not None and problem.startswith("there is no network: proxy.example cannot be reached")


def test_a_probe_that_hangs_is_cut_off(empty_caches, monkeypatch):
    """A name lookup can hang past the connect timeout: the probe's thread is abandoned after it."""
    release = threading.Event()
    calls = []

    def hang(address, timeout):
        calls.append(timeout)
        release.wait()
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(hf_models, "PROBE_TIMEOUT", 0.05)
    try:
        problem = hf_models.unreachable("https://example.invalid/weights.pth", hub=False)
    finally:
        release.set()
    assert problem == "there is no network: example.invalid did not answer within 0.05 s"
    assert calls == [0.05]
