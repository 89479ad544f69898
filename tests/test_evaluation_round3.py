"""The dataset runner and the CLI under issue 25 (items 6, 7, 8, 10, 12 and 14): token layers with the
default metrics, out-of-range labels, the shapes benchmark through any preprocess, class names that
look like NA, pointers that agree with what evaluate accepts, and Ctrl-C in `xcam`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

import xcam_widgets as xw
from xcam_widgets.cli import main
from xcam_widgets.evaluation import evaluate, open_images, read_table, run_paths
from xcam_widgets.evaluation import local as local_engine
from xcam_widgets.evaluation.arguments import metrics_for_layers, token_layers
from xcam_widgets.models import ModelBundle
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.targets import DetectionTarget

pytestmark = pytest.mark.usefixtures("one_thread")
DIAGNOSTICS = ["conservation_error", "sensitivity_error", "sensitivity_r"]


class TokenBlock(nn.Module):
    """A pre-norm residual MLP on tokens `[B, N, D]`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.mlp(self.norm(tokens))


class TinyViT(nn.Module):
    """16×16 patches (a 4×4 grid at 64 px) and a class token, two token blocks, a linear head."""

    def __init__(self, dim: int = 8, classes: int = 6) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, stride=16)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.blocks = nn.Sequential(TokenBlock(dim), TokenBlock(dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = self.blocks(torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1))
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(dim=1))


@pytest.fixture(scope="module")
def vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


class Pairs(Dataset):
    def __init__(self, items, classes=None) -> None:
        self.items = items
        if classes is not None:
            self.classes = classes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


# --- item 6: token layers with the default metrics ---------------------------------------------------


def test_the_default_metrics_run_on_a_token_layer_without_its_diagnostics(vit):
    data = make_shapes(2, seed=3)
    table, _ = evaluate(vit, data, methods="gradcam", layers=["patch", "blocks.0"], steps=2, progress=False)
    assert (table["error"] == "").all() and table["layer"].tolist() == ["patch", "blocks.0"] * 2
    x, classes = nets.preprocess(data.images), data.labels[:, 0]
    token = table[table["layer"] == "blocks.0"]
    assert token[DIAGNOSTICS].isna().all().all()
    # The token layer's other columns are those of `explain` and the metrics called by hand.
    maps = xw.explain(vit, x, "blocks.0", method="gradcam", target=classes).map
    deletion = xw.deletion_auc(vit, x, maps, classes, steps=2)
    np.testing.assert_allclose(token["deletion"], deletion.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(token["energy"], xw.energy_in_mask(maps, data.masks[[0, 1], classes]), rtol=1e-4)
    # The convolutional layer keeps its diagnostics: those of `diagnose` itself.
    grid = table[table["layer"] == "patch"]
    reference = xw.diagnose(vit, x, "patch", "gradcam", target=classes)
    np.testing.assert_allclose(grid["sensitivity_error"], reference.sensitivity_error.numpy(), rtol=1e-4)
    np.testing.assert_allclose(grid["conservation_error"], reference.conservation_error.numpy(), rtol=1e-4)


def test_diagnostics_on_token_layers_are_left_out_by_default_and_refused_when_asked_for(vit):
    source = open_images("shapes:1", nets.preprocess)
    bundle = ModelBundle("TinyViT", vit, nets.preprocess, [], 64)
    x = source.take([0]).x
    assert token_layers(vit, x, ["patch", "blocks.0", "blocks"]) == ["blocks.0", "blocks"]
    chosen = ("diagnostics", "deletion")
    kept, note = metrics_for_layers(None, chosen, bundle, ["blocks.1"], source)
    assert kept == ("deletion",) and "'blocks.1'" in note and "diagnostics" in note
    kept, note = metrics_for_layers(None, chosen, bundle, ["patch", "blocks.1"], source)
    assert kept == chosen and "'blocks.1'" in note and "'patch'" not in note
    assert metrics_for_layers(None, chosen, bundle, ["patch"], source) == (chosen, "")
    with pytest.raises(ValueError, match=r"'diagnostics' cannot run on token layer\(s\) \['blocks.1'\]"):
        metrics_for_layers(["diagnostics"], ("diagnostics",), bundle, ["patch", "blocks.1"], source)


# --- item 7: a label outside the model's classes -----------------------------------------------------


@pytest.mark.parametrize("target", [None, "label"])
def test_an_out_of_range_label_is_an_error_row_and_the_run_goes_on(random_shapes_vgg, target):
    data = make_shapes(3, seed=4)
    labels = [int(data.labels[0, 0]), 17, int(data.labels[2, 0])]
    options = dict(methods="gradcam", metrics=["deletion"], steps=2, batch_size=3, progress=False, target=target)
    table, _ = evaluate(random_shapes_vgg, Pairs(list(zip(data.images, labels))), **options)
    bad = table.iloc[1]
    assert bad["error"] == "image 1 has label 17, outside the model's 6 classes (0 .. 5)"
    assert bad["label"] == 17 and bad["class"] == -1 and math.isnan(bad["score"])
    assert (table["error"][[0, 2]] == "").all()
    # The other images get the rows of a run without the bad one.
    alone, _ = evaluate(random_shapes_vgg, Pairs([(data.images[i], labels[i]) for i in (0, 2)]), **options)
    for column in ("class", "score", "deletion", "predicted"):
        np.testing.assert_allclose(table[column][[0, 2]].astype(float), alone[column].astype(float), rtol=1e-5)


# --- item 8: the shapes benchmark through another model's preprocess ---------------------------------


def test_shapes_go_through_a_pil_preprocess_and_their_masks_into_its_frame():
    geometry = [T.Resize(128, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(96)]
    preprocess = T.Compose([*geometry, T.ToTensor(), T.Normalize((0.4, 0.5, 0.6), (0.2, 0.3, 0.25))])
    data = make_shapes(2, seed=5)
    batch = open_images("shapes:2:5", preprocess).take([1, 0])
    pils = [Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()) for image in data.images]
    assert torch.equal(batch.x, torch.stack([preprocess(pils[1]), preprocess(pils[0])]))
    # Nearest ×2 then the central 96 px: each mask pixel doubled, then cropped 16 px from each side.
    doubled = data.masks.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., 16:112, 16:112]
    assert torch.equal(batch.masks, doubled[[1, 0]]) and batch.masks.any()
    shown = open_images("shapes:2:5", preprocess).image_for_display(1)
    np.testing.assert_array_equal(shown, np.asarray(T.Compose(geometry)(pils[1])))


