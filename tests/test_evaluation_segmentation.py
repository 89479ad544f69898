"""The runner with `target="segmentation"`: each image's label explained with `SegmentationTarget`
on `shapes_seg`, scored by the pointing game and energy in the shape's mask."""

import math

import pytest
from PIL import Image

import xcam_widgets as xw
from xcam_widgets import metrics as M
from xcam_widgets.evaluation import evaluate
from xcam_widgets.evaluation.arguments import chosen_metrics
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.constants import HELDOUT_SEED, SEG_MODEL
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.targets import SegmentationTarget

N = 4
METHODS = ["gradcam", "xgradcam"]


@pytest.fixture(scope="module")
def bundle():
    return xw.load_model(SEG_MODEL, device="cpu")


def test_rows_equal_a_direct_explain_and_metrics(bundle, tmp_path):
    table, _ = evaluate(
        bundle,
        f"shapes:{N}",
        METHODS,
        target="segmentation",
        metrics=["pointing", "energy"],
        progress=False,
        out=tmp_path / "seg.csv",
    )
    assert len(table) == N * len(METHODS)
    data = make_shapes(N, seed=HELDOUT_SEED)
    x = nets.preprocess(data.images)
    for i in range(N):
        c = int(data.labels[i, 0])
        mask = data.masks[i, c][None]
        for m, method in enumerate(METHODS):
            row = table.iloc[i * len(METHODS) + m]  # the row key: image-major, then method
            assert (row["method"], row["layer"], row["class"], row["label"]) == (method, nets.CAM_LAYER, c, c)
            assert row["class_name"] == bundle.categories[c] and row["error"] == ""
            assert math.isnan(row["confidence"]) and math.isnan(row["correct"])
            result = xw.explain(bundle.model, x[i : i + 1], nets.CAM_LAYER, method, target=SegmentationTarget(c))
            assert row["score"] == pytest.approx(float(result.score[0]), rel=1e-5)
            assert row["energy"] == pytest.approx(float(M.energy_in_mask(result.map, mask)[0]), abs=1e-6)
            assert bool(row["pointing"]) == bool(M.pointing_game(result.map, mask)[0])
    assert table["energy"].mean() > 0.5 and table["pointing"].mean() >= 0.75


def test_segmentation_defaults_to_the_localisation_metrics_and_refuses_classifier_ones():
    assert chosen_metrics(None, True, "segmentation") == ("pointing", "energy")
    with pytest.raises(ValueError, match=r"average_drop.*deletion.*only \['pointing', 'energy'\]"):
        chosen_metrics(["average_drop", "deletion", "energy"], True, "segmentation")


def test_batch_refuses_classifier_metrics_for_segmentation(bundle):
    with pytest.raises(ValueError, match="insertion"):
        evaluate(bundle, "shapes:1", "gradcam", target="segmentation", metrics=["insertion"], progress=False)


def test_a_segmentation_model_without_the_segmentation_target_is_refused(bundle):
    with pytest.raises(ValueError, match="target='segmentation'"):
        evaluate(bundle, "shapes:1", "gradcam", metrics=["energy"], progress=False)


def test_segmentation_needs_labels(bundle, tmp_path):
    path = tmp_path / "unlabelled.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path)
    with pytest.raises(ValueError, match="target='segmentation' needs images with labels"):
        evaluate(bundle, str(path), "gradcam", target="segmentation", progress=False)
