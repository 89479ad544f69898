"""xcam_widgets.sanity: the exact expectations of the checks, the model left untouched, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xcam_widgets as xw
from xcam_widgets.model_state import hook_counts
from xcam_widgets.sanity import SanityResult, sanity_check
from xcam_widgets.sanity.randomise import Weights, execution_order, working_copy
from xcam_widgets.sanity.recompute import MapEngine
from xcam_widgets.shapes.dataset import make_shapes

CAM_LAYER = "features.block4"


@pytest.fixture(scope="module")
def shapes_images() -> torch.Tensor:
    return make_shapes(2, seed=3).images


def _shapes(name: str, images: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    model, preprocess, _ = xw.load_model(name, device="cpu")
    return model, preprocess(images)


def _mean(result: SanityResult, method: str, check: str, step: int | None = None) -> dict[str, float]:
    rows = [r for r in result.rows if r["method"] == method and r["check"] == check and step in (None, r["step"])]
    assert rows, (method, check, step)
    return {m: sum(r[m] for r in rows) / len(rows) for m in result.measures}


class ShuffledResidualNet(nn.Module):
    """conv1 → ReLU → conv2 → act (the CAM layer) → conv3 → ReLU, + the conv1 branch → GAP → fc.
    Modules are registered in an order unlike the execution order, and the tail after `act` reads
    a value from before it (the residual branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        a = self.act(self.conv2(h))
        y = F.relu(self.conv3(a)) + h
        return self.fc(y.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["shapes_gap", "shapes_vgg"])
def test_random_logit_eigencam_is_one_and_class_sensitive_methods_are_clearly_below(name, shapes_images):
    model, x = _shapes(name, shapes_images)
    methods = ("eigencam", "gradcam", "xgradcam", "scorecam")
    result = sanity_check(model, x, CAM_LAYER, methods=methods, checks="random_logit", random_classes=3)
    eigen = [r for r in result.rows if r["method"] == "eigencam"]
    assert len(eigen) == 3 * x.shape[0]
    for row in eigen:  # Eigen-CAM ignores the class: the same map for every class
        assert row["spearman"] == pytest.approx(1.0, abs=1e-6) and row["ssim"] == pytest.approx(1.0, abs=1e-6)
    for method in ("gradcam", "xgradcam", "scorecam"):
        means = _mean(result, method, "random_logit")
        assert means["spearman"] < 0.9 and means["ssim"] < 0.9, (method, means)
    assert result.verdicts["eigencam"].passes_random_logit is False
    assert "fails the random-logit check" in result.verdicts["eigencam"].describe()
    assert {r["target_class"] for r in result.rows} <= set(range(6))


def test_randomising_only_the_linear_layer_of_a_gap_linear_net(shapes_images):
    """shapes_gap: features → GAP → linear. Re-drawing the linear layer alone changes the class
    weights, so Grad-CAM's map, and leaves A, so Eigen-CAM's map, exactly as they were."""
    model, x = _shapes("shapes_gap", shapes_images)
    for split in (True, False):
        result = sanity_check(
            model, x, CAM_LAYER, methods=("gradcam", "eigencam"), checks="independent", steps="key", split=split
        )
        assert result.layers[0] == "classifier.fc" and result.layers_after == 1
        fc_rows = [r for r in result.rows if r["step"] == 1]
        assert {r["layer"] for r in fc_rows} == {"classifier.fc"} and all(r["after_layer"] for r in fc_rows)
        for row in fc_rows:
            if row["method"] == "eigencam":
                assert row["spearman"] == 1.0 and row["ssim"] == 1.0
        grad = _mean(result, "gradcam", "independent", step=1)
        assert grad["spearman"] < 0.5 and grad["ssim"] < 0.7, grad


def test_split_path_gives_the_naive_numbers_and_skips_the_layers_before():
    torch.manual_seed(0)
    model = ShuffledResidualNet().eval()
    x = torch.randn(2, 3, 12, 12)
    work = working_copy(model)
    order = execution_order(work, x, "act")
    assert [lay.name for lay in order] == ["conv1", "conv2", "conv3", "fc"]
    assert [lay.after_layer for lay in order] == [False, False, True, True]
    engine = MapEngine(work, x, "act", None, {}, True, [lay.name for lay in order])
    assert engine.tail is not None and engine.tail_layers == {"conv3", "fc"}
    kwargs = dict(methods=("gradcam", "xgradcam", "gradcam++", "layercam"), random_classes=2)
    fast = sanity_check(model, x, "act", **kwargs)
    naive = sanity_check(model, x, "act", split=False, **kwargs)
    assert fast.layers == ("fc", "conv3", "conv2", "conv1") and fast.layers_after == 2
    assert len(fast.rows) == len(naive.rows) == 4 * 2 * (1 + 4 + 4 + 2)
    for a, b in zip(fast.rows, naive.rows):
        assert {k: a[k] for k in fast.COLUMNS} == {k: b[k] for k in naive.COLUMNS}
        for measure in ("spearman", "ssim"):
            assert a[measure] == pytest.approx(b[measure], abs=1e-5), (a, b)
    tail = sanity_check(model, x, "act", methods="gradcam", checks=("cascading", "independent"), steps="tail")
    assert sorted({(r["check"], r["step"], r["layer"], r["after_layer"]) for r in tail.rows}, key=str) == [
        ("cascading", 0, None, None),
        ("cascading", 1, "fc", True),
        ("cascading", 2, "conv3", True),
        ("independent", 1, "fc", True),
        ("independent", 2, "conv3", True),
    ]


def _state(model: nn.Module) -> tuple:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        hook_counts(model),
    )