def test_evaluate_efficientnet_lite0_on_the_shapes():
    bundle = xw.load_model("efficientnet_lite0", device="cpu")
    result = evaluate(bundle, "shapes:2", methods="gradcam", metrics=["pointing", "energy"], progress=False)
    table = result.table
    assert (table["error"] == "").all() and table["energy"].between(0, 1).all()
    batch = open_images("shapes:2", bundle.preprocess).take([0, 1])
    assert batch.x.shape == (2, 3, 224, 224) and batch.masks.shape == (2, 6, 224, 224)
    maps = xw.explain(bundle.model, batch.x, "features", method="gradcam", target=batch.labels).map
    energy = xw.energy_in_mask(maps, batch.masks[[0, 1], batch.labels])
    np.testing.assert_allclose(table["energy"], energy.numpy(), rtol=1e-4, atol=1e-7)


# --- item 10: class names that look like missing values ----------------------------------------------


def test_class_names_like_na_survive_a_reopened_table(tmp_path):
    names = ["NA", "None", "null", "nan", "N/A", ""]
    data = make_shapes(6, seed=2)
    model = nets.build("shapes_gap")
    labels = [-1, *range(1, 6)]  # the first label unknown: `correct` is NaN there
    images = Pairs([(data.images[i], labels[i]) for i in range(6)], classes=names)
    out = tmp_path / "run.csv"
    options = dict(methods="gradcam", metrics=["deletion"], steps=2, preprocess=nets.preprocess, progress=False)
    result = evaluate(model, images, out=out, **options)
    table = read_table(run_paths(out).table)
    assert table["class_name"].tolist() == result.table["class_name"].tolist()
    assert set(table["class_name"]) <= set(names) and table["error"].tolist() == [""] * 6
    assert math.isnan(table["correct"][0]) and table["correct"][1:].notna().all()
    np.testing.assert_allclose(table["deletion"], result.table["deletion"], rtol=1e-6)


