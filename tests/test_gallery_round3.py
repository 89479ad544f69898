"""Issue 25 in the Gallery: huge, infinite and NaN metric values (11), the runner's checks in the
constructor and a true status (12), export paths (13), sorting / filtering / paging from code in
step with the menus (15), the user's own columns (16), and one tile where Grad-CAM = XGrad-CAM (17)."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch
from test_gallery_widget import GatedShapes, wait_until
from torch import nn

import xcam_widgets as xw
from xcam_widgets.evaluation import EvaluationResult, evaluate, read_table, run_paths
from xcam_widgets.gallery import GalleryTable, distribution
from xcam_widgets.widgets.gallery import Gallery

EARLIER = dict(methods=["gradcam", "xgradcam"], metrics=["energy", "pointing"], batch_size=6, progress=False)


def shown_rows(gallery: Gallery) -> list[int]:
    return [tile.row for tile in gallery.tiles if tile.row is not None]


@pytest.fixture(scope="module")
def bundle() -> xw.ModelBundle:
    return xw.load_model("shapes_gap", device="cpu")


@pytest.fixture(scope="module")
def earlier(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "results.csv"
    return evaluate(bundle, "shapes:12", out=out, **EARLIER), out


def huge(result: EvaluationResult) -> EvaluationResult:
    """`result` with energy ±1e308, ±inf and NaN in five rows."""
    table = result.table.copy()
    table.loc[0:4, "energy"] = [1e308, -1e308, np.inf, -np.inf, np.nan]
    return EvaluationResult(table, result.summary, result.maps, result.meta, result.complete)


# --- 11: huge, infinite and NaN values ---------------------------------------------------------------
def test_bins_span_the_ordinary_values_and_count_the_rest():
    frame = pd.DataFrame(
        {"row": range(8), "method": ["a"] * 8, "v": [0.0, 0.25, 0.5, 0.75, 1.0, 1e308, -np.inf, np.nan]}
    )
    dist = distribution(GalleryTable(frame).select(), "v", bins=4)
    np.testing.assert_array_equal(dist.edges, [0.0, 0.25, 0.5, 0.75, 1.0])  # by hand: the five ordinary values
    np.testing.assert_array_equal(dist.counts, [[1, 1, 1, 2]])  # np.histogram's last bin is closed
    assert (dist.below.tolist(), dist.above.tolist(), dist.missing.tolist()) == ([1], [1], [1])
    assert dist.outside == "1 below the bins, 1 above the bins, 1 missing (NaN)"


def test_bins_over_the_whole_float_range_stay_finite():
    frame = pd.DataFrame({"row": range(4), "method": ["a"] * 4, "v": [-1e308, -1e308, 1e308, 1e308]})
    dist = distribution(GalleryTable(frame).select(), "v", bins=2)
    np.testing.assert_array_equal(dist.edges, [-1e308, 0.0, 1e308])  # the IQR overflows: every value is binned
    np.testing.assert_array_equal(dist.counts, [[2, 2]])


def test_a_gallery_opens_on_huge_values_and_filters_them(bundle, earlier):
    gallery = Gallery(bundle, huge(earlier[0]), metric="energy")
    try:
        title = gallery.distribution.layout.title.text
        assert "not in the bins: 2 below the bins, 2 above the bins, 1 missing (NaN)" in title
        xs = [x for trace in gallery.distribution.data for x in trace.x]
        assert all(np.isfinite(xs)) and max(xs) <= 1.0  # energy lies in [0, 1]
        gallery.sort("energy", descending=True)
        assert shown_rows(gallery)[:2] == [2, 0]  # +inf, then 1e308; NaN last
        assert shown_rows(gallery)[-1] == 4
        gallery.filter(range=("energy", 1e300, None))
        assert shown_rows(gallery) == [2, 0]
        assert gallery.controls.low.value == "1e+300" and gallery.status.value == ""
    finally:
        gallery.close()


# --- 12: the runner's checks in the constructor, and a true status ------------------------------------
def test_a_conflicting_or_unwritable_out_fails_in_the_constructor(bundle, tmp_path):
    taken = tmp_path / "taken.csv"
    taken.write_text("row\n0\n")  # another file, no parts to resume from
    blocker = tmp_path / "file"
    blocker.write_text("")
    threads = threading.active_count()
    with pytest.raises(FileExistsError, match="exists and has no taken.parts/"):
        Gallery(bundle, "shapes:4", methods=["gradcam"], metrics=["energy"], out=taken)
    with pytest.raises(OSError, match="cannot be written"):
        Gallery(bundle, "shapes:4", methods=["gradcam"], metrics=["energy"], out=blocker / "results.csv")
    assert threading.active_count() == threads and taken.read_text() == "row\n0\n"


def test_a_second_gallery_on_a_running_out_fails_in_the_constructor(bundle, tmp_path):
    """The runner's lock on `out` (issue 25, item 1) reaches the second Gallery's constructor."""
    data = GatedShapes(8, gate_at=4)
    first = Gallery(bundle, data, methods=["gradcam"], metrics=["average_drop"], batch_size=4, out=tmp_path / "r.csv")
    try:
        wait_until(lambda: first.progress.value == 4)
        threads = threading.active_count()
        with pytest.raises(Exception, match="is being written by another run"):
            Gallery(bundle, GatedShapes(8), methods=["gradcam"], metrics=["average_drop"], out=tmp_path / "r.csv")
        assert threading.active_count() == threads
        data.gate.set()
        first.wait()
        assert first.run.state == "done" and len(first.table) == 8
    finally:
        data.gate.set()
        first.close()


def test_a_detector_is_refused_in_the_constructor():
    with pytest.raises(ValueError, match="is a detector"):
        Gallery(xw.load_model("shapes_det", device="cpu"), "shapes:2")


class FailsOnBatches(nn.Module):
    """The shapes net, failing on more than one image at once: the checks pass (they run one image,
    if any), and the first batch fails."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > 1:
            raise RuntimeError("simulated: out of memory")
        return self.net(x)


