"""xcam_widgets.evaluation under bad input (issue 17, items 4, 5, 6 and 12): corrupt images, runs
cut short, files named twice, `out` checked first, devices that are not there, paths that look like specs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_result, run_paths
from xcam_widgets.evaluation import local as local_engine
from xcam_widgets.evaluation.parts import decode_part
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes

LAYER = nets.CAM_LAYER
KWARGS = dict(methods=["gradcam"], layers=LAYER, metrics=["deletion"], steps=2, batch_size=2, progress=False)
VALUES = ["score", "deletion", "predicted", "confidence"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(random_shapes_vgg: xw.ModelBundle) -> xw.ModelBundle:
    return random_shapes_vgg


def write_pngs(folder, n: int, seed: int = 5) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(make_shapes(n, seed=seed).images):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


class CountingBatches:
    """Wraps the local engine's `evaluate_batch`: records each batch's positions; raises
    KeyboardInterrupt on call number `at` (1-based), as Ctrl-C would."""

    def __init__(self, monkeypatch, at: int | None = None):
        self.positions: list[int] = []
        self.calls, self.at = 0, at
        self.original = local_engine.evaluate_batch
        monkeypatch.setattr(local_engine, "evaluate_batch", self)

    def __call__(self, bundle, batch, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.positions += [f.position for f in batch.failures] + list(batch.positions)
        return self.original(bundle, batch, *args, **kwargs)


# --- item 4: a bad image is a row, not the end of the run -----------------------------------------


@pytest.fixture
def folder_with_a_corrupt_image(tmp_path):
    folder = tmp_path / "imgs"
    write_pngs(folder, 4)
    (folder / "img1b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then garbage
    return folder


def test_a_corrupt_image_becomes_rows_with_an_error_and_the_rest_go_on(bundle, folder_with_a_corrupt_image, tmp_path):
    folder = folder_with_a_corrupt_image
    table, summary = result = evaluate(bundle, folder, **KWARGS)
    assert table["image"].tolist() == ["img0.png", "img1.png", "img1b.png", "img2.png", "img3.png"]
    bad = table[table["image"] == "img1b.png"].iloc[0]
    assert "img1b.png" in bad["error"] and bad["class"] == -1 and bad["predicted"] == -1
    assert pd.isna(bad["score"]) and pd.isna(bad["deletion"])
    assert bad["row"] not in result.maps and len(result.maps) == 4
    # The other rows are those of a run without the corrupt file.
    clean = tmp_path / "clean"
    write_pngs(clean, 4)
    expected, _ = evaluate(bundle, clean, **KWARGS)
    good = table[table["error"] == ""].reset_index(drop=True)
    pd.testing.assert_frame_equal(good[["image", *VALUES]], expected[["image", *VALUES]], rtol=1e-5)
    # The summary counts the failure: 1 of 5 rows, and the means are over the 4 others.
    by_metric = summary.set_index("metric")
    assert by_metric.loc["error", "n"] == 5 and by_metric.loc["error", "mean"] == pytest.approx(0.2)
    assert by_metric.loc["deletion", "n"] == 4
    assert by_metric.loc["deletion", "mean"] == pytest.approx(expected["deletion"].mean())


def test_strict_stops_at_the_first_bad_image(bundle, folder_with_a_corrupt_image):
    with pytest.raises(ValueError, match=r"img1b\.png"):
        evaluate(bundle, folder_with_a_corrupt_image, strict=True, **KWARGS)


def test_an_interrupted_local_run_keeps_its_batches_and_resumes(bundle, tmp_path, monkeypatch):
    out = tmp_path / "run" / "results.csv"
    expected, _ = evaluate(bundle, "shapes:7", **KWARGS)
    counter = CountingBatches(monkeypatch, at=3)  # Ctrl-C during the third batch
    with pytest.raises(KeyboardInterrupt):
        evaluate(bundle, "shapes:7", out=out, **KWARGS)
    parts = sorted(run_paths(out).parts.glob("batch-*.npz"))
    assert [decode_part(p).positions for p in parts] == [[0, 1], [2, 3]] and not out.exists()
    monkeypatch.undo()
    counter = CountingBatches(monkeypatch)
    table, _ = evaluate(bundle, "shapes:7", out=out, **KWARGS)
    assert counter.positions == [4, 5, 6]  # only what the first run had not finished
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(open_result(out).table, expected)


# --- item 5: rows are keyed by position ------------------------------------------------------------


def test_a_file_named_twice_gets_rows_for_each_position(bundle, tmp_path):
    names = write_pngs(tmp_path, 2)
    files = [str(tmp_path / names[0]), str(tmp_path / names[1]), str(tmp_path / names[0])]
    table, _ = result = evaluate(bundle, files, **KWARGS)
    assert table["image"].tolist() == files and table["row"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(
        table.loc[[0], VALUES].reset_index(drop=True), table.loc[[2], VALUES].reset_index(drop=True)
    )
    assert sorted(result.maps) == [0, 1, 2]


# --- item 6: `out` is checked before the first batch; overwriting is asked for ---------------------


def test_an_unusable_out_fails_before_any_batch(bundle, tmp_path, monkeypatch):
    counter = CountingBatches(monkeypatch)
    (tmp_path / "results.csv").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        evaluate(bundle, "shapes:3", out=tmp_path / "results.csv", **KWARGS)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match="cannot be written"):
        evaluate(bundle, "shapes:3", out=tmp_path / "a_file" / "results.csv", **KWARGS)
    assert counter.calls == 0


def test_an_existing_out_is_resumed_replaced_with_overwrite_or_refused(bundle, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    first, _ = evaluate(bundle, "shapes:3", out=out, **KWARGS)
    counter = CountingBatches(monkeypatch)
    again, _ = evaluate(bundle, "shapes:3", out=out, **KWARGS)  # the same evaluation: read back, nothing computed
    assert counter.calls == 0
    pd.testing.assert_frame_equal(again, first)
    other = {**KWARGS, "methods": ["xgradcam"]}
    with pytest.raises(ValueError, match="another evaluation.*methods.*overwrite=True"):
        evaluate(bundle, "shapes:3", out=out, **other)
    assert set(pd.read_csv(out)["method"]) == {"gradcam"}  # still there
    replaced, _ = evaluate(bundle, "shapes:3", out=out, overwrite=True, **other)
    assert set(pd.read_csv(out)["method"]) == {"xgradcam"} and counter.calls == 2
    assert {row["method"] for p in run_paths(out).parts.glob("batch-*.npz") for row in decode_part(p).rows} == {
        "xgradcam"
    }  # the old parts went first
    # A table that no resumable run wrote is not overwritten silently.
    lone = tmp_path / "lone.csv"
    lone.write_text("a,b\n1,2\n")
    with pytest.raises(FileExistsError, match="overwrite"):
        evaluate(bundle, "shapes:3", out=lone, **KWARGS)
    assert lone.read_text() == "a,b\n1,2\n"


# --- item 12: a device that is not there, a folder that looks like a spec ---------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(bundle):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        evaluate(bundle, "shapes:2", device="cuda", **KWARGS)
    assert next(bundle.model.parameters()).device.type == "cpu"


def test_an_existing_folder_wins_over_the_shapes_spec(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pngs(tmp_path / "shapes_data", 2)
    write_pngs(tmp_path / "shapes:3", 2)  # a folder whose name is a valid spec
    for name in ("shapes_data", "shapes:3"):
        table, _ = evaluate(bundle, name, **KWARGS)
        assert table["image"].tolist() == ["img0.png", "img1.png"], name
    with pytest.raises(ValueError, match="neither 'shapes:N', a folder nor an image file"):
        evaluate(bundle, "shapes_nowhere", **KWARGS)
