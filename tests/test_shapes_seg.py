"""The shapes segmentation net `shapes_seg`: its shape, its recorded held-out mIoU, and CAMs of its
`SegmentationTarget` that land on the shape."""

import json

import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.shapes import CAM_LAYER, make_shapes
from xcam_widgets.shapes.constants import SEG_MODEL
from xcam_widgets.shapes.nets import DATA_DIR, preprocess, weights_path
from xcam_widgets.shapes.seg import BACKGROUND, SEG_CLASSES, ShapesSegNet, confusion, mean_iou, pixel_labels
from xcam_widgets.targets import SegmentationTarget

FRESH_SEED = 424_242  # neither a training seed (seed * 1000 + epoch) nor the recorded held-out seed
MIOU_TOLERANCE = 0.03  # 300 fresh images against the record's 1000: sampling noise is ~0.01


@pytest.fixture(scope="module")
def bundle():
    return xw.load_model(SEG_MODEL, device="cpu")


@pytest.fixture(scope="module")
def record():
    return json.loads((DATA_DIR / "shapes_models.json").read_text())[SEG_MODEL]


def test_net_is_fully_convolutional_with_a_cam_block_before_the_classifier_conv():
    torch.manual_seed(0)
    model = ShapesSegNet().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 7, 64, 64)
        assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x))
    assert isinstance(model.get_submodule(CAM_LAYER).conv, torch.nn.Conv2d)
    assert isinstance(model.classifier, torch.nn.Conv2d) and model.classifier.kernel_size == (1, 1)
    assert SEG_CLASSES[BACKGROUND] == "background" and len(SEG_CLASSES) == 7


def test_pixel_labels_and_miou_by_hand():
    data = make_shapes(2, seed=3)
    labels = pixel_labels(data)
    for i in range(2):
        c = int(data.labels[i, 0])
        assert torch.equal(labels[i] == c, data.masks[i, c])
        assert torch.equal(labels[i] == BACKGROUND, ~data.masks[i].any(0))
    counts = torch.zeros(7, 7, dtype=torch.long)
    counts[0, 0], counts[0, 6], counts[6, 6] = 3, 1, 4  # class 0: IoU 3/4; background: 4/5; others absent: 0
    assert mean_iou(counts) == pytest.approx((3 / 4 + 4 / 5) / 7)


def test_bundle_and_record(bundle, record):
    assert bundle.task == "segmentation" and bundle.categories == list(SEG_CLASSES)
    assert not bundle.model.training
    assert record["bytes"] == weights_path(SEG_MODEL).stat().st_size < 600_000
    assert record["heldout_miou"] >= 0.8


def test_miou_on_fresh_images_is_near_the_recorded_one(bundle, record):
    counts = confusion(bundle.model, make_shapes(300, seed=FRESH_SEED, pair_fraction=0.4))
    assert mean_iou(counts) == pytest.approx(record["heldout_miou"], abs=MIOU_TOLERANCE)


@pytest.mark.parametrize("method", ["gradcam", "xgradcam"])
def test_segmentation_cam_localises_the_shape(bundle, method):
    """Energy in the true mask, computed by hand, is several times the mask's share of the image."""
    data = make_shapes(6, seed=FRESH_SEED + 1)
    x = preprocess(data.images)
    for i in range(len(data)):
        c = int(data.labels[i, 0])
        mask = data.masks[i, c].float()
        saliency = xw.explain(bundle.model, x[i : i + 1], CAM_LAYER, method, target=SegmentationTarget(c)).map[0]
        positive = saliency.clamp(min=0)
        energy = float((positive * mask).sum() / positive.sum())
        area = float(mask.mean())
        assert energy >= min(0.5, 4 * area), (i, energy, area)
