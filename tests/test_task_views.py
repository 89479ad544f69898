"""`task_views`: what a prediction offers to explain, and the targets its keys name, on small hand-made outputs
whose shares, orders, regions and scores are counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xcam_widgets.session import Session
from xcam_widgets.targets import DetectionTarget, SegmentationTarget
from xcam_widgets.task_views import (
    MIN_DETECTION_SCORE,
    Choice,
    default_key,
    detection_at,
    detection_choices,
    key_mask,
    region_key,
    segment_choices,
    target_of,
    task_of,
)

# The argmax labels of the hand-made segmentation: class 1 (7 pixels, one region), class 2 (3 pixels, two
# regions: {(0, 3), (1, 3)}, last flat index 7, and {(2, 1)}, flat index 9), class 0 (2 pixels), class 3 absent.
LABELS = np.array(
    [
        [1, 1, 1, 2],
        [0, 1, 1, 2],
        [0, 2, 1, 1],
    ]
)
SEG_NAMES = ("cat", "background", "dog", "bird")


@pytest.fixture
def seg_logits() -> torch.Tensor:
    """`[1, 4, 3, 4]` logits whose argmax is LABELS: 5 on the label's channel plus noise in [0, 1)."""
    noise = torch.rand(1, 4, 3, 4, generator=torch.Generator().manual_seed(0))
    return noise + 5.0 * nn.functional.one_hot(torch.from_numpy(LABELS), 4).permute(2, 0, 1)[None]


DET_NAMES = ["__background__", "person", "car", "dog"]


@pytest.fixture
def detections() -> list[dict[str, torch.Tensor]]:
    """One image: a big box, a box inside it, a low-scoring box elsewhere, a small box inside the big one."""
    return [
        {
            "boxes": torch.tensor(
                [[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 5.0, 5.0], [20.0, 20.0, 30.0, 40.0], [1, 1, 3, 3]]
            ),
            "scores": torch.tensor([0.3, 0.9, 0.02, 0.5]),
            "labels": torch.tensor([1, 2, 3, 1]),
        }
    ]


def test_task_of_reads_the_output_form(seg_logits, detections):
    assert task_of(torch.randn(2, 5)) == "classification"
    assert task_of(seg_logits) == "segmentation"
    assert task_of({"out": seg_logits, "aux": seg_logits}) == "segmentation"  # torchvision's segmentation dict
    assert task_of(detections) == "detection"
    assert task_of([*detections, *detections]) == "detection"
    assert task_of([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}]) == "detection"


def test_segment_choices_give_the_pixel_shares_largest_first(seg_logits):
    choices = segment_choices(seg_logits, SEG_NAMES)
    assert [c.key for c in choices] == [("segment", 1), ("segment", 2), ("segment", 0)]  # class 3 is absent
    assert [c.name for c in choices] == ["background", "dog", "cat"]
    assert [c.value for c in choices] == pytest.approx([7 / 12, 3 / 12, 2 / 12])
    assert choices[1].label == "dog (25.0% of pixels)" and choices[1].box is None
    assert [c.key for c in segment_choices({"out": seg_logits}, SEG_NAMES)] == [c.key for c in choices]
    assert segment_choices(seg_logits, ["cat"])[1].name == "class 2"  # names too short: the index


def test_default_key_skips_the_background(seg_logits, detections):
    assert default_key("segmentation", seg_logits, SEG_NAMES) == ("segment", 2)  # background is larger
    assert default_key("segmentation", seg_logits, ("__background__", "a", "b", "c")) == ("segment", 1)
    assert default_key("segmentation", seg_logits, ("a", "b", "c", "d")) == ("segment", 1)
    only_background = torch.zeros(1, 4, 3, 4)
    only_background[:, 1] = 1.0
    assert default_key("segmentation", only_background, SEG_NAMES) == ("segment", 1)  # nothing else to show
    assert default_key("detection", detections, DET_NAMES) == ("detection", 1)
    with pytest.raises(ValueError, match="pass a class index"):
        default_key("classification", torch.randn(1, 5), SEG_NAMES)
    weak = [{**detections[0], "scores": torch.full((4,), MIN_DETECTION_SCORE / 2)}]
    with pytest.raises(ValueError, match="found nothing scoring at least 0.05"):
        default_key("detection", weak, DET_NAMES)


def test_detection_choices_best_first_above_the_cut_with_labels(detections):
    choices = detection_choices(detections, DET_NAMES)
    assert [c.key for c in choices] == [("detection", 1), ("detection", 3), ("detection", 0)]  # 0.02 is cut
    assert [c.name for c in choices] == ["car", "person", "person"]
    assert [c.value for c in choices] == pytest.approx([0.9, 0.5, 0.3])
    assert [c.box for c in choices] == [(2.0, 2.0, 5.0, 5.0), (1.0, 1.0, 3.0, 3.0), (0.0, 0.0, 10.0, 10.0)]
    assert choices[0].label == "#1 car 0.90 at [2, 2, 5, 5]"
    assert [c.key for c in detection_choices(detections, DET_NAMES, min_score=0.4)] == [
        ("detection", 1),
        ("detection", 3),
    ]
    everything = detection_choices(detections, DET_NAMES, min_score=0.0)
    assert [c.key[1] for c in everything] == [1, 3, 0, 2]
    assert everything[-1].name == "dog"
    assert detection_choices(detections, DET_NAMES[:2])[0].name == "class 2"
    tied = [{**detections[0], "scores": torch.tensor([0.5, 0.7, 0.5, 0.5])}]
    assert [c.key[1] for c in detection_choices(tied, DET_NAMES)] == [1, 0, 2, 3]  # ties keep their order


