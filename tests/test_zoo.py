"""The model zoo: names, bundles, preprocessing, and offline behaviour of torchvision weights."""

from __future__ import annotations

import importlib.util
import urllib.error

import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import segmentation

import xcam_widgets.models as models
from xcam_widgets.images import sample_image
from xcam_widgets.models import ModelBundle, available_models, load_model


def has_shapes_nets() -> bool:
    try:
        return importlib.util.find_spec("xcam_widgets.shapes.nets") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def lite0() -> ModelBundle:
    return load_model(device="cpu")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and downloads that fail as they do without a network."""

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_exports():
    assert models.__all__ == ["ModelBundle", "available_models", "load_checkpoint", "load_model"]


def test_available_models():
    names = available_models()
    assert names[:3] == ("efficientnet_lite0", "shapes_gap", "shapes_vgg")
    assert {"resnet50", "vgg16", "mobilenet_v3_large", "convnext_tiny"} <= set(names)
    assert {
        "fasterrcnn_resnet50_fpn",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
        "ssd300_vgg16",
        "deeplabv3_resnet50",
        "fcn_resnet50",
    } <= set(names)
    assert len(names) == len(set(names))
    assert "raft_large" not in names  # optical flow: not a model CAMs apply to
    classifiers = available_models("classification")
    assert "resnet50" in classifiers and "fcn_resnet50" not in classifiers and "ssd300_vgg16" not in classifiers
    assert available_models("segmentation") == (
        "shapes_seg",
        *sorted(torchvision.models.list_models(module=segmentation)),
    )
    assert "fasterrcnn_resnet50_fpn" in available_models("detection")


def test_default_bundle(lite0):
    assert lite0.name == "efficientnet_lite0" and lite0.input_size == 224 and lite0.task == "classification"
    assert not lite0.model.training
    assert all(p.device.type == "cpu" for p in lite0.model.parameters())
    assert len(lite0.categories) == 1000 and lite0.categories[0] == "tench"
    model, preprocess, categories = lite0
    assert (model, preprocess, categories) == (lite0.model, lite0.preprocess, lite0.categories)


def test_lite0_preprocess_formula(lite0):
    """(255 x - 127) / 128 on a 224 crop: 127 -> 0, 255 -> 1, 0 -> -127/128."""
    x = lite0.preprocess(Image.new("RGB", (300, 260), (127, 255, 0)))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[:, 100, 100], torch.tensor([0.0, 1.0, -127 / 128]), atol=1e-6)


def test_lite0_preprocess_sample(lite0):
    x = lite0.preprocess(sample_image("rocket"))
    assert x.shape == (3, 224, 224)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_preprocess_accepts_any_mode(lite0, mode):
    assert lite0.preprocess(Image.new(mode, (64, 48))).shape == (3, 224, 224)


def test_preprocess_rejects_non_images(lite0):
    with pytest.raises(TypeError, match="preprocess expects a PIL image"):
        lite0.preprocess(torch.zeros(3, 224, 224))


def test_lite0_without_weights_is_offline_and_random():
    bundle = load_model("efficientnet_lite0", pretrained=False, device="cpu")
    pretrained = load_model("efficientnet_lite0", device="cpu")
    assert not torch.equal(bundle.model.fc.weight, pretrained.model.fc.weight)


def test_torchvision_random_weights(offline_hub):
    bundle = load_model("resnet18", pretrained=False, device="cpu")
    assert bundle.name == "resnet18" and bundle.input_size == 224
    assert bundle.categories == torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    x = bundle.preprocess(sample_image("chelsea"))
    assert x.shape == (3, 224, 224)
    with torch.no_grad():
        assert bundle.model(x[None]).shape == (1, 1000)


def test_torchvision_input_size_from_weights(offline_hub):
    assert load_model("efficientnet_b1", pretrained=False, device="cpu").input_size == 240


def test_torchvision_pretrained_offline_is_a_clear_error(offline_hub):
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    with pytest.raises(RuntimeError, match="not cached and could not be downloaded") as info:
        load_model("resnet18", device="cpu")
    message = str(info.value)
    assert url in message and str(offline_hub / "checkpoints") in message and "pretrained=False" in message


def test_torchvision_pretrained_from_cache(offline_hub):
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    (offline_hub / "checkpoints").mkdir()
    torch.save(reference.state_dict(), offline_hub / "checkpoints" / weights.url.rsplit("/", 1)[1])
    bundle = load_model("resnet18", device="cpu")
    assert torch.equal(bundle.model.fc.weight, reference.fc.weight)
    assert not bundle.model.training


def test_torchvision_segmentation_random_weights_offline(offline_hub):
    """Random weights download nothing, not even the backbone's ImageNet weights."""
    bundle = load_model("lraspp_mobilenet_v3_large", pretrained=False, device="cpu")
    assert bundle.task == "segmentation" and bundle.input_size == 520
    assert bundle.categories == segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.meta["categories"]
    x = bundle.preprocess(Image.new("RGB", (100, 50), (255, 0, 0)))
    assert x.shape == (3, 520, 1040)  # the short side resized to 520, the aspect kept
    with torch.no_grad():
        assert bundle.model(x[None, :, :64, :64])["out"].shape == (1, 21, 64, 64)


