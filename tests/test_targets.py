"""`xw.targets`: segmentation, detection and embedding scores against hand computations, the per-image
specifications on later passes, and the bad inputs each one refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xcam_widgets as xw
from xcam_widgets.targets import (
    DetectionTarget,
    EmbeddingSimilarity,
    OutputTarget,
    SegmentationTarget,
    class_indices,
    logits_of,
    make_scorer,
)

# Segmentation logits [B=2, C=3, H=2, W=2]; image 0 predicts class 1 at (0, 0) and (1, 1), class 0 elsewhere.
SEG = torch.tensor(
    [
        [[[5.0, 1.0], [2.0, 0.0]], [[6.0, 0.0], [1.0, 3.0]], [[0.0, 0.5], [0.0, 1.0]]],
        [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]], [[2.5, 2.5], [2.5, 2.5]]],
    ]
)


def test_old_names_still_import():
    assert logits_of(torch.zeros(2, 5)).shape == (2, 5)
    assert class_indices(None, torch.tensor([[0.0, 1.0]])).tolist() == [1]


def test_segmentation_sum_and_mean_over_a_mask():
    mask = torch.tensor([[True, False], [True, True]])
    # class 1: image 0: 6 + 1 + 3 = 10; image 1: 1 + 3 + 4 = 8
    assert SegmentationTarget(1, mask)(SEG).tolist() == [10.0, 8.0]
    assert SegmentationTarget(1, mask, reduction="mean")(SEG).tolist() == pytest.approx([10 / 3, 8 / 3])
    weights = np.array([[0.5, 0.0], [0.0, 2.0]], dtype=np.float32)  # NumPy weights: 0.5*6 + 2*3 = 9; 0.5*1 + 2*4 = 8.5
    assert SegmentationTarget(1, weights)(SEG).tolist() == [9.0, 8.5]


def test_segmentation_default_mask_is_the_predicted_class():
    # image 0: argmax is class 1 at (0, 0) [6 > 5] and (1, 1) [3 > 1 > 0]: 6 + 3 = 9, mean 4.5.
    # image 1: class 1 wins at (1, 0) [3 > 2.5] and (1, 1) [4 > 2.5]: 3 + 4 = 7.
    target = SegmentationTarget(1)
    assert target(SEG[:1]).tolist() == [9.0]
    assert target(SEG).tolist() == [9.0, 7.0]
    assert SegmentationTarget(1, reduction="mean")(SEG).tolist() == [4.5, 3.5]
    assert target({"out": SEG, "aux": SEG * 0}).tolist() == [9.0, 7.0]  # torchvision's dict output


def test_segmentation_mask_fixed_by_the_clean_pass():
    """On later passes (noisy or masked copies) the predicted mask of the clean pass stays in force."""
    bound = make_scorer(SegmentationTarget(1), SEG).fn
    assert isinstance(bound, SegmentationTarget) and bound.mask.shape == (2, 2, 2)
    copies = SEG[1:2].expand(3, -1, -1, -1) * 0 + 1.0  # three copies of image 1, all logits 1
    assert make_scorer(SegmentationTarget(1), SEG)(copies, 1).tolist() == [2.0, 2.0, 2.0]  # its 2 pixels
    rows = torch.tensor([0, 1, 0])
    assert make_scorer(SegmentationTarget(1), SEG)(copies, rows).tolist() == [2.0, 2.0, 2.0]


def test_segmentation_bad_inputs():
    with pytest.raises(ValueError, match="mask is \\(3, 3\\).*output's resolution"):
        SegmentationTarget(1, torch.ones(3, 3))(SEG)
    with pytest.raises(ValueError, match="class 2 is predicted at no pixel of image 0"):
        SegmentationTarget(2).bind(SEG)
    with pytest.raises(ValueError, match="category 7 is out of range: the model has 3 classes"):
        SegmentationTarget(7, torch.ones(2, 2))(SEG)
    with pytest.raises(TypeError, match="category must be a class index"):
        SegmentationTarget(1.5)
    with pytest.raises(ValueError, match="reduction must be"):
        SegmentationTarget(1, reduction="max")
    with pytest.raises(ValueError, match="finite and >= 0"):
        SegmentationTarget(1, torch.full((2, 2), -1.0))
    with pytest.raises(ValueError, match="mask is given for 3 images but the batch has 2"):
        SegmentationTarget(1, torch.ones(3, 2, 2))(SEG)
    with pytest.raises(ValueError, match="expected \\[B, C, H, W\\]"):
        SegmentationTarget(1)(torch.zeros(2, 3))


def _detections(boxes, scores, labels) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


# Against the box [0, 0, 10, 10]: IoU 0.5 (label 1), 1.0 (label 2), 81/100 (label 1), 0 (label 1).
DETECTIONS = _detections(
    [[0, 0, 10, 5], [0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.6, 0.99], [1, 2, 1, 1]
)


def test_detection_best_matching_box_of_the_label():
    box = [0, 0, 10, 10]
    assert DetectionTarget(box, 1)([DETECTIONS]).tolist() == pytest.approx([0.6])  # IoU 0.81 beats 0.5
    assert DetectionTarget(box, 1, box_term=True)([DETECTIONS]).tolist() == pytest.approx([0.6 + 0.81])
    assert DetectionTarget(box, 1, iou_threshold=0.5)([DETECTIONS]).tolist() == pytest.approx([0.6])
    assert DetectionTarget(box, 2)([DETECTIONS]).tolist() == pytest.approx([0.8])
    assert DetectionTarget([0, 0, 10, 6], 1, iou_threshold=0.8)([DETECTIONS]).tolist() == pytest.approx([0.9])  # 50/60


def test_detection_per_image_boxes_and_gradient():
    other = _detections([[5, 5, 15, 15]], [0.7], [3])
    target = DetectionTarget(torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15]]), [1, 3], box_term=True)
    assert target([DETECTIONS, other]).tolist() == pytest.approx([1.41, 1.7])
    scores = torch.tensor([0.5], requires_grad=True)
    boxes = torch.tensor([[1.0, 1.0, 9.0, 8.0]], requires_grad=True)
    output = [{"boxes": boxes, "scores": scores, "labels": torch.tensor([4])}]
    value = DetectionTarget([0, 0, 10, 10], 4, box_term=True)(output)
    assert value.tolist() == pytest.approx([0.5 + 0.56])
    value.sum().backward()
    # S = s + IoU; the box lies inside the reference, so IoU = (x2 - x1)(y2 - y1) / 100 = 56 / 100:
    # dS/ds = 1, dS/dx1 = -(y2 - y1) / 100 = -0.07, dS/dy1 = -(x2 - x1) / 100 = -0.08, and +0.07, +0.08.
    assert scores.grad.tolist() == [1.0]
    assert boxes.grad[0].tolist() == pytest.approx([-0.07, -0.08, 0.07, 0.08])


def test_detection_no_match_is_an_error_on_the_clean_pass_and_zero_later():
    target = DetectionTarget([0, 0, 10, 10], 1, iou_threshold=0.9)
    with pytest.raises(ValueError, match="no detection of label 1 overlaps box .* IoU >= 0.9 in image 0.* 0.810"):
        make_scorer(target, [DETECTIONS])
    bound = make_scorer(DetectionTarget([0, 0, 10, 10], 1), [DETECTIONS])
    gone = _detections([[50, 50, 60, 60]], [0.9], [1])
    assert bound([gone, DETECTIONS], torch.tensor([0, 0])).tolist() == pytest.approx([0.0, 0.6])


def test_detection_bad_inputs():
    with pytest.raises(ValueError, match="x2 > x1 and y2 > y1"):
        DetectionTarget([10, 0, 0, 10], 1)
    with pytest.raises(ValueError, match="box must be \\[x1, y1, x2, y2\\]"):
        DetectionTarget([0, 0, 10], 1)
    with pytest.raises(ValueError, match="iou_threshold must be a number in \\(0, 1\\]"):
        DetectionTarget([0, 0, 1, 1], 1, iou_threshold=1.5)
    with pytest.raises(TypeError, match="label must be a class index"):
        DetectionTarget([0, 0, 1, 1], "cat")
    with pytest.raises(TypeError, match="list of dicts with keys"):
        DetectionTarget([0, 0, 1, 1], 1)(torch.zeros(1, 10))


def test_embedding_cosine_similarity():
    # cos([3, 4], [4, 3]) = 24 / 25; cos([1, 0], [4, 3]) = 4 / 5; per-image references [[4, 3], [0, 1]] -> 0.96, 0
    output = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert EmbeddingSimilarity(torch.tensor([4.0, 3.0]))(output).tolist() == pytest.approx([0.96, 0.8])
    assert EmbeddingSimilarity([[4.0, 3.0], [0.0, 1.0]])(output).tolist() == pytest.approx([0.96, 0.0])
    pooled = type("Output", (), {"pooler_output": output})()  # a Hugging Face-style output object
    assert EmbeddingSimilarity([4.0, 3.0])(pooled).tolist() == pytest.approx([0.96, 0.8])
    picked = EmbeddingSimilarity([1.0, 0.0], embedding=lambda out: out["emb"])
    assert picked({"emb": output}).tolist() == pytest.approx([0.6, 1.0])


def test_embedding_bad_inputs():
    with pytest.raises(ValueError, match="has 2 dimensions, the reference 3"):
        EmbeddingSimilarity([1.0, 0.0, 0.0])(torch.ones(1, 2))
    with pytest.raises(ValueError, match="non-zero"):
        EmbeddingSimilarity([0.0, 0.0])
    with pytest.raises(TypeError, match="pass embedding="):
        EmbeddingSimilarity([1.0, 0.0])({"a": torch.ones(1, 2)})


class _TinySegmenter(nn.Module):
    """conv -> ReLU -> 1x1 conv head: per-pixel logits of 3 classes; returns torchvision's dict."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(self.body(x))}


