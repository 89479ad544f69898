"""xcam_widgets.cli: the `xcam evaluate` flags for bad images, existing outputs, devices and paths."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image

from xcam_widgets.cli import main
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes

BASE = [
    "evaluate",
    "--model",
    "shapes_gap",
    "--random-weights",
    "--methods",
    "gradcam",
    "--layers",
    nets.CAM_LAYER,
    "--metrics",
    "deletion",
    "--steps",
    "2",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_folder(folder, n: int = 2, corrupt: bool = False):
    folder.mkdir(parents=True)
    for i, image in enumerate(make_shapes(n, seed=5).images):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"img{i}.png")
    if corrupt:
        (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_bad_image_is_reported_and_strict_stops_at_it(tmp_path, capsys):
    folder = write_folder(tmp_path / "imgs", corrupt=True)
    status, out, _ = run([*BASE, "--images", str(folder), "--device", "cpu"], capsys)
    assert status == 0 and "1 of 3 image(s) could not be read" in out and "broken.png" in out
    status, _, err = run([*BASE, "--images", str(folder), "--device", "cpu", "--strict"], capsys)
    assert status == 2 and "broken.png" in err


def test_an_existing_out_needs_overwrite_for_another_evaluation(tmp_path, capsys):
    out = tmp_path / "results.csv"
    argv = [*BASE, "--images", "shapes:2", "--device", "cpu", "--out", str(out)]
    assert run(argv, capsys)[0] == 0
    assert run(argv, capsys)[0] == 0  # the same evaluation: resumed (nothing left to do)
    other = [*argv, "--methods", "xgradcam"]
    status, _, err = run(other, capsys)
    assert status == 2 and "--overwrite" in err and set(pd.read_csv(out)["method"]) == {"gradcam"}
    assert run([*other, "--overwrite"], capsys)[0] == 0
    assert set(pd.read_csv(out)["method"]) == {"xgradcam"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_exits_2_with_a_message(capsys):
    status, _, err = run([*BASE, "--images", "shapes:2", "--device", "cuda"], capsys)
    assert status == 2 and "--device" in err and "no CUDA GPU" in err and "Traceback" not in err


def test_an_existing_folder_named_like_a_spec_is_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "shapes_data")
    status, out, _ = run([*BASE, "--images", "shapes_data", "--device", "cpu", "--out", "r.csv"], capsys)
    assert status == 0 and pd.read_csv(tmp_path / "r.csv")["image"].tolist() == ["img0.png", "img1.png"]


@pytest.mark.parametrize("flag", ["--batch-size", "--chunk-size", "--steps"])
def test_positive_counts_name_the_flag(flag, capsys):
    status, _, err = run([*BASE, "--images", "shapes:2", flag, "0"], capsys)
    assert status == 2 and flag in err and "positive int" in err
