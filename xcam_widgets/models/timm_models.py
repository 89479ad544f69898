"""`load_model("timm:<name>")`: a timm classifier with timm's preprocessing config and ImageNet class names.

Pretrained weights come from the local cache (the Hugging Face hub cache, or torch hub's checkpoints
for timm's older URL weights) without touching the network; only when they are not cached is a
download tried, after a quick check that the host answers (`hf_models.unreachable`), and its failure
explains how to get them or how to ask for random weights.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xcam_widgets.models.bundle import ModelBundle, Preprocess, imagenet_categories, optional_import
from xcam_widgets.models.hf_models import hub_endpoint, unreachable

_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a Hugging Face repo


def load_timm(name: str, pretrained: bool) -> ModelBundle:
    """The timm model `name` (an architecture, optionally with a weight tag: "resnet18.a1_in1k")."""
    timm = optional_import("timm", "timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(f'timm:{c}' for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {name!r}.{hint} timm.list_models() lists the names")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:  # an unknown weight tag
        raise ValueError(f"timm model {name!r}: {err}") from err
    model = _pretrained(timm, name, cfg) if pretrained else timm.create_model(name, pretrained=False)
    data_config = timm.data.resolve_data_config(model=model)
    transform = timm.data.create_transform(**data_config)
    size = int(data_config["input_size"][1])
    return ModelBundle(f"timm:{name}", model, Preprocess(transform), _categories(timm, model), size)


def cached_weights(cfg: Any) -> Path | None:
    """The local file of a timm pretrained config's weights, if cached: in the Hugging Face hub cache
    (`hf_hub_id`), or in torch hub's checkpoints folder (`url`)."""
    if cfg.hf_hub_id:
        hub = optional_import("huggingface_hub", "timm")
        for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILENAMES:
            path = hub.try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=hub.constants.HF_HUB_CACHE)
            if isinstance(path, str):
                return Path(path)
    if cfg.url:
        path = Path(torch.hub.get_dir(), "checkpoints", os.path.basename(cfg.url))
        if path.is_file():
            return path
    return None


def _pretrained(timm: Any, name: str, cfg: Any) -> nn.Module:
    path = cached_weights(cfg)
    if path is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    where = f"the Hugging Face repo {cfg.hf_hub_id!r}" if cfg.hf_hub_id else cfg.url
    cache = "~/.cache/huggingface/hub" if cfg.hf_hub_id else str(Path(torch.hub.get_dir(), "checkpoints"))
    how = (
        f"On a machine with internet access, run `python -c \"import timm; timm.create_model('{name}', "
        f'pretrained=True)"` to cache them (from {where}) and copy the cache ({cache}), or pass '
        "pretrained=False for random weights."
    )
    missing = f"the pretrained weights of timm model {name!r} are not in the local cache and could not be downloaded"
    problem = unreachable(hub_endpoint() if cfg.hf_hub_id else cfg.url, hub=bool(cfg.hf_hub_id))
    if problem is not None:
        offline = "" if "HF_HUB_OFFLINE" in problem else " Set HF_HUB_OFFLINE=1 to skip the download attempt at once."
        raise RuntimeError(f"{missing}: {problem}.{offline} {how}")
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as err:  # network and hub failures come in many types; all mean "not downloadable now"
        raise RuntimeError(f"{missing} ({type(err).__name__}: {err}). {how}") from err


def _categories(timm: Any, model: nn.Module) -> list[str]:
    """ImageNet-1k names as torchvision spells them, ImageNet-22k descriptions, else "class i"."""
    classes = int(getattr(model, "num_classes", 0))
    subset = timm.data.infer_imagenet_subset(model)
    if classes == 1000:
        return imagenet_categories()
    if subset is not None and timm.data.ImageNetInfo(subset).num_classes() == classes:
        info = timm.data.ImageNetInfo(subset)
        return [info.index_to_description(i) for i in range(classes)]
    return [f"class {i}" for i in range(classes)]
