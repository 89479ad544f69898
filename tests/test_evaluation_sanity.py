"""The runner's sanity-check columns `mprt` and `random_logit` on a few shapes images (shapes_gap)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, evaluate_batch, open_images, read_table, table_columns
from xcam_widgets.evaluation.arguments import chosen_metrics
from xcam_widgets.evaluation.table import DEFAULT_METRICS, METRICS
from xcam_widgets.gallery import GalleryTable, Sort
from xcam_widgets.model_state import hook_counts
from xcam_widgets.sanity import sanity_check
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.widgets.gallery_panel import metric_columns

LAYER = nets.CAM_LAYER
METHODS = ["gradcam", "eigencam"]
SANITY = ["mprt", "random_logit"]
N = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(one_thread) -> xw.ModelBundle:
    torch.manual_seed(0)
    return xw.load_model("shapes_gap", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def run(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("sanity") / "results.csv"
    result = evaluate(bundle, f"shapes:{N}", METHODS, LAYER, metrics=SANITY, batch_size=4, progress=False, out=out)
    return result, out


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    data = make_shapes(N, seed=HELDOUT_SEED)  # the images of "shapes:N"
    return nets.preprocess(data.images), data.labels[:, 0]


def test_columns_equal_sanity_check_run_directly(bundle, run):
    """Each value is what `sanity_check` gives for that image alone, with the seed of its position
    (here with every cascading step, not only the tail the runner asks for)."""
    (table, _), _ = run
    assert list(table.columns) == table_columns(SANITY)
    x, classes = _images()
    for i in range(N):
        direct = sanity_check(
            bundle.model,
            x[i : i + 1],
            LAYER,
            methods=METHODS,
            target=int(classes[i]),
            checks=("cascading", "random_logit"),
            similarity="spearman",
            seed=i,
        )
        assert direct.layers_after == 1  # GAP → linear: only the linear layer follows the CAM layer
        for method in METHODS:
            row = table[(table["image"] == i) & (table["method"] == method)].iloc[0]
            verdict = direct.verdicts[method]
            assert row["mprt"] == pytest.approx(verdict.cascading["spearman"], abs=1e-9)
            assert row["random_logit"] == pytest.approx(verdict.random_logit["spearman"], abs=1e-9)
            assert row["random_logit"] == pytest.approx(direct.image_scores(method)["random_logit_spearman"][0])


def test_gradcam_random_logit_by_hand(bundle, run):
    """On a GAP → linear head Grad-CAM's raw map for class c is ∝ Σ_k W_ck A_k: the column is the
    mean Spearman ρ (scipy) of that map for the row's class and for each random class drawn."""
    (table, _), _ = run
    x, classes = _images()
    with torch.no_grad():
        activations = bundle.model.features(x).double()
    weights = bundle.model.classifier.fc.weight.detach().double()
    cams = torch.einsum("ck,nkhw->nchw", weights, activations).flatten(2).numpy()  # [image, class, h·w]
    for i in range(N):
        direct = sanity_check(
            bundle.model,
            x[i : i + 1],
            LAYER,
            methods="gradcam",
            target=int(classes[i]),
            checks="random_logit",
            similarity="spearman",
            seed=i,
        )
        drawn = [r["target_class"] for r in direct.rows]
        assert len(drawn) == 3 and len(set(drawn)) == 3 and int(classes[i]) not in drawn
        expected = sum(spearmanr(cams[i, classes[i]], cams[i, c]).statistic for c in drawn) / len(drawn)
        row = table[(table["image"] == i) & (table["method"] == "gradcam")].iloc[0]
        assert row["random_logit"] == pytest.approx(expected, abs=1e-9)


def test_eigencam_is_class_agnostic_and_gradcam_is_not(run):
    """Eigen-CAM ignores the class and the weights after the CAM layer: both columns are 1."""
    (table, _), _ = run
    eigen, grad = (table[table["method"] == m] for m in ("eigencam", "gradcam"))
    assert eigen["random_logit"].tolist() == pytest.approx([1.0] * N, abs=1e-12)
    assert eigen["mprt"].tolist() == pytest.approx([1.0] * N, abs=1e-12)
    assert grad["random_logit"].max() < 0.9 and grad["mprt"].max() < 0.9