def test_torchvision_detection_random_weights_offline(offline_hub):
    bundle = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False, device="cpu")
    assert bundle.task == "detection" and bundle.input_size == 320 and bundle.categories[1] == "person"
    x = bundle.preprocess(Image.new("RGB", (40, 30), (255, 255, 255)))
    assert x.shape == (3, 30, 40) and float(x.max()) == 1.0  # the detector normalises and resizes inside
    with torch.no_grad():
        out = bundle.model(x[None])
    assert isinstance(out, list) and set(out[0]) == {"boxes", "scores", "labels"}


def test_torchvision_detection_pretrained_offline_is_a_clear_error(offline_hub):
    with pytest.raises(RuntimeError, match="not cached and could not be downloaded.*pretrained=False"):
        load_model("fasterrcnn_mobilenet_v3_large_320_fpn", device="cpu")


def test_unknown_name_lists_close_matches_and_all_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'\. Did you mean 'resnet50'") as info:
        load_model("resnet5")
    assert "efficientnet_lite0" in str(info.value) and "shapes_gap" in str(info.value)
    assert "'timm:<name>'" in str(info.value) and "'hf:<repo id>'" in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'efficientnet_lite0'"):
        load_model("efficientnet-lite0")


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"name": 3}, TypeError, "name must be a str"),
        ({"pretrained": "yes"}, TypeError, "pretrained must be a bool"),
        ({"device": 0.5}, TypeError, "device must be None, a str or a torch.device"),
        ({"device": "gpu7"}, ValueError, "device 'gpu7' is not a torch device"),
    ],
)
def test_bad_arguments(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        load_model(**kwargs)


@pytest.mark.skipif(not has_shapes_nets(), reason="xcam_widgets.shapes.nets (load_shapes_model) is not written yet")
@pytest.mark.parametrize("name", ["shapes_gap", "shapes_vgg"])
def test_shapes_models_random(name):
    bundle = load_model(name, pretrained=False, device="cpu")
    assert bundle.name == name and bundle.input_size == 64 and not bundle.model.training
    assert len(bundle.categories) == 6
    x = bundle.preprocess(Image.new("RGB", (80, 80)))
    with torch.no_grad():
        assert bundle.model(x[None]).shape == (1, 6)


@pytest.mark.parametrize("name", ["shapes_gap", "shapes_vgg"])
def test_shapes_models_pretrained(name):
    if not has_shapes_nets():
        pytest.skip("xcam_widgets.shapes.nets (load_shapes_model) is not written yet")
    from xcam_widgets.shapes.nets import weights_path

    if not weights_path(name).is_file():
        pytest.skip(f"the shapes weights {weights_path(name)} are not trained yet")
    bundle = load_model(name, device="cpu")
    assert not bundle.model.training and len(bundle.categories) == 6
