"""`xw.compare`: the joined table against two direct runs, each similarity measure by hand or by an oracle,
a model against its copy, resuming with `out`, and bad arguments."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import xcam_widgets as xw
from xcam_widgets.compare import similarity as S
from xcam_widgets.evaluation import open_images
from xcam_widgets.model_state import hook_counts
from xcam_widgets.shapes.dataset import make_shapes

IMAGES = "shapes_shortcut:6:3:label"
FAST = dict(metrics=("energy",), progress=False)


@pytest.fixture(scope="module")
def gap() -> xw.ModelBundle:
    return xw.load_model("shapes_gap", device="cpu")


@pytest.fixture(scope="module")
def shortcut() -> xw.ModelBundle:
    return xw.load_model("shapes_shortcut", device="cpu")


# --- the measures -------------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 4, size=(5, 6)).astype(float)  # many ties
        b = a + rng.normal(0, 1.5, size=a.shape)
        assert S.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert S.ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_cosine_of_the_relud_maps_by_hand():
    a = np.array([[1.0, -2.0], [3.0, 0.0]])  # a+ = (1, 0, 3, 0)
    b = np.array([[2.0, 1.0], [-1.0, 4.0]])  # b+ = (2, 1, 0, 4)
    assert S.cosine(a, b) == pytest.approx(2 / math.sqrt(10 * 21))
    assert S.cosine(a, -np.abs(a)) == 0.0  # no positive evidence in b: nothing shared
    assert S.cosine(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # equal maps, undefined measure


def test_iou_of_the_hottest_cells_by_hand():
    a = np.zeros((4, 5))  # 20 cells: top 10 % = 2 cells
    b = np.zeros((4, 5))
    a.flat[[0, 1]] = [5.0, 4.0]
    b.flat[[1, 2]] = [3.0, 6.0]
    assert S.iou(a, b) == pytest.approx(1 / 3)  # {0, 1} vs {1, 2}
    a.flat[[7, 8]] = [2.0, 1.0]
    b.flat[[0, 7]] = [1.0, 0.5]
    assert S.iou(a, b, top=20) == pytest.approx(3 / 5)  # {0, 1, 7, 8} vs {0, 1, 2, 7}
    assert S.iou(a, b, top=100) == 1.0


def test_maps_of_two_resolutions_meet_on_the_finer_grid():
    coarse = np.array([[0.0, 1.0], [2.0, 3.0]])
    fine = np.zeros((4, 4))
    a, b = S.common_grid(coarse, fine)
    # bilinear, align_corners=False: output i samples (i + 0.5) / 2 - 0.5, clamped: weights 0, .25, .75, 1
    f = np.array([0.0, 0.25, 0.75, 1.0])
    assert a.shape == b.shape == (4, 4)
    np.testing.assert_allclose(a, 2 * f[:, None] + f[None, :])
    np.testing.assert_array_equal(b, fine)
    assert S.common_grid(np.zeros((2, 6)), np.zeros((3, 4)))[0].shape == (3, 6)


def test_ssim_identity_symmetry_and_scale_invariance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    assert S.ssim(a, a) == pytest.approx(1.0)
    assert S.ssim(a, 3 * a + 2) == pytest.approx(1.0)  # each map is min-max scaled first
    assert S.ssim(a, b) == pytest.approx(S.ssim(b, a))
    assert -1 <= S.ssim(a, b) < 0.5
    assert math.isnan(S.ssim(np.ones((2, 8)), np.ones((2, 8))))  # no 3x3 window fits


def test_every_measure_gives_one_for_equal_maps_and_checks_its_input():
    for a in (np.arange(12.0).reshape(3, 4), np.ones((4, 4)), -np.ones((3, 3))):
        assert S.similarities(a, a.copy()) == dict.fromkeys(S.MEASURES, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        S.spearman(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        S.cosine(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="percentage"):
        S.iou(np.ones((2, 2)), np.ones((2, 2)), top=0)


# --- the comparison table -----------------------------------------------------------------------


def test_table_against_two_direct_runs(gap, shortcut):
    options = dict(metrics=("average_drop", "pointing", "energy"), progress=False)  # increase, pointing: 0/1
    result = xw.compare(shortcut, gap, IMAGES, **options)
    run_a = xw.evaluate(shortcut, IMAGES, methods=("xgradcam",), **options)
    run_b = xw.evaluate(gap, IMAGES, methods=("xgradcam",), **options)
    table, a, b = result.table, run_a.table, run_b.table
    assert result.complete and len(table) == 6
    assert list(table.columns[:12]) == [
        "row", "image", "method", "layer_a", "layer_b", "class", "class_name", "label",
        "predicted_a", "predicted_b", "score_a", "score_b",
    ]  # fmt: skip
    for column in ("similarity", *S.MEASURES, "energy_a", "energy_b", "energy_delta", "error_a", "error_b"):
        assert column in table.columns
    assert table["row"].tolist() == a["row"].tolist() == b["row"].tolist()
    assert table["label"].tolist() == a["label"].tolist() == table["class"].tolist()  # target "label"
    assert table["predicted_a"].tolist() == a["predicted"].tolist()
    assert table["predicted_b"].tolist() == b["predicted"].tolist()
    np.testing.assert_allclose(table["score_a"], a["score"])
    np.testing.assert_allclose(table["score_b"], b["score"])
    for name in ("average_drop", "increase", "pointing", "energy"):
        np.testing.assert_allclose(table[f"{name}_delta"], b[name].astype(float) - a[name].astype(float))
        assert table[f"{name}_a"].tolist() == a[name].tolist()
    for row, rho, cos in zip(table["row"], table["spearman"], table["cosine"]):
        ma, mb = run_a.maps[row].astype(float), run_b.maps[row].astype(float)
        assert rho == pytest.approx(spearmanr(ma.ravel(), mb.ravel()).statistic, abs=1e-9)
        pa, pb = np.maximum(ma, 0).ravel(), np.maximum(mb, 0).ravel()
        assert cos == pytest.approx(pa @ pb / np.linalg.norm(pa) / np.linalg.norm(pb), abs=1e-9)
    np.testing.assert_array_equal(table["similarity"], table[S.DEFAULT_MEASURE])
    np.testing.assert_array_equal(result.maps_a[0], run_a.maps[0])
    np.testing.assert_array_equal(result.maps_b[5], run_b.maps[5])
    ranked = result.ranked()
    assert ranked["similarity"].is_monotonic_increasing


def test_a_model_against_its_copy_or_itself_gives_one(gap):
    twin = dataclasses.replace(gap, model=copy.deepcopy(gap.model))
    gap.model.train()
    hooks = hook_counts(gap.model)
    try:
        for other in (twin, gap):
            table = xw.compare(gap, other, IMAGES, layers=["features.block4"], **FAST).table
            assert (table[["similarity", *S.MEASURES]].to_numpy() == 1.0).all()
            assert (table["energy_delta"] == 0).all()
        assert gap.model.training and hook_counts(gap.model) == hooks
    finally:
        gap.model.eval()


def test_predicted_a_explains_model_a_classes_in_model_b(gap, shortcut):
    images = "shapes:6:5"  # no mark: the shortcut net errs on some
    result = xw.compare(shortcut, gap, images, target="predicted_a", **FAST)
    table = result.table
    assert table["class"].tolist() == table["predicted_a"].tolist()
    x = open_images(images, gap.preprocess).take(range(6)).x
    with torch.no_grad():
        logits = gap.model(x)
    np.testing.assert_allclose(table["score_b"], logits[torch.arange(6), table["class"].tolist()], rtol=1e-5)
    assert table["predicted_b"].tolist() == logits.argmax(1).tolist()
    labels = open_images(images, gap.preprocess).take(range(6)).labels
    assert table["label"].tolist() == labels.tolist()  # the true label, not A's class
    assert table["correct_b"].tolist() == (labels == logits.argmax(1)).tolist()


class Unlabelled(torch.utils.data.Dataset):
    """Shapes as raw pixels with no label: target "label" falls back on model A's prediction."""

    def __init__(self, n: int) -> None:
        self.images = make_shapes(n, seed=3).images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, None]:
        return self.images[index], None