def test_explain_with_a_segmentation_target_matches_the_closed_form():
    """At the head's input A, S = Σ_ij m_ij (W_c · A_ij + b_c), so G_k = W_ck · m (exact): Grad-CAM's
    weights are W_ck · mean(m), and the raw map Σ_k W_ck mean(m) A_k."""
    torch.manual_seed(0)
    model = _TinySegmenter().eval()
    x = torch.randn(2, 3, 6, 6)
    mask = torch.zeros(6, 6)
    mask[1:4, 2:5] = 1.0
    res = xw.explain(model, x, "body", method="gradcam", target=SegmentationTarget(2, mask))
    with torch.no_grad():
        A = model.body(x)
        W, b = model.head.weight[2, :, 0, 0], model.head.bias[2]
        expected_score = ((torch.einsum("k,bkhw->bhw", W, A) + b) * mask).sum(dim=(1, 2))
    assert torch.allclose(res.score, expected_score, atol=1e-5)
    assert torch.allclose(res.weights, (W * mask.mean()).expand(2, -1), atol=1e-6)
    assert torch.allclose(res.raw, torch.einsum("k,bkhw->bhw", W * mask.mean(), A), atol=1e-5)


def test_custom_output_target_subclass_gets_rows_of():
    seen = []

    class Probe(OutputTarget):
        def __call__(self, output, rows_of=None):
            seen.append(rows_of)
            return output[:, 0]

    scorer = make_scorer(Probe(), torch.zeros(2, 3))
    scorer(torch.zeros(4, 3), 1)
    assert seen == [1]
