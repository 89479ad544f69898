"""`load_model("hf:<repo id or folder>")`: a Hugging Face image classifier with its image processor and `id2label`.

Every file is looked up in the local cache (or the folder) first, without the network; only what is
not there is downloaded, and a failed download says how to get it. Before a download, `unreachable`
checks in about a second that the host answers (or that HF_HUB_OFFLINE is not set): a download
attempt without a network takes the hub's retries, tens of seconds, to fail. The model returns an object
with `.logits`, which `xw.explain` reads.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

import torch
from PIL import Image

from xcam_widgets.models.bundle import ModelBundle, Preprocess, optional_import

_PROBE = (256, 256)  # a blank image run through the processor to read the input size it produces
PROBE_TIMEOUT = 1.5  # s to open a TCP connection to a download host; a reachable host answers in well under that
HUB = "https://huggingface.co"


def hub_endpoint() -> str:
    """The Hugging Face Hub's URL (HF_ENDPOINT where set)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.environ.get("HF_ENDPOINT", HUB)
    return str(constants.ENDPOINT)


def hub_offline() -> bool:
    """Whether Hugging Face's offline mode is on (HF_HUB_OFFLINE, as huggingface_hub read it)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def unreachable(url: str, hub: bool) -> str | None:
    """Why nothing can be downloaded from `url` now, or None: HF_HUB_OFFLINE is set (for the Hub, `hub`),
    or a TCP connection to its host (or to the proxy for it: HTTPS_PROXY, ...) is not open within
    `PROBE_TIMEOUT` s. The attempt runs in a daemon thread, so a name lookup that hangs is cut off too."""
    if hub and hub_offline():
        return "HF_HUB_OFFLINE is set, so no download was tried"
    parsed = urlparse(url)
    proxy = getproxies().get(parsed.scheme)
    if proxy and not proxy_bypass(parsed.hostname or ""):  # downloads go through the proxy: probe that
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parsed.hostname or "", parsed.port or (80 if parsed.scheme == "http" else 443)
    failure: list[str] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
        except OSError as err:
            failure.append(f"{type(err).__name__}: {err}")
        else:
            failure.append("")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT + 0.5)
    if not failure:
        return f"there is no network: {host} did not answer within {PROBE_TIMEOUT:g} s"
    return f"there is no network: {host} cannot be reached ({failure[0]})" if failure[0] else None


@dataclass(frozen=True)
class ProcessorTransform:
    """RGB PIL image -> `[3, H, W]`: the image processor's `pixel_values`."""

    processor: Any

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def load_hf(repo: str, pretrained: bool) -> ModelBundle:
    """The `AutoModelForImageClassification` of `repo`; with `pretrained=False`, random weights
    from its config (which must then be cached or downloadable, as the processor)."""
    transformers = optional_import("transformers", "hf")
    config = fetch(transformers.AutoConfig.from_pretrained, repo, "config")
    auto = transformers.AutoModelForImageClassification
    try:
        model = fetch(auto.from_pretrained, repo, "weights") if pretrained else auto.from_config(config)
    except ValueError as err:  # a config class without an image-classification head
        raise ValueError(
            f"hf:{repo} is a {config.model_type!r} model, which AutoModelForImageClassification does not cover"
        ) from err
    processor = fetch(transformers.AutoImageProcessor.from_pretrained, repo, "image processor")
    transform = ProcessorTransform(processor)
    size = int(transform(Image.new("RGB", _PROBE)).shape[-2])
    categories = [str(config.id2label.get(i, f"class {i}")) for i in range(config.num_labels)]
    return ModelBundle(f"hf:{repo}", model, Preprocess(transform), categories, size)


def fetch(loader: Callable[..., Any], repo: str, what: str) -> Any:
    """`loader(repo)` from the local cache or folder; failing that, from the Hub; failing that, a
    RuntimeError that says how to get the files or how to do without the weights."""
    try:
        return loader(repo, local_files_only=True)
    except OSError:
        pass
    alternative = " or pass pretrained=False for random weights," if what == "weights" else ""
    how = (
        f"On a machine with internet access run `hf download {repo}` (or `huggingface-cli download {repo}`) "
        f"and copy the cache (~/.cache/huggingface/hub),{alternative} or pass a local folder saved with "
        "save_pretrained. HF_HUB_OFFLINE=1 skips the download attempt."
    )
    missing = f"the {what} of hf:{repo} is not in the local Hugging Face cache and could not be downloaded"
    problem = unreachable(hub_endpoint(), hub=True)
    if problem is not None:
        raise RuntimeError(f"{missing}: {problem}. {how}")
    try:
        return loader(repo)
    except OSError as err:
        raise RuntimeError(
            f"{missing}: {repo!r} is not a Hub repo id or a folder, or there is no network ({err}). {how}"
        ) from err
