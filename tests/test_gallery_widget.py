"""xcam_widgets.widgets.gallery without a browser: rows arrive batch by batch, cancel keeps them,
sorting and filtering show what pandas computes from the table (and run nothing), a thumbnail
opens an Explorer on its row with the same model object, an earlier run reopens without running
the model, exports hold the selection, a corrupt image is an error row, bad arguments raise
clearly, and the background run stops on close and at interpreter exit."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_images, read_table, run_paths
from xcam_widgets.gallery import DisplayImages, ThumbnailStyle, caption_lines, encode, thumbnail
from xcam_widgets.gallery.display import _reduced
from xcam_widgets.gallery.sheet import CELL_GAP
from xcam_widgets.gallery.thumbnails import downsized
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.widgets.gallery import Gallery

RUN = dict(methods=["gradcam"], metrics=["average_drop"], batch_size=4)
EARLIER = dict(methods=["gradcam", "xgradcam"], metrics=["energy", "pointing"], batch_size=6, progress=False)


class GatedShapes(Dataset):
    """Shapes images as a Dataset of (image, label); items from `gate_at` on wait for `gate`."""

    def __init__(self, n: int, gate_at: int | None = None) -> None:
        self.data = make_shapes(n, seed=7)
        self.gate_at = n if gate_at is None else gate_at
        self.gate = threading.Event()
        self.waiting = threading.Event()  # set once a reader waits at the gate

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index >= self.gate_at:
            self.waiting.set()
            assert self.gate.wait(60), "the test never opened the gate"
        return self.data.images[index], int(self.data.labels[index, 0])


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def shown_rows(gallery: Gallery) -> list[int]:
    return [tile.row for tile in gallery.tiles if tile.row is not None]


def forward_counter(model: torch.nn.Module) -> tuple[list[int], Callable[[], None]]:
    calls: list[int] = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls, handle.remove


@pytest.fixture(scope="module")
def bundle() -> xw.ModelBundle:
    return xw.load_model("shapes_gap", device="cpu")


@pytest.fixture(scope="module")
def reference(bundle) -> pd.DataFrame:
    """The runner's own table for the 12 gated images, run in the test's thread."""
    return evaluate(bundle, GatedShapes(12), progress=False, **RUN).table


@pytest.fixture(scope="module")
def earlier(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "results.csv"
    return evaluate(bundle, "shapes:12", out=out, **EARLIER), out


def test_rows_appear_batch_by_batch(bundle, reference):
    data = GatedShapes(12, gate_at=4)
    gallery = Gallery(bundle, data, **RUN)
    try:
        wait_until(lambda: gallery.progress_label.value == "4 / 12 images · running")  # drawn last
        assert gallery.progress.value == 4
        assert not gallery.cancel_button.disabled
        assert shown_rows(gallery) == [0, 1, 2, 3]  # the first batch's rows, before the rest exist
        assert all(len(t.image.value) > 0 for t in gallery.tiles[:4])
        data.gate.set()
        gallery.wait()
        assert gallery.progress_label.value == "12 / 12 images · done" and gallery.cancel_button.disabled
        pd.testing.assert_frame_equal(gallery.table.frame, reference)
        assert shown_rows(gallery) == list(range(12))
    finally:
        data.gate.set()
        gallery.close()


def test_cancel_keeps_the_rows_so_far(bundle, reference):
    data = GatedShapes(12, gate_at=4)
    gallery = Gallery(bundle, data, **RUN)
    try:
        wait_until(lambda: gallery.progress.value == 4)
        assert data.waiting.wait(60)  # the second batch has started
        gallery.cancel_button.click()
        assert gallery.status.value == "cancelling after the current batch…"
        data.gate.set()  # the running batch finishes, then the run stops
        gallery.wait()
        assert gallery.run.state == "cancelled" and gallery.progress_label.value == "8 / 12 images · cancelled"
        kept = reference[reference["image"] < 8].reset_index(drop=True)
        pd.testing.assert_frame_equal(gallery.table.frame, kept)
        assert sorted(gallery.maps) == kept["row"].tolist()
    finally:
        data.gate.set()
        gallery.close()


def test_sorting_shows_the_row_pandas_puts_first_and_runs_nothing(bundle, earlier):
    result, _ = earlier
    gallery = Gallery(bundle, result)
    calls, remove = forward_counter(bundle.model)
    try:
        assert shown_rows(gallery) == list(range(24))
        gallery.controls.sort_by.value = "energy"
        gallery.controls.descending.value = True
        table = result.table
        expected = table.sort_values(["energy", "row"], ascending=[False, True]).iloc[0]
        assert gallery.status.value == ""
        assert gallery.tiles[0].row == expected["row"] != 0
        image = make_shapes(12, seed=HELDOUT_SEED).images[int(expected["image"])]
        pixels = (image.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        want = encode(thumbnail(pixels, result.maps[int(expected["row"])], ThumbnailStyle()))
        assert gallery.tiles[0].image.value == want

        gallery.controls.methods.value = "xgradcam"
        gallery.controls.range_column.value = "energy"
        gallery.controls.low.value = "0.3"
        kept = table[(table["method"] == "xgradcam") & (table["energy"] >= 0.3)]
        kept = kept.sort_values(["energy", "row"], ascending=[False, True])
        assert 0 < len(kept) < 12
        assert shown_rows(gallery) == kept["row"].tolist()
        assert gallery.controls.page_label.value == f"page 1 / 1 · {len(kept)} of 24 rows"
        assert not calls  # sorting and filtering never run the model
    finally:
        remove()
        gallery.close()


def test_a_bad_control_value_is_shown_and_the_view_stays(bundle, earlier):
    gallery = Gallery(bundle, earlier[0], page_size=12)
    try:
        gallery.controls.range_column.value = "energy"  # [-inf, inf] keeps every (finite) row
        gallery.controls.next.click()
        before = shown_rows(gallery)
        assert before == list(range(12, 24))
        gallery.controls.low.value = "high"
        assert "the range&#x27;s min must be a number, got &#x27;high&#x27;" in gallery.status.value
        assert shown_rows(gallery) == before and gallery.view.page_index == 1
        gallery.controls.low.value = ""
        assert gallery.status.value == ""
        assert gallery.table.record(13) == earlier[0].table.iloc[13].to_dict()
        with pytest.raises(ValueError, match="row 99 is not in the table"):
            gallery.open_row(99)
    finally:
        gallery.close()


def test_clicking_a_thumbnail_opens_an_explorer_on_its_row(bundle, earlier):
    _, out = earlier
    gallery = Gallery(bundle, out)
    try:
        gallery.controls.sort_by.value = "energy"
        tile = gallery.tiles[0]
        record = read_table(out).sort_values(["energy", "row"]).iloc[0]
        assert tile.row == record["row"]
        tile.button.click()
        explorer = gallery.explorer
        assert explorer is not None and gallery.explorer_row == record["row"]
        explorer.wait()
        assert explorer.session.model is gallery.model is bundle.model
        assert (explorer.layer.value, explorer.method.value, explorer.target.value) == (
            record["layer"],
            record["method"],
            record["class"],
        )
        assert explorer.shown_state == explorer.state and explorer.status.value == ""
        image = make_shapes(12, seed=HELDOUT_SEED).images[int(record["image"])]
        np.testing.assert_array_equal(
            explorer.session.display, (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        )
    finally:
        gallery.close()
    assert explorer.worker._closed  # closing the Gallery closes its Explorer


def test_reopening_a_csv_or_parts_folder_runs_nothing(bundle, earlier, tmp_path):
    result, out = earlier
    calls, remove = forward_counter(bundle.model)
    threads = threading.active_count()
    try:
        for source in (out, run_paths(out).parts):
            gallery = Gallery(bundle, source)
            assert gallery.run.state == "done" and threading.active_count() == threads
            pd.testing.assert_frame_equal(gallery.table.frame, result.table, check_dtype=False)
            assert shown_rows(gallery) == list(range(24))
            assert gallery.progress_label.value == "12 / 12 images · done"
            gallery.controls.sort_by.value = "pointing"
            gallery.export_sheet(tmp_path / "sheet.png", overwrite=True)
            gallery.close()
    finally:
        remove()
    assert not calls


def test_exports_hold_the_selection(bundle, earlier, tmp_path):
    result, _ = earlier
    gallery = Gallery(bundle, result, export_path=str(tmp_path / "picked"))
    try:
        gallery.controls.outcome.value = "correct"
        gallery.controls.sort_by.value = "confidence"
        gallery.export.csv.click()
        table = result.table
        want = table[table["correct"] == True].sort_values(["confidence", "row"])  # noqa: E712
        written = read_table(tmp_path / "picked.csv")
        pd.testing.assert_frame_equal(written, want.reset_index(drop=True), check_dtype=False)
        assert f"wrote {len(want)} rows to" in gallery.status.value

        png = gallery.export_sheet(limit=5)
        with Image.open(png) as sheet:
            assert sheet.format == "PNG" and sheet.width == 6 + 5 * (2 * 96 + CELL_GAP + 6)  # five photo+overlay cells
        page = gallery.export_sheet(format="html")
        text = page.read_text()
        assert page.suffix == ".html" and text.count("<figure>") == min(len(want), 200)
        assert f"#{want['row'].iloc[0]} " in text
    finally:
        gallery.close()


def test_a_corrupt_image_becomes_an_error_row(bundle, tmp_path):
    shapes = make_shapes(3, seed=3)
    for i in range(3):
        pixels = (shapes.images[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    (tmp_path / "1b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    gallery = Gallery(bundle, tmp_path, background=False, **RUN)
    try:
        frame = gallery.table.frame
        assert gallery.run.state == "done" and len(frame) == 4
        broken = frame[frame["image"] == "1b_broken.png"]
        assert len(broken) == 1 and "corrupt" in broken["error"].iloc[0]
        gallery.controls.errors.value = "only"
        assert shown_rows(gallery) == broken["row"].tolist()
        assert "color:#b00" in gallery.tiles[0].caption.value and "error:" in gallery.tiles[0].caption.value
        gallery.tiles[0].button.click()
        assert "has no map: its image could not be read" in gallery.status.value and gallery.explorer is None
        gallery.controls.errors.value = "none"
        assert len(shown_rows(gallery)) == 3
    finally:
        gallery.close()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(images="shapes:4", methods=["nope"]), ValueError, "unknown method 'nope'"),
        (dict(images=42), TypeError, "images must be 'shapes:N'"),
        (dict(images="shapes:4", page_size=0), ValueError, "page_size must be a positive int, got 0"),
        (dict(images="shapes:4", metric="method"), ValueError, "metric 'method' is not a value column"),
        (dict(images="shapes:4", colormap="nope"), ValueError, "unknown colormap 'nope'"),
        (dict(images="shapes:4", stride=2), TypeError, r"unknown argument\(s\) \['stride'\]"),
        (dict(images="shapes:4", display_images="shapes:4"), ValueError, "display_images is for a reopened run"),
    ],
)
def test_bad_arguments_get_clear_errors(bundle, kwargs, error, message):
    threads = threading.active_count()
    with pytest.raises(error, match=message):
        Gallery(bundle, **kwargs)
    assert threading.active_count() == threads  # a run started before the check failed was stopped


def test_a_reopened_run_refuses_new_run_arguments(bundle, earlier):
    with pytest.raises(ValueError, match=r"\['methods'\] set up a new run"):
        Gallery(bundle, earlier[1], methods=["gradcam"])


def test_closing_stops_the_background_run(bundle):
    gallery = Gallery(bundle, "shapes:400", methods=["gradcam"], metrics=["energy"], batch_size=2)
    wait_until(lambda: gallery.progress.value >= 2)
    gallery.close()
    assert gallery.run.join(0) and gallery.run.state == "cancelled"
    assert gallery.run.images_done < 400


def test_the_interpreter_exits_cleanly_while_a_run_is_in_progress():
    script = textwrap.dedent("""
        import time
        import xcam_widgets as xw
        from xcam_widgets.widgets.gallery import Gallery

        gallery = Gallery(xw.load_model("shapes_gap", device="cpu"), "shapes:400", methods=["gradcam"],
                          metrics=["energy"], batch_size=2)
        while gallery.run.images_done < 2:
            time.sleep(0.02)
        assert gallery.run.running
        print("exiting during the run", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "exiting during the run" in done.stdout and "terminate called" not in done.stderr


def test_thumbnail_pages_are_small(bundle, earlier):
    """24 JPEG thumbnails at 96 px (issue: aim <= 200 KB per page)."""
    gallery = Gallery(bundle, earlier[0])
    try:
        sizes = [len(tile.image.value) for tile in gallery.tiles]
        assert all(size > 0 for size in sizes) and sum(sizes) < 200_000
        with Image.open(io.BytesIO(gallery.tiles[0].image.value)) as first:
            assert first.format == "JPEG" and first.size == (96, 96)
    finally:
        gallery.close()


def test_display_images_decode_a_jpeg_at_reduced_scale_in_the_runners_frame(tmp_path):
    """A 1024-px JPEG for a 224-px input decodes at 1/4 scale (256 px), framed as the runner frames
    it; oracle: the source's own full-resolution `image_for_display`."""
    photo = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024))
    photo.save(tmp_path / "a.jpg", quality=95)
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "b.jpg", quality=95)
    preprocess = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    source = open_images(tmp_path, preprocess)
    assert _reduced(tmp_path / "b.jpg", (224, 224)).size == (256, 256)  # DCT scaling 1/4
    images = DisplayImages(source, 96)
    first, second = images("a.jpg"), images("b.jpg")
    assert first is not None and second is not None and second.shape == (96, 96, 3)
    np.testing.assert_array_equal(first, downsized(source.image_for_display("a.jpg"), 96))
    full = downsized(source.image_for_display("b.jpg"), 96).astype(float)
    assert np.abs(second - full).mean() < 4  # the same framing; only the decoding scale differs
    assert images("missing.jpg") is None and images("b.jpg") is second  # cached


def test_captions_name_the_classes():
    record = {
        "row": 3,
        "image": "x/y.png",
        "method": "gradcam",
        "layer": "l4",
        "label": 1,
        "predicted": 2,
        "energy": 0.25,
        "error": "",
    }
    assert caption_lines(record, "energy", ["circle", "square", "star"]) == (
        "#3 y.png",
        "gradcam l4",
        "label square -> pred star (wrong)",
        "energy 0.25",
    )
    assert caption_lines(record, "energy")[2] == "label 1 -> pred 2 (wrong)"