def test_values_do_not_depend_on_batching(bundle, run):
    """The seed is the image's position: an image alone, in a reordered batch or with batch_size 1
    gets the same values as in the batches of 4."""
    (table, _), _ = run
    ones, _ = evaluate(bundle, f"shapes:{N}", METHODS, LAYER, metrics=SANITY, batch_size=1, progress=False)
    assert ones[SANITY].equals(table[SANITY])
    source = open_images(f"shapes:{N}", bundle.preprocess)
    for positions in ([5], [6, 2, 5]):
        rows, _ = evaluate_batch(bundle, source.take(positions), METHODS, [LAYER], metrics=SANITY)
        for row in rows:
            expected = table[table["row"] == row["row"]].iloc[0]
            assert (row["image"], row["method"]) == (expected["image"], expected["method"])
            assert [row["mprt"], row["random_logit"]] == [expected["mprt"], expected["random_logit"]]
            assert all(type(row[c]) is float for c in SANITY)  # plain values, as a Ray actor ships them


def test_model_is_bit_identical_afterwards(bundle):
    model = bundle.model
    model.train()  # a state evaluation_mode changes and must put back
    model.classifier.fc.weight.requires_grad_(False)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    hooks = hook_counts(model)
    try:
        evaluate(
            bundle,
            "shapes:3",
            ["gradcam", "scorecam"],
            LAYER,
            metrics=SANITY,
            batch_size=2,
            progress=False,
            method_options={"scorecam": {"batch_size": 4}},
        )
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[name], after[name]) for name in before)
        assert model.training and all(m.training for m in model.modules())
        assert not model.classifier.fc.weight.requires_grad and model.classifier.fc.bias.requires_grad
        assert hook_counts(model) == hooks
    finally:
        model.eval()
        model.classifier.fc.weight.requires_grad_(True)


def test_summary_gives_means_and_normal_intervals(run):
    (table, summary), _ = run
    for method in METHODS:
        for column in SANITY:
            values = table.loc[table["method"] == method, column]
            row = summary[(summary["method"] == method) & (summary["metric"] == column)].iloc[0]
            half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(N)
            assert row["n"] == N
            assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (values.mean(), values.mean() - half, values.mean() + half), abs=1e-12
            )


def test_csv_and_gallery_see_the_columns(run):
    """The CSV keeps the columns; the Gallery offers them as metrics and sorts by them."""
    (table, _), out = run
    written = read_table(out)
    assert written[SANITY].to_numpy().ravel() == pytest.approx(table[SANITY].to_numpy().ravel(), abs=1e-12)
    gallery = GalleryTable(table)
    assert set(SANITY) <= set(metric_columns(gallery))  # the metric dropdown's choices
    ranked = gallery.select(sort=Sort("random_logit"))
    assert table["random_logit"].iloc[ranked.positions].is_monotonic_increasing


def test_not_in_the_default_set_and_bad_names_are_named(bundle):
    assert set(SANITY) <= set(METRICS) and not set(SANITY) & set(DEFAULT_METRICS)
    assert not set(SANITY) & set(chosen_metrics(None, has_masks=True))
    assert chosen_metrics("random_logit, mprt", has_masks=False) == ("mprt", "random_logit")
    for metrics, error, message in (
        (["mprt", "random-logit"], ValueError, "unknown metric 'random-logit'; accepted: .*mprt, random_logit"),
        (["MPRT"], ValueError, "unknown metric 'MPRT'"),
        ([], ValueError, "metrics is empty"),
        ([3], TypeError, "metrics must be None"),
    ):
        with pytest.raises(error, match=message):
            evaluate(bundle, "shapes:2", METHODS, LAYER, metrics=metrics, progress=False)
