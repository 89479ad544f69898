"""The Explorer with a segmentation model and a detector (issue 16): the menus list what the prediction
holds, a click on the image picks the region or the box under it, the outline or the boxes are drawn,
and the map shown is exactly `xw.explain`'s for the equivalent ready-made target."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import xcam_widgets as xw
from xcam_widgets.regions import outline_path
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.targets import DetectionTarget, SegmentationTarget
from xcam_widgets.views import low_res_map
from xcam_widgets.widgets.explorer import Explorer
from xcam_widgets.widgets.figures import quantized

LAYER = "features.block4"
DATA = make_shapes(4, seed=5, pair_fraction=1.0)  # two shapes per image


def image(i: int = 1) -> torch.Tensor:
    return nets.preprocess(DATA.images[i])


def click(explorer: Explorer, x: float, y: float) -> None:
    """What the page sends when the image is clicked at pixel (x, y)."""
    explorer._on_click(explorer.overlay.data[0], SimpleNamespace(xs=[x], ys=[y], point_inds=[0]), None)


def centre(mask: torch.Tensor) -> tuple[int, int]:
    """(x, y) of a pixel of the mask nearest its centroid (inside the shape even for a ring)."""
    rows, cols = mask.nonzero(as_tuple=True)
    i = int(((rows - rows.float().mean()) ** 2 + (cols - cols.float().mean()) ** 2).argmin())
    return int(cols[i]), int(rows[i])


def shown(explorer: Explorer) -> np.ndarray:
    return np.asarray(explorer.overlay.data[-1].z)


def expected(model, x, target, method: str = "gradcam") -> np.ndarray:
    return quantized(low_res_map(xw.explain(model, x[None], LAYER, method=method, target=target).raw))


@pytest.fixture(scope="module")
def seg():
    return xw.load_model("shapes_seg")


@pytest.fixture(scope="module")
def det():
    return xw.load_model("shapes_det")


def test_segmentation_menu_lists_predicted_classes_and_shows_their_map(seg):
    explorer = Explorer(seg, image(), background=False)
    explorer.method.value = "gradcam"
    explorer.wait()
    true = {int(c) for c in DATA.labels[1]}
    keys = [key for _, key in explorer.target.options]
    assert explorer.target.description == "segment" and explorer.search.layout.display == "none"
    assert {key[1] for key in keys} >= true and all(key[0] == "segment" for key in keys)
    category = explorer.target.value[1]
    assert category in true  # the largest shape, not the background
    np.testing.assert_array_equal(shown(explorer), expected(seg.model, image(), SegmentationTarget(category)))
    predicted = seg.model(image()[None])[0].argmax(0) == category
    paths = [shape.path for shape in explorer.overlay.layout.shapes]
    assert paths == [outline_path(predicted.numpy(), (64, 64))] * 2  # black under white
    explorer.close()


def test_segmentation_click_picks_the_connected_region_under_the_cursor(seg):
    explorer = Explorer(seg, image(), background=False)
    explorer.method.value = "gradcam"
    label = int(DATA.labels[1][1])
    x, y = centre(DATA.masks[1, label])
    click(explorer, x, y)
    explorer.wait()
    key = explorer.target.value
    assert key[:2] == ("region", label) and key in [value for _, value in explorer.compare_target.options]
    predicted = seg.model(image()[None])[0].argmax(0)
    region = explorer.session.target_mask(key)
    true = DATA.masks[1, label].numpy()
    assert region[y, x] and (region & true).sum() / (region | true).sum() > 0.8
    # the connected pixels only, never more than every pixel predicted as the class
    assert region.sum() <= int((predicted == label).sum())
    target = SegmentationTarget(label, mask=torch.from_numpy(region))
    np.testing.assert_array_equal(shown(explorer), expected(seg.model, image(), target))
    assert explorer.overlay.layout.shapes[1].path == outline_path(region, (64, 64))
    assert explorer.session.stats["forward"] == 1  # a new region costs a backward pass, not a forward pass
    explorer.close()


def test_detection_boxes_drawn_and_a_click_on_a_box_explains_that_detection(det):
    explorer = Explorer(det, image(), background=False)
    assert explorer.method.value == "hirescam"  # the default for a detector: it keeps the target's locality
    explorer.wait()
    assert explorer.target.description == "detection"
    with torch.no_grad():
        found = det.model(image()[None])[0]
    assert len(explorer.target.options) == len(found["scores"]) == 2
    rects = [shape for shape in explorer.overlay.layout.shapes if shape.type == "rect"]
    drawn = torch.tensor([[r.x0 + 0.5, r.y0 + 0.5, r.x1 + 0.5, r.y1 + 0.5] for r in rects])
    assert (box_iou(drawn, found["boxes"]).max(1).values > 0.99).all()  # drawn as listed, to 0.1 pixel
    assert sum(r.line.color == "#ff2020" for r in rects) == 1  # the selected detection
    first = explorer.target.value
    other = next(key for _, key in explorer.target.options if key != first)
    x1, y1, x2, y2 = found["boxes"][other[1]].tolist()
    click(explorer, (x1 + x2) / 2, (y1 + y2) / 2)
    explorer.wait()
    assert explorer.target.value == other
    target = DetectionTarget(found["boxes"][other[1]], int(found["labels"][other[1]]))
    np.testing.assert_array_equal(shown(explorer), expected(det.model, image(), target, "hirescam"))
    assert shown(explorer).max() == 255
    click(explorer, 0, 0)  # off every box: nothing changes
    assert explorer.target.value == other and explorer.status.value == ""
    explorer.close()


def test_detector_that_finds_nothing_says_so_in_the_widget(det):
    blank = nets.preprocess(torch.full((3, 64, 64), 0.5))
    explorer = Explorer(det, blank, background=False)
    explorer.wait()
    assert list(explorer.target.options) == []
    assert "found nothing" in explorer.status.value
    explorer.close()


def test_classifier_ignores_clicks(seg):
    explorer = Explorer(xw.load_model("shapes_gap"), image(), background=False)
    explorer.wait()
    before = explorer.target.value
    click(explorer, 30, 30)
    assert explorer.target.value == before and explorer.overlay.layout.shapes == ()
    explorer.close()


def test_sanity_tab_runs_the_cascade_for_a_segment_and_skips_the_random_logit_test(seg):
    """A segment is not a class index, so the random-logit test (other classes) does not apply; the cascade
    equals a direct `sanity_check` with the equivalent `SegmentationTarget`."""
    explorer = Explorer(seg, image(), background=False)
    key = explorer.target.value
    view = explorer.session.sanity(LAYER, ["gradcam"], key)
    direct = xw.sanity_check(
        seg.model, image()[None], LAYER, ["gradcam"], SegmentationTarget(key[1]), ("cascading",), steps="tail"
    )
    cascade = sorted((r for r in direct.rows if r["check"] == "cascading"), key=lambda r: r["step"])
    (strip,) = view.strips
    assert strip.random_logit is None and strip.random_maps == () and strip.passes_random_logit is None
    assert strip.similarity["spearman"] == pytest.approx([r["spearman"] for r in cascade], abs=1e-12)
    assert len(strip.steps) == len(cascade) > 1
    explorer.close()


def test_a_new_image_drops_the_old_regions_and_outline(seg):
    explorer = Explorer(seg, image(1), background=False)
    x, y = centre(DATA.masks[1, int(DATA.labels[1][1])])
    click(explorer, x, y)
    explorer.wait()
    assert any(key[0] == "region" for _, key in explorer.target.options)
    explorer._set_image(image(2))
    explorer.wait()
    keys = [key for _, key in explorer.target.options]
    assert all(key[0] == "segment" for key in keys) and explorer.target.value in keys
    predicted = seg.model(image(2)[None])[0].argmax(0) == explorer.target.value[1]
    assert explorer.overlay.layout.shapes[1].path == outline_path(predicted.numpy(), (64, 64))
    explorer.close()


def test_hirescam_keeps_a_detection_local_where_xgradcam_spreads_it(det):
    """Why the Explorer opens a detector with HiResCAM: on 6 two-shape images, the share of the displayed
    map inside the explained detection's box (benchmarks/task_localisation.py measures 81 detections)."""
    data = make_shapes(6, seed=5, pair_fraction=1.0)
    shares: dict[str, list[float]] = {"hirescam": [], "xgradcam": []}
    for i in range(6):
        x = nets.preprocess(data.images[i])[None]
        with torch.no_grad():
            output = det.model(x)
        for index, box in enumerate(output[0]["boxes"].tolist()):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            target = DetectionTarget(output[0]["boxes"][index], int(output[0]["labels"][index]))
            for method, found in shares.items():
                shown = xw.explain(det.model, x, LAYER, method=method, target=target).map[0]
                found.append(float(shown[y1:y2, x1:x2].sum() / shown.sum()))
    assert np.median(shares["hirescam"]) > 0.9 and np.median(shares["xgradcam"]) < 0.5
