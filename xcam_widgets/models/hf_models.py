"""`load_model("hf:<repo id or folder>")`: a Hugging Face image classifier with its image processor and `id2label`.

Every file is looked up in the local cache (or the folder) first, without the network; only what is
not there is downloaded, and a failed download says how to get it. The model returns an object with
`.logits`, which `xw.explain` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image

from xcam_widgets.models.bundle import ModelBundle, Preprocess, optional_import

_PROBE = (256, 256)  # a blank image run through the processor to read the input size it produces


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
    try:
        return loader(repo)
    except OSError as err:
        alternative = " or pass pretrained=False for random weights," if what == "weights" else ""
        raise RuntimeError(
            f"the {what} of hf:{repo} is not in the local Hugging Face cache and could not be downloaded: "
            f"{repo!r} is not a Hub repo id or a folder, or there is no network ({err}). On a machine with "
            f"internet access run `hf download {repo}` (or `huggingface-cli download {repo}`) and copy the "
            f"cache (~/.cache/huggingface/hub),{alternative} or pass a local folder saved with save_pretrained. "
            "HF_HUB_OFFLINE=1 skips the download attempt."
        ) from err