def test_detection_at_picks_the_smallest_box_holding_the_point(detections):
    choices = detection_choices(detections, DET_NAMES)
    assert detection_at(choices, 2.5, 2.5) == ("detection", 3)  # inside boxes 0, 1 and 3: 3 is the smallest
    assert detection_at(choices, 4.0, 4.5) == ("detection", 1)  # inside boxes 0 and 1
    assert detection_at(choices, 8.0, 8.0) == ("detection", 0)
    assert detection_at(choices, 25.0, 30.0) is None  # detection 2 scores under the cut: not listed
    assert detection_at(detection_choices(detections, DET_NAMES, min_score=0.0), 25.0, 30.0) == ("detection", 2)
    assert detection_at(choices, 15.0, 5.0) is None
    assert detection_at([Choice(("segment", 1), "x", "x", 1.0)], 0.0, 0.0) is None  # no boxes at all


def test_target_of_a_class_index_is_the_index(seg_logits):
    assert target_of(3, torch.randn(1, 5)) == 3


def hand_sum(logits: torch.Tensor, category: int, pixels: list[tuple[int, int]]) -> float:
    return sum(float(logits[0, category, r, c]) for r, c in pixels)


def test_segment_target_sums_the_class_logits_over_its_predicted_pixels(seg_logits):
    for category in range(3):
        target = target_of(("segment", category), seg_logits)
        assert isinstance(target, SegmentationTarget)
        pixels = list(zip(*np.nonzero(LABELS == category)))
        assert float(target(seg_logits)[0]) == pytest.approx(hand_sum(seg_logits, category, pixels), rel=1e-6)
        assert np.array_equal(key_mask(("segment", category), seg_logits), LABELS == category)


def test_region_keys_name_one_connected_region(seg_logits):
    assert region_key(seg_logits, 0, 3) == region_key(seg_logits, 1, 3) == ("region", 2, 7)
    assert region_key(seg_logits, 2, 1) == ("region", 2, 9)
    assert region_key(seg_logits, 2, 3) == region_key(seg_logits, 0, 0) == ("region", 1, 11)
    assert region_key({"out": seg_logits}, 1, 0) == ("region", 0, 8)
    for key, pixels in [(("region", 2, 7), [(0, 3), (1, 3)]), (("region", 2, 9), [(2, 1)])]:
        target = target_of(key, seg_logits)
        assert float(target(seg_logits)[0]) == pytest.approx(hand_sum(seg_logits, 2, pixels), rel=1e-6)
        expected = np.zeros(LABELS.shape, dtype=bool)
        expected[tuple(np.array(pixels).T)] = True
        assert np.array_equal(key_mask(key, seg_logits), expected)


def test_detection_key_scores_that_detection(detections):
    for index in range(4):
        target = target_of(("detection", index), detections)
        assert isinstance(target, DetectionTarget)
        assert float(target(detections)[0]) == float(detections[0]["scores"][index])
        assert key_mask(("detection", index), detections) is None
    assert key_mask(2, torch.randn(1, 5)) is None


@pytest.mark.xfail(
    strict=True,
    reason="task_views.target_of matches ('detection', i) by box and label, so of two detections with the same "
    "box and label it always explains the first: ('detection', 1) scores detection 0",
)
def test_detection_key_scores_that_detection_even_beside_a_duplicate_box():
    twins = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
            "scores": torch.tensor([0.9, 0.6]),
            "labels": torch.tensor([1, 1]),
        }
    ]
    assert float(target_of(("detection", 1), twins)(twins)[0]) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "key, message",
    [
        ("segment", "unknown target 'segment'"),
        ((), r"unknown target \(\)"),
        (None, "unknown target None"),
        (1.5, "unknown target 1.5"),
        (("segment",), r"unknown target \('segment',\): expected a class index, \('segment', class\)"),
        (("segment", 1, 2), "unknown target"),
        (("region", 2), "unknown target"),
        (("blob", 1), "unknown target"),
        (("detection",), "unknown target"),
        (("region", 2, 8), "no region of label 2 ends at flat index 8"),  # inside region 7, not its last pixel
        (("region", 3, 7), "no region of label 3 ends at flat index 7"),  # class 3 is predicted nowhere
        (("segment", -1), "category must be a class index >= 0"),
    ],
)
def test_bad_keys_are_value_errors_that_name_the_problem(seg_logits, key, message):
    with pytest.raises(ValueError, match=message):
        target_of(key, seg_logits)


def test_bad_detection_indices_and_out_of_range_segments(seg_logits, detections):
    for index in (4, -1):
        with pytest.raises(ValueError, match=f"detection {index} does not exist: this image has 4 detections"):
            target_of(("detection", index), detections)
    with pytest.raises(ValueError, match="category 9 is out of range: the model has 4 classes"):
        target_of(("segment", 9), seg_logits)(seg_logits)
    with pytest.raises(TypeError, match="list of dicts with keys"):  # a detection key on a segmentation output
        target_of(("detection", 0), seg_logits)


def test_a_numpy_integer_is_a_class_index():
    """Regression (found in review of bab64f2): np.argmax's result is a class index."""
    assert target_of(np.int64(2), torch.randn(1, 5)) == 2


def test_the_session_takes_a_numpy_class_index():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    session = Session(model, torch.rand(3, 8, 8))
    assert np.array_equal(session.low_res_map("1", "gradcam", np.int64(2)), session.low_res_map("1", "gradcam", 2))
