"""`load_model("timm:...")` and `load_model("hf:...")` without any download: models built from configs,
weights from a local cache made in the test, and the clear errors when weights are neither cached
nor downloadable (offline mode, an empty cache)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import xcam_widgets as xw
from xcam_widgets.images import sample_image
from xcam_widgets.models import load_model
from xcam_widgets.reshape import TokenGrid, infer_reshape

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("huggingface_hub")
safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face and torch hub cache, in Hugging Face's offline mode."""
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    return tmp_path / "hf"


def _cache_hub_file(cache, repo_id: str, filename: str, state: dict[str, torch.Tensor]) -> None:
    """Lay a file out as huggingface_hub's cache does: snapshots/<revision>/<file>, refs/main -> revision."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    safetensors_torch.save_file(state, str(folder / "snapshots" / revision / filename))


def test_timm_random_weights_with_timm_preprocessing(offline_cache):
    bundle = load_model("timm:test_vit", pretrained=False, device="cpu")
    assert bundle.name == "timm:test_vit" and bundle.task == "classification" and not bundle.model.training
    assert bundle.input_size == 160 and bundle.categories[:2] == ["tench", "goldfish"]
    config = timm.data.resolve_data_config(model=bundle.model)
    assert config["mean"] == (0.5, 0.5, 0.5) and config["crop_pct"] == 0.95
    image = sample_image("chelsea")
    expected = timm.data.create_transform(**config)(image)
    assert torch.equal(bundle.preprocess(image), expected)
    x = bundle.preprocess(image)[None]
    layer = "blocks.0.norm1"
    assert infer_reshape(bundle.model, tuple(x.shape), layer, (1, 101, 64)) == TokenGrid(1, 10, 10)
    res = xw.explain(bundle.model, x, layer, reshape=infer_reshape(bundle.model, tuple(x.shape), layer, (1, 101, 64)))
    assert res.raw.shape == (1, 10, 10)


def test_timm_pretrained_weights_from_the_local_cache(offline_cache):
    torch.manual_seed(0)
    reference = timm.create_model("test_vit", pretrained=False)
    cfg = timm.models.get_pretrained_cfg("test_vit")
    _cache_hub_file(offline_cache, cfg.hf_hub_id, "model.safetensors", reference.state_dict())
    bundle = load_model("timm:test_vit", device="cpu")
    assert torch.equal(bundle.model.head.weight, reference.head.weight)
    assert torch.equal(bundle.model.patch_embed.proj.weight, reference.patch_embed.proj.weight)


def test_timm_pretrained_offline_is_a_clear_error(offline_cache):
    with pytest.raises(RuntimeError, match="not in the local cache and could not be downloaded") as info:
        load_model("timm:test_vit", device="cpu")
    message = str(info.value)
    assert "timm.create_model('test_vit', pretrained=True)" in message and "pretrained=False" in message


def test_timm_unknown_names():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_18'. Did you mean timm:resnet18"):
        load_model("timm:resnet_18")
    with pytest.raises(ValueError, match="Invalid pretrained tag"):
        load_model("timm:resnet18.no_such_tag", pretrained=False)
    with pytest.raises(ValueError, match="names no model after 'timm:'"):
        load_model("timm:")


def _tiny_vit(folder) -> transformers.PreTrainedModel:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "fish"},
        label2id={"cat": 0, "dog": 1, "fish": 2},
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return model


def _tiny_convnext(folder) -> transformers.PreTrainedModel:
    config = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    torch.manual_seed(0)
    model = transformers.ConvNextForImageClassification(config).eval()
    model.save_pretrained(folder)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 64}).save_pretrained(folder)
    return model


def test_hf_vit_from_a_folder(tmp_path, offline_cache):
    reference = _tiny_vit(tmp_path / "vit")
    bundle = load_model(f"hf:{tmp_path / 'vit'}", device="cpu")
    assert bundle.categories == ["cat", "dog", "fish"] and bundle.input_size == 32
    image = Image.new("RGB", (50, 40), (200, 10, 30))
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "vit")
    x = bundle.preprocess(image)
    assert torch.equal(x, processor(images=image, return_tensors="pt")["pixel_values"][0])
    # the last block's first LayerNorm: vit.layers.1... in transformers 5, vit.encoder.layer.1... in 4
    layer = [name for name, _ in bundle.model.named_modules() if name.endswith("layernorm_before")][-1]
    reshape = infer_reshape(bundle.model, (1, 3, 32, 32), layer, (1, 17, 32))
    assert reshape == TokenGrid(1, 4, 4)
    res = xw.explain(bundle.model, x, layer, method="gradcam", reshape=reshape)
    with torch.no_grad():
        logits = reference(x[None]).logits
    assert torch.allclose(res.logits, logits, atol=1e-6)  # the `.logits` output is read
    assert int(res.classes[0]) == int(logits.argmax()) and res.raw.shape == (1, 4, 4)
    assert torch.allclose(res.score, logits.max(dim=1).values, atol=1e-6)


def test_hf_convnext_from_a_folder_and_random_weights(tmp_path, offline_cache):
    reference = _tiny_convnext(tmp_path / "convnext")
    bundle = load_model(f"hf:{tmp_path / 'convnext'}", device="cpu")
    assert bundle.input_size == 64 and bundle.categories == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    assert torch.equal(bundle.model.classifier.weight, reference.classifier.weight)
    layer = [name for name, _ in bundle.model.named_modules() if name.endswith("stages.1")][0]
    res = xw.explain(bundle.model, bundle.preprocess(sample_image("chelsea")), layer, target=2)
    assert res.raw.shape == (1, 8, 8) and int(res.classes[0]) == 2  # 64 px / 4 (stem) / 2 (stage 2's downsampling)
    torch.manual_seed(1)
    random = load_model(f"hf:{tmp_path / 'convnext'}", pretrained=False, device="cpu")
    assert not torch.equal(random.model.classifier.weight, reference.classifier.weight)
    assert random.categories == bundle.categories


def test_hf_offline_is_a_clear_error(offline_cache):
    with pytest.raises(RuntimeError, match="config of hf:someone/tiny-vit is not in the local Hugging Face") as info:
        load_model("hf:someone/tiny-vit", device="cpu")
    assert "hf download someone/tiny-vit" in str(info.value)


def test_hf_folder_without_a_processor(tmp_path, offline_cache):
    _tiny_vit(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").unlink()
    with pytest.raises(RuntimeError, match="image processor of hf:"):
        load_model(f"hf:{tmp_path / 'vit'}", device="cpu")


def test_hf_model_without_a_classification_head(tmp_path, offline_cache):
    transformers.CLIPTextConfig(
        hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path / "text")
    with pytest.raises(ValueError, match="'clip_text_model' model, which AutoModelForImageClassification does not"):
        load_model(f"hf:{tmp_path / 'text'}", pretrained=False)