def test_label_without_labels_explains_model_a_prediction_in_b(gap, shortcut):
    images = Unlabelled(4)
    table = xw.compare(shortcut, gap, images, metrics=("average_drop",), progress=False).table
    assert (table["label"] == -1).all() and table["class"].tolist() == table["predicted_a"].tolist()
    x = open_images(images, gap.preprocess).take(range(4)).x  # the runner's input (both nets: one preprocess)
    with torch.no_grad():
        logits_a, logits_b = shortcut.model(x), gap.model(x)
    assert table["predicted_a"].tolist() == logits_a.argmax(1).tolist()
    np.testing.assert_allclose(table["score_b"], logits_b[torch.arange(4), table["class"].tolist()], rtol=1e-5)
    assert table["correct_b"].isna().all()


class StopAfter:
    """A `stop` whose `is_set` turns True at its `calls`-th question (the runner asks before each batch)."""

    def __init__(self, calls: int) -> None:
        self.calls = 0
        self.limit = calls

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.limit


def test_a_stopped_comparison_resumes_from_out(gap, shortcut, tmp_path):
    images = "shapes_shortcut:6:4:label"
    whole = xw.compare(shortcut, gap, images, batch_size=2, **FAST).table
    stopped = xw.compare(shortcut, gap, images, batch_size=2, out=tmp_path, stop=StopAfter(2), **FAST)  # type: ignore[arg-type]
    assert not stopped.complete and stopped.run_b is None and len(stopped.table) == 0
    assert len(stopped.run_a.table) == 2  # one batch of A
    resumed = xw.compare(shortcut, gap, images, batch_size=2, out=tmp_path, **FAST)
    assert resumed.complete
    assert resumed.table.equals(whole)
    assert (tmp_path / "model_a.csv").exists() and (tmp_path / "model_b.csv").exists()
    written = __import__("pandas").read_csv(tmp_path / "comparison.csv")
    np.testing.assert_allclose(written["similarity"], whole["similarity"])


