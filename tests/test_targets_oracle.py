"""Segmentation and detection targets on torchvision models with random weights: maps equal
pytorch-grad-cam's (oracle only) `SemanticSegmentationTarget` and `FasterRCNNBoxScoreTarget`, within
1e-4 of the map scale; RetinaNet, FCOS and SSD score the matched detection.

Detectors run at 128 px with few proposals (`rpn_*_top_n_test`, `box_detections_per_img`) and
`box_score_thresh=0` / `score_thresh=0`: with random weights every class score is about 1/91, below
the default thresholds, so nothing would be detected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import detection, segmentation

import xcam_widgets as xw
from xcam_widgets.targets import DetectionTarget, SegmentationTarget

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget, SemanticSegmentationTarget  # noqa: E402

MAP_TOL = 1e-4  # of the map scale: maps are in [0, 1]
SMALL_DETECTOR = {
    "min_size": 128,
    "max_size": 128,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 20,
    "box_detections_per_img": 20,
}


class _OutTensor(nn.Module):
    """pytorch-grad-cam needs a tensor output: torchvision's `{"out": ...}` unwrapped."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _unique_detection(det: dict[str, torch.Tensor]) -> int:
    """A detection whose box overlaps no other one fully: pgc's argmax over IoU then finds it alone."""
    ious = torchvision.ops.box_iou(det["boxes"], det["boxes"])
    return next(i for i in range(len(ious)) if int((ious[i] > 0.999).sum()) == 1)


def test_segmentation_maps_equal_pytorch_grad_cam():
    torch.manual_seed(0)
    model = segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False, num_classes=5)
    model.eval().requires_grad_(False)  # pgc's backward then fills no parameter's .grad
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        predicted = model(x)["out"].argmax(dim=1)
    present = [c for c in range(5) if all((predicted[b] == c).any() for b in range(2))]
    category = present[0]
    res = xw.explain(model, x, "backbone.layer4", method="gradcam", target=SegmentationTarget(category))
    masks = [(predicted[b] == category).float().numpy() for b in range(2)]
    with pgc.GradCAM(_OutTensor(model), target_layers=[model.backbone.layer4]) as cam:
        theirs = cam(x.clone().requires_grad_(True), targets=[SemanticSegmentationTarget(category, m) for m in masks])
        outputs = [out.detach() for out in cam.outputs]
        their_score = [float(SemanticSegmentationTarget(category, m)(out)) for out, m in zip(outputs, masks)]
    assert res.score.tolist() == pytest.approx(their_score, rel=1e-5)
    assert np.abs(res.map.numpy() - theirs).max() <= MAP_TOL * max(1.0, float(np.abs(theirs).max()))
    assert float(res.map.max()) == 1.0  # a real map, not an all-zero one


def test_faster_rcnn_maps_equal_pytorch_grad_cam():
    torch.manual_seed(0)
    model = (
        detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0, **SMALL_DETECTOR)
        .eval()
        .requires_grad_(False)
    )
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        det = model(x)[0]
    i = _unique_detection(det)
    box, label = det["boxes"][i], int(det["labels"][i])
    target = DetectionTarget(box, label, box_term=True)
    res = xw.explain(model, x, "backbone.body.layer4", method="gradcam", target=target)
    assert res.score.tolist() == pytest.approx([float(det["scores"][i]) + 1.0], abs=1e-5)  # s_d + IoU(b_d, b_d)
    with pgc.GradCAM(model, target_layers=[model.backbone.body.layer4]) as cam:
        # frozen weights, so pgc's backward fills no parameter's .grad; its input carries the graph
        theirs = cam(x.clone().requires_grad_(True), targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])
    assert np.abs(res.map.numpy() - theirs).max() <= MAP_TOL
    assert float(res.map.max()) == 1.0


def _small_retinanet() -> nn.Module:
    return detection.retinanet_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        score_thresh=0.0,
        min_size=128,
        max_size=128,
        detections_per_img=20,
        topk_candidates=50,
    )


def _small_fcos() -> nn.Module:
    return detection.fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        score_thresh=0.0,
        min_size=128,
        max_size=128,
        detections_per_img=20,
        topk_candidates=50,
    )


def _small_ssdlite() -> nn.Module:
    return detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, score_thresh=0.0, detections_per_img=20, topk_candidates=50
    )


@pytest.mark.parametrize(
    ("build", "layer"),
    [
        (_small_retinanet, "backbone.body.layer3"),
        (_small_fcos, "backbone.body.layer3"),
        (_small_ssdlite, "backbone.features.0.12"),
    ],
    ids=["retinanet", "fcos", "ssdlite"],
)
def test_other_detectors_score_the_matched_detection(build, layer):
    """S = s_d of the detection whose box and label were asked for (hand: read from a plain forward pass),
    and the map depends on it: its gradient reaches the layer."""
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        det = model(x)[0]
    i = _unique_detection(det)
    target = DetectionTarget(det["boxes"][i], int(det["labels"][i]))
    res = xw.explain(model, x, layer, method="gradcam", target=target)
    assert res.score.tolist() == pytest.approx([float(det["scores"][i])], abs=1e-6)
    assert torch.isfinite(res.raw).all() and float(res.raw.abs().max()) > 0


@pytest.mark.heavy
def test_ssd300_scores_the_matched_detection():
    torch.manual_seed(0)
    model = detection.ssd300_vgg16(weights=None, weights_backbone=None, score_thresh=0.0, detections_per_img=20).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        det = model(x)[0]
    i = _unique_detection(det)
    res = xw.explain(
        model,
        x,
        "backbone.features.21",
        method="gradcam",
        target=DetectionTarget(det["boxes"][i], int(det["labels"][i])),
    )
    assert res.score.tolist() == pytest.approx([float(det["scores"][i])], abs=1e-6)