def test_read_table_keeps_strings_and_reads_numeric_gaps_as_nan(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("row,image,method,layer,class_name,score,error\n0,NA,gradcam,l,None,,\n1,b,gradcam,l,nan,NaN,x\n")
    table = read_table(path)
    assert table["image"].tolist() == ["NA", "b"] and table["class_name"].tolist() == ["None", "nan"]
    assert table["score"].isna().all() and table["error"].tolist() == ["", "x"]


# --- item 12: pointers that agree with what evaluate accepts; the shape that was given ---------------


def test_a_detector_is_pointed_at_explain_and_its_targets():
    with pytest.raises(ValueError, match="DetectionTarget") as refused:
        evaluate("shapes_det", "shapes:2", methods="gradcam", metrics=["deletion"], steps=2, progress=False)
    assert "xw.explain" in str(refused.value) and "pass target=callable" not in str(refused.value)
    with pytest.raises(TypeError, match="not a callable") as callable_target:
        evaluate(nets.build("shapes_gap"), "shapes:2", target=lambda output: output[:, 0], progress=False)
    assert "xw.explain" in str(callable_target.value)
    # What the message points at works: explain with a DetectionTarget on the detector.
    detector = xw.load_model("shapes_det", device="cpu")  # the shipped weights: it finds the shape
    x = nets.preprocess(make_shapes(1, seed=0).images)
    with torch.no_grad():
        found = detector.model(x)[0]
    target = DetectionTarget(found["boxes"][0], int(found["labels"][0]))
    result = xw.explain(detector.model, x, detector.cam_layer, method="gradcam", target=target)
    assert result.map.shape == (1, 64, 64) and torch.isclose(result.score[0], found["scores"][0])


def test_a_bare_detector_module_gets_the_same_pointer():
    detector = xw.load_model("shapes_det", pretrained=False, device="cpu").model
    with pytest.raises(TypeError, match="DetectionTarget") as refused:
        evaluate(detector, "shapes:1", methods="gradcam", layers=nets.CAM_LAYER, metrics=["deletion"], progress=False)
    assert "pass target=callable" not in str(refused.value)


def test_a_channels_first_numpy_image_is_reported_with_its_own_shape(random_shapes_vgg):
    image = np.zeros((3, 32, 40), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"got \[3, 32, 40\] \(channels first\? give array.transpose\(1, 2, 0\)\)"):
        evaluate(random_shapes_vgg, Pairs([(image, 0)]), methods="gradcam", metrics=["deletion"], progress=False)


# --- item 14: Ctrl-C in the CLI ----------------------------------------------------------------------

CLI = ["evaluate", "--model", "shapes_gap", "--random-weights", "--methods", "gradcam", "--metrics", "deletion"]
CLI += ["--steps", "2", "--no-progress", "--images", "shapes:4", "--batch-size", "2", "--device", "cpu"]


class Batches:
    """Wraps the local engine's `evaluate_batch`: records positions; Ctrl-C on call `at` (1-based)."""

    def __init__(self, monkeypatch, at: int | None = None) -> None:
        self.positions: list[int] = []
        self.calls, self.at, self.original = 0, at, local_engine.evaluate_batch
        monkeypatch.setattr(local_engine, "evaluate_batch", self)

    def __call__(self, bundle, batch, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.positions += list(batch.positions)
        return self.original(bundle, batch, *args, **kwargs)


def run_main(argv: list[str]) -> int:
    """`main(argv)`; a KeyboardInterrupt that escapes it (a raw traceback) fails the test."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped `xcam` as a traceback")


def test_ctrl_c_says_what_was_kept_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run.csv"
    Batches(monkeypatch, at=2)
    assert run_main([*CLI, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
    assert f"The finished batches stay in {run_paths(out).parts}: the same command resumes from them" in err
    monkeypatch.undo()
    rerun = Batches(monkeypatch)
    assert run_main([*CLI, "--out", str(out)]) == 0
    assert rerun.positions == [2, 3] and len(pd.read_csv(out)) == 4


def test_ctrl_c_without_out_says_nothing_was_kept(capsys, monkeypatch):
    Batches(monkeypatch, at=1)
    assert run_main(CLI) == 130
    assert "Nothing was kept: without --out no batch is written" in capsys.readouterr().err