def test_the_status_says_when_no_row_was_computed(bundle):
    model = FailsOnBatches(bundle.model)
    failing = xw.ModelBundle("fails", model, bundle.preprocess, bundle.categories, 64, cam_layer="net.features.block4")
    gallery = Gallery(failing, "shapes:4", methods=["gradcam"], metrics=["energy"], batch_size=4, background=False)
    try:
        assert gallery.run.state == "failed" and len(gallery.table) == 0
        assert "simulated: out of memory" in gallery.status.value
        assert "the run stopped after 0 of 4 images; it computed no row" in gallery.status.value
        assert "rows so far stay" not in gallery.status.value
    finally:
        gallery.close()


# --- 13: export paths -----------------------------------------------------------------------------
def test_export_paths_keep_what_the_user_gave(bundle, earlier, tmp_path):
    result, out = earlier
    gallery = Gallery(bundle, out)
    try:
        assert gallery.export_csv(tmp_path / "run.v2") == tmp_path / "run.v2.csv"
        assert gallery.export_csv(tmp_path / "run.v3") == tmp_path / "run.v3.csv"
        assert gallery.export_csv(tmp_path / "named.csv") == tmp_path / "named.csv"
        (tmp_path / "exp").mkdir()
        assert gallery.export_csv(f"{tmp_path}/exp/") == tmp_path / "exp" / "gallery_selection.csv"
        assert gallery.export_sheet(tmp_path / "exp", format="html") == tmp_path / "exp" / "gallery_selection.html"
        assert not (tmp_path / "exp.csv").exists() and not (tmp_path / "run.csv").exists()
        pd.testing.assert_frame_equal(read_table(tmp_path / "run.v3.csv"), result.table, check_dtype=False)
        gallery.export.path.value = "  "
        gallery.export.csv.click()
        assert "ValueError" in gallery.status.value and "the export path is empty" in gallery.status.value
        with pytest.raises(ValueError, match="the export path is empty"):
            gallery.export_sheet("")
    finally:
        gallery.close()


def test_exports_refuse_to_overwrite_and_never_touch_the_runs_files(bundle, earlier, tmp_path):
    _, out = earlier
    paths = run_paths(out)
    before = {path: path.read_bytes() for path in (paths.table, paths.summary, paths.meta)}
    gallery = Gallery(bundle, out)
    try:
        first = gallery.export_csv(tmp_path / "sel.csv")
        gallery.sort("energy")
        with pytest.raises(FileExistsError, match="pass overwrite=True"):
            gallery.export_csv(first)
        assert read_table(first)["row"].tolist() == list(range(24))  # unchanged
        gallery.export_csv(first, overwrite=True)
        assert read_table(first)["row"].tolist() == shown_rows(gallery)
        for own in (out, paths.summary, paths.parts, paths.parts / "x.csv"):
            with pytest.raises(PermissionError, match="one of the run's own files"):
                gallery.export_csv(own, overwrite=True)
        gallery.export.overwrite.value = True
        gallery.export.path.value = str(out)
        gallery.export.csv.click()
        assert "PermissionError" in gallery.status.value
    finally:
        gallery.close()
    assert {path: path.read_bytes() for path in before} == before