def _assert_same_state(model: nn.Module, before: tuple) -> None:
    tensors, training, requires_grad, hooks = before
    after = model.state_dict()
    assert after.keys() == tensors.keys()
    assert all(torch.equal(after[k], v) for k, v in tensors.items())
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == requires_grad
    assert hook_counts(model) == hooks


def test_model_rng_and_flags_unchanged_after_a_run_and_after_a_cancelled_run(shapes_images):
    model, x = _shapes("shapes_vgg", shapes_images)
    model.train()  # a user model left in training mode, with one frozen layer
    model.features.block1.conv.weight.requires_grad_(False)
    before, rng = _state(model), torch.get_rng_state()
    calls = []

    def cancel(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 5:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt, match="stop"):  # mid-run: after the random logits, mid-cascade
        sanity_check(
            model,
            x,
            CAM_LAYER,
            methods=("gradcam", "ablationcam"),
            checks=("cascading", "random_logit"),
            random_classes=1,
            steps="key",
            progress=cancel,
        )
    assert calls[-1][0] == 5 and calls[0] == (1, calls[0][1])
    _assert_same_state(model, before)
    assert torch.equal(torch.get_rng_state(), rng)
    sanity_check(model, x, CAM_LAYER, methods=("gradcam",), steps="key")
    _assert_same_state(model, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_seeded_runs_repeat_exactly_and_the_seed_matters(gap_net, image_batch):
    kwargs = dict(methods=("gradcam", "eigencam"), checks=("cascading", "random_logit"))
    first = sanity_check(gap_net, image_batch, "features.3", seed=5, **kwargs)
    again = sanity_check(gap_net, image_batch, "features.3", seed=5, **kwargs)
    other = sanity_check(gap_net, image_batch, "features.3", seed=6, **kwargs)
    assert first.rows == again.rows
    cascading = [
        (a["spearman"], b["spearman"])
        for a, b in zip(first.rows, other.rows)
        if a["check"] == "cascading" and a["step"] > 0
    ]
    assert any(x != y for x, y in cascading)


def test_progress_counts_every_map_and_kept_maps_match_explain(gap_net, image_batch):
    seen = []
    result = sanity_check(
        gap_net,
        image_batch,
        "features.3",
        methods=("gradcam", "scorecam"),
        steps="key",
        random_classes=2,
        keep_maps=True,
        progress=lambda d, t: seen.append((d, t)),
    )
    total = seen[0][1]
    assert seen == [(i, total) for i in range(1, total + 1)]
    # maps: the original, 2 random classes, 3 independent and 2 cascading steps (1 layer after), per method
    assert total == 2 * (1 + 2 + 3 + 2)
    for method in ("gradcam", "scorecam"):
        reference = xw.explain(gap_net, image_batch, "features.3", method)
        assert torch.allclose(result.maps[(method, "cascading", 0)], reference.map, atol=1e-6)
        assert result.maps[(method, "cascading", 3)].shape == (2, 16, 16)
    table = result.table()
    assert list(table.columns) == [*SanityResult.COLUMNS, "spearman", "ssim"]
    assert set(table.check) == {"cascading", "independent", "random_logit"}
    summary = result.summary()
    assert list(summary.method) == ["gradcam", "scorecam"]
    scores = result.image_scores("scorecam")
    assert sorted(scores) == ["mprt_spearman", "mprt_ssim", "random_logit_spearman", "random_logit_ssim"]
    full = table[(table.method == "scorecam") & (table.check == "cascading") & (table.step == 3)]
    assert scores["mprt_ssim"] == full.sort_values("image").ssim.tolist()
    logits = table[(table.method == "scorecam") & (table.check == "random_logit")].groupby("image").spearman.mean()
    assert scores["random_logit_spearman"] == pytest.approx(logits.tolist(), abs=1e-12)


def test_weights_restore_exactly_and_modules_without_reset_are_redrawn():
    class Gain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.linspace(0.5, 2.0, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain

    model = nn.Sequential(nn.Linear(4, 8), Gain(), nn.BatchNorm1d(8))
    model[2].running_mean.fill_(0.3)
    order = execution_order(model, torch.randn(3, 4), "0")
    assert [lay.name for lay in order] == ["0", "1", "2"]
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    weights = Weights(model, order, [11, 12, 13])
    for name in ("0", "1", "2"):
        weights.randomise(name)
    assert not torch.equal(model[1].gain, saved["1.gain"])
    assert torch.equal(model[2].running_mean, torch.zeros(8))  # BatchNorm's reset_parameters
    reference = nn.Linear(4, 8)
    torch.manual_seed(11)
    reference.reset_parameters()
    assert torch.equal(model[0].weight, reference.weight)  # Quantus's scheme: seed, then reset_parameters
    weights.restore_all()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_options_are_validated_with_clear_errors(gap_net, image_batch):
    def check(**kwargs):
        return sanity_check(gap_net, image_batch, kwargs.pop("layer", "features.3"), **kwargs)

    cases = [
        (dict(methods="nope"), ValueError, "unknown methods 'nope'"),
        (dict(methods=[]), TypeError, "non-empty list"),
        (dict(methods=["gradcam", "GradCAM"]), ValueError, "twice"),
        (dict(checks="mprt"), ValueError, "unknown checks 'mprt'"),
        (dict(similarity="pearson"), ValueError, "unknown similarity"),
        (dict(steps="some"), ValueError, "steps must be one of"),
        (dict(random_classes=0), ValueError, "random_classes must be a positive int"),
        (dict(random_classes=5), ValueError, "only 4 classes besides"),
        (dict(threshold=2), ValueError, "threshold"),
        (dict(seed=-1), ValueError, "seed must be an int >= 0"),
        (dict(seed=[1, 2]), ValueError, "seed lists 2 seeds, but the model has 3"),
        (dict(progress=3), TypeError, "progress must be a callable"),
        (dict(keep_maps="yes"), TypeError, "keep_maps must be a bool"),
        (dict(options={"scorecam": {}}), ValueError, "not among the methods"),
        (dict(methods="scorecam", options={"scorecam": {"nope": 1}}), ValueError, "unknown option 'nope'"),
        (dict(target=lambda out: out[:, 0]), ValueError, "random_logit check needs class-index targets"),
        (dict(layer="features.9"), ValueError, "not a submodule"),
        (dict(target=7), ValueError, "out of range"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            check(**kwargs)


def test_a_callable_target_works_without_random_logit(gap_net, image_batch):
    result = sanity_check(
        gap_net,
        image_batch,
        "features.3",
        methods="gradcam",
        target=lambda out: out[:, 1],
        checks=("cascading",),
        steps="key",
    )
    assert {r["target_class"] for r in result.rows} == {None}
    assert result.verdicts["gradcam"].random_logit is None and result.verdicts["gradcam"].passes_random_logit is None
