"""The dataset runner and the `xcam evaluate` command on a few shapes images."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from PIL import Image

import xcam_widgets as xw
from xcam_widgets import metrics as M
from xcam_widgets.cli import main
from xcam_widgets.evaluation import (
    ENGINES,
    evaluate,
    evaluate_batch,
    open_images,
    open_result,
    output_paths,
    read_table,
    table_columns,
    wilson_interval,
)
from xcam_widgets.evaluation.table import KEY_COLUMNS
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.shapes.dataset import make_shapes

LAYER = nets.CAM_LAYER
METHODS = ["gradcam", "xgradcam"]
STEPS = 4
N = 20


pytestmark = pytest.mark.usefixtures("one_thread")


def random_bundle(name: str = "shapes_vgg") -> xw.ModelBundle:
    torch.manual_seed(0)
    return xw.load_model(name, pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    bundle = random_bundle()
    out = tmp_path_factory.mktemp("eval") / "results.csv"
    result = evaluate(bundle, f"shapes:{N}", METHODS, LAYER, steps=STEPS, batch_size=8, progress=False, out=out)
    return bundle, result, out


def test_one_row_per_image_method_layer(run):
    _, (table, _), _ = run
    all_metrics = ("diagnostics", "average_drop", "deletion", "insertion", "pointing", "energy")
    assert list(table.columns) == table_columns(all_metrics)
    assert len(table) == N * len(METHODS)
    assert sorted(table.groupby(["method", "layer"]).size().items()) == [((m, LAYER), N) for m in METHODS]
    data = make_shapes(N, seed=HELDOUT_SEED)
    for _, rows in table.groupby("method"):
        assert rows["image"].tolist() == list(range(N))
        assert rows["class"].tolist() == data.labels[:, 0].tolist()  # the ground-truth class
    assert set(table["class_name"]) <= set(nets.SHAPE_CLASSES)
    assert table["pointing"].dtype == bool and table["increase"].dtype == bool
    assert table["row"].tolist() == list(range(len(table)))  # the key: image-major, then method, then layer
    assert table["method"].tolist() == METHODS * N and table["image"].tolist() == [i for i in range(N) for _ in METHODS]
    assert (table["label"] == table["class"]).all() and (table["error"] == "").all()
    for column in ("average_drop", "deletion", "insertion", "energy"):
        assert table[column].between(0, 1).all(), column


def test_rows_match_the_metric_functions(run):
    """The table's values are those of `explain` + `metrics` on the same images and classes."""
    bundle, (table, _), _ = run
    data = make_shapes(N, seed=HELDOUT_SEED)  # the same images: make_shapes(4) is not a prefix of it
    x, classes = nets.preprocess(data.images[:4]), data.labels[:4, 0]
    res = xw.explain(bundle.model, x, LAYER, "xgradcam", target=classes)
    masks = data.masks[torch.arange(4), classes]
    d = xw.diagnose(bundle.model, x, LAYER, "xgradcam", target=classes)
    rows = table[table["method"] == "xgradcam"].head(4)
    expected = {
        "score": res.score,
        "conservation_error": d.conservation_error,
        "sensitivity_r": d.sensitivity_r,
        "average_drop": M.average_drop_increase(bundle.model, x, res.map, classes)[0],
        "deletion": M.deletion_auc(bundle.model, x, res.map, classes, steps=STEPS),
        "insertion": M.insertion_auc(bundle.model, x, res.map, classes, steps=STEPS),
        "energy": M.energy_in_mask(res.map, masks),
    }
    for column, values in expected.items():
        got = torch.tensor(rows[column].tolist())
        torch.testing.assert_close(got, values.float(), rtol=1e-4, atol=1e-6, msg=column)
    assert rows["pointing"].tolist() == M.pointing_game(res.map, masks).tolist()