# --- bad input ----------------------------------------------------------------------------------


class ThreeClasses(nn.Module):
    """The shapes net's first three logits: another class count, the same layers under `inner`."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[:, :3]


def test_models_with_other_class_counts_need_an_explicit_index(gap):
    three = ThreeClasses(copy.deepcopy(gap.model))
    layers = ("features.block4", "inner.features.block4")
    with pytest.raises(ValueError, match=r"6 classes .* 3: .*target='label' is refused"):
        xw.compare(gap, three, IMAGES, layers=layers, **FAST)
    with pytest.raises(ValueError, match="target=4 is outside the classes of model B"):
        xw.compare(gap, three, IMAGES, layers=layers, target=4, **FAST)
    table = xw.compare(gap, three, IMAGES, layers=layers, target=2, **FAST).table
    assert (table["class"] == 2).all()
    inside = table["label"] < 3  # the runner makes error rows of labels outside B's classes, also for target=int
    assert (table.loc[inside, list(S.MEASURES)].to_numpy() == 1.0).all()
    assert table.loc[~inside, "error_b"].str.contains("outside the model's 3 classes").all()
    assert table.loc[~inside, "similarity"].isna().all() and (table.loc[~inside, "error_a"] == "").all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(target="top1"), "target must be 'label'"),
        (dict(target=True), "target must be"),
        (dict(target=-1), "target must be"),
        (dict(layers=["a", "b", "c"]), "layers must be None"),
        (dict(layers=[3]), "dotted name or a module"),
        (dict(layers="features.block3,features.block4"), "one layer per model"),
        (dict(measure="pearson"), "measure must be one of"),
        (dict(top=0), "percentage"),
        (dict(engine="spark"), "engine must be one of"),
        (dict(methods="nomethod"), "nomethod"),
    ],
)
def test_bad_arguments_name_the_problem(gap, options, message):
    with pytest.raises((ValueError, TypeError, KeyError), match=message):
        xw.compare(gap, gap, IMAGES, **{**FAST, **options})


def test_out_must_be_a_folder(gap, tmp_path):
    path = tmp_path / "file.csv"
    path.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        xw.compare(gap, gap, IMAGES, out=path, **FAST)
    assert path.read_text() == "x"