def test_summary_means_are_the_per_image_means(run):
    _, (table, summary), _ = run
    assert list(summary.columns) == ["method", "layer", "metric", "n", "mean", "ci_low", "ci_high"]
    assert len(summary) == len(METHODS) * (len(table.columns) - len(KEY_COLUMNS))  # every value column
    for row in summary.itertuples():
        values = table.loc[(table["method"] == row.method) & (table["layer"] == row.layer), row.metric]
        values = (values != "").astype(float) if row.metric == "error" else values.astype(float)
        assert row.n == values.notna().sum()
        assert row.mean == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
        if row.n > 1 and values.std() > 0:
            assert row.ci_low < row.mean < row.ci_high
    pointing = summary[summary["metric"] == "pointing"].iloc[0]
    assert (pointing["ci_low"], pointing["ci_high"]) == pytest.approx(wilson_interval(pointing["mean"], N))
    energy = summary[summary["metric"] == "energy"].iloc[0]
    values = table.loc[table["method"] == energy["method"], "energy"]
    half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(N)
    assert (energy["ci_low"], energy["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))


def test_wilson_interval_by_hand():
    low, high = wilson_interval(0.5, 4, z=2.0)  # centre (0.5 + 0.5) / 2, half (2/2)·sqrt(1/16 + 1/16)
    assert (low, high) == pytest.approx((0.5 - math.sqrt(0.125), 0.5 + math.sqrt(0.125)))
    assert wilson_interval(1.0, 20)[1] == pytest.approx(1.0) and wilson_interval(1.0, 20)[0] < 1


def test_csv_round_trips(run):
    _, (table, summary), out = run
    table_path, summary_path = output_paths(out)
    assert table_path == out and summary_path.name == "results.summary.csv"
    back = read_table(table_path)
    pd.testing.assert_frame_equal(back, table)
    pd.testing.assert_frame_equal(pd.read_csv(summary_path), summary)
    reopened = open_result(out)  # the table, summary, maps and meta, nothing recomputed
    pd.testing.assert_frame_equal(reopened.table, table)
    assert len(reopened.maps) == len(table) and reopened.complete
    assert reopened.meta["images"] == f"shapes:{N}" and reopened.meta["methods"] == METHODS


def test_batches_are_independent_and_rows_are_plain(run):
    """Per-image values do not depend on how images are batched; rows hold only Python values
    (what a Ray engine would ship)."""
    bundle, (table, _), _ = run
    source = open_images(f"shapes:{N}", bundle.preprocess)
    batch = next(iter(source.batches(3)))
    rows, maps = evaluate_batch(bundle, batch, ["xgradcam"], [LAYER], metrics=("average_drop", "deletion"), steps=STEPS)
    assert [r["image"] for r in rows] == [0, 1, 2] and sorted(maps) == [r["row"] for r in rows] == [0, 1, 2]
    assert all(type(v) in (int, float, bool, str) for r in rows for v in r.values())
    full = table[table["method"] == "xgradcam"].head(3)
    for column in ("score", "average_drop", "increase", "deletion"):
        assert [r[column] for r in rows] == pytest.approx(full[column].tolist(), rel=1e-5, abs=1e-7)


def test_gap_head_gradcam_equals_xgradcam_and_is_deterministic():
    """On a GAP→linear head the two methods coincide (docs/methods.md); a rerun is identical."""
    bundle = random_bundle("shapes_gap")
    data = make_shapes(6, seed=3)
    kwargs = dict(metrics=["diagnostics", "deletion", "pointing"], steps=STEPS, progress=False)
    table, _ = evaluate(bundle, data, METHODS, LAYER, **kwargs)
    grad, xgrad = (table[table["method"] == m].reset_index(drop=True) for m in METHODS)
    columns = ["score", "conservation_error", "deletion", "pointing"]
    pd.testing.assert_frame_equal(grad[columns], xgrad[columns], rtol=1e-4)
    assert (table["sensitivity_error"] < 1e-4).all()  # closed-form true drops on a GAP head
    again, _ = evaluate(bundle, data, METHODS, LAYER, **kwargs)
    pd.testing.assert_frame_equal(again, table)


def test_folder_of_images_uses_top1_and_skips_localisation(tmp_path):
    data = make_shapes(3, seed=5)
    for i, image in enumerate(data.images):
        pixels = (image.permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    bundle = random_bundle()
    table, summary = evaluate(bundle, tmp_path, "gradcam", LAYER, metrics=None, steps=2, progress=False)
    assert table["image"].tolist() == ["img0.png", "img1.png", "img2.png"]
    assert "pointing" not in table.columns and "energy" not in table.columns
    x = torch.stack([bundle.preprocess(xw.load_image(tmp_path / f"img{i}.png")) for i in range(3)])
    with torch.no_grad():
        assert table["class"].tolist() == bundle.model(x).argmax(1).tolist()
    with pytest.raises(ValueError, match="masks"):
        evaluate(bundle, tmp_path, "gradcam", LAYER, metrics=["pointing"], progress=False)


def test_bad_arguments_are_named():
    bundle = random_bundle()
    with pytest.raises(ValueError, match=r"engine must be one of \('local', 'ray'\), got 'spark'"):
        evaluate(bundle, "shapes:2", engine="spark", progress=False)
    assert ENGINES == ("local", "ray")
    cases = [
        (dict(methods=["nope"]), "unknown method"),
        (dict(layers="features.nope"), "not a submodule"),
        (dict(metrics=["auc"]), "unknown metric"),
        (dict(target="best"), "target"),
        (dict(target=6), "out of range"),  # the shapes nets have 6 classes
        (dict(steps=0), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(methods=["gradcam", "gradcam"]), "twice"),
        (dict(method_options={"scorecam": {"batch_size": 2}}), "not among"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate(bundle, "shapes:2", **{"layers": LAYER, "progress": False, **kwargs})
    for images in ("shapes:0", "shapes:x", "/no/such/folder"):
        with pytest.raises(ValueError, match="images"):
            evaluate(bundle, images, layers=LAYER, progress=False)
    with pytest.raises(ValueError, match="preprocess"):
        evaluate(bundle.model, "/tmp", layers=LAYER, progress=False)


def test_cli_writes_the_table_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "cli" / "results.csv"
    status = main(
        [
            "evaluate",
            "--model",
            "shapes_gap",
            "--random-weights",
            "--images",
            "shapes:4",
            "--methods",
            "gradcam,xgradcam",
            "--layers",
            LAYER,
            "--metrics",
            "average_drop,pointing",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    table = pd.read_csv(out)
    assert len(table) == 8 and list(table["method"].unique()) == METHODS
    assert out.with_name("results.summary.csv").is_file()
    printed = capsys.readouterr().out
    assert "average_drop" in printed and "xgradcam" in printed and f"wrote 8 rows to {out}" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--images", "shapes:2"], "--model"),
        (["evaluate", "--model", "shapes_gap", "--images", "shapes:2", "--steps", "0"], "--steps"),
        (["evaluate", "--model", "shapes_gap", "--images", "shapes:2", "--target", "best"], "--target"),
        (["evaluate", "--model", "nope", "--images", "shapes:2", "--random-weights"], "unknown model"),
        (
            ["evaluate", "--model", "shapes_gap", "--random-weights", "--images", "shapes:2", "--methods", "x"],
            "unknown method",
        ),
    ],
)
def test_cli_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu_with_the_same_values():
    bundle = random_bundle()
    data = make_shapes(4, seed=7)
    kwargs = dict(
        metrics=["diagnostics", "average_drop", "deletion", "insertion", "pointing", "energy"],
        steps=STEPS,
        progress=False,
    )
    cpu, _ = evaluate(bundle, data, METHODS, LAYER, device="cpu", **kwargs)
    gpu, _ = evaluate(bundle, data, METHODS, LAYER, device="cuda", **kwargs)
    assert next(bundle.model.parameters()).is_cuda
    floats = ["score", "average_drop", "deletion", "insertion", "energy"]
    pd.testing.assert_frame_equal(gpu[floats], cpu[floats], rtol=1e-3, atol=1e-4)
    assert (gpu["pointing"] == cpu["pointing"]).mean() >= 0.75  # a near-tie may flip one argmax


@pytest.mark.skipif(not nets.weights_path("shapes_gap").is_file(), reason="shapes weights not trained yet")
def test_trained_gap_net_by_name_points_at_the_shapes():
    """By name, with the shipped weights: XGrad-CAM on the trained GAP net finds the shape far
    more often than chance (a 4-px-dilated shape covers about a fifth of the image)."""
    table, summary = evaluate(
        "shapes_gap", "shapes:20", "xgradcam", metrics=["pointing", "energy"], device="cpu", progress=False
    )
    assert table["layer"].unique().tolist() == [LAYER]  # the default layer
    pointing = summary.set_index("metric").loc["pointing", "mean"]
    assert pointing >= 0.5
