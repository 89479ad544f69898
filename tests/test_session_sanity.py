"""xcam_widgets.session.Session.sanity (and sanity_view): the Sanity tab's plain data agrees with an
independent `sanity_check` call, its maps are what `explain` gives, it is cached with the image,
bad input is a clear error, and the model is left bit for bit as it was."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyVGGNet

import xcam_widgets as xw
from xcam_widgets.maps import display_map
from xcam_widgets.sanity import sanity_check
from xcam_widgets.session import Session

X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))
LAYER = "features.4"  # TinyVGGNet: classifier.1 and classifier.3 (two Linear layers) run after it
METHODS = ("xgradcam", "gradcam", "eigencam", "scorecam")


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


def test_sanity_agrees_with_a_direct_sanity_check(net):
    s = Session(net, X)
    target = 3
    options = {"scorecam": {"batch_size": 4, "top_channels": 3}}
    view = s.sanity(LAYER, METHODS, target, options=options)
    direct = sanity_check(
        net, X[None], LAYER, METHODS, target, ("cascading", "random_logit"), steps="tail", options=options
    )
    assert view.layer == LAYER and view.target == target and view.layers_after == 2
    assert [strip.method for strip in view.strips] == list(METHODS)
    for strip in view.strips:
        rows = [r for r in direct.rows if r["method"] == strip.method]
        cascade = sorted((r for r in rows if r["check"] == "cascading"), key=lambda r: r["step"])
        randoms = sorted((r for r in rows if r["check"] == "random_logit"), key=lambda r: r["step"])
        assert strip.steps == ("original", "classifier.3", "classifier.1")  # output first
        for measure in ("spearman", "ssim"):
            assert strip.similarity[measure] == pytest.approx([r[measure] for r in cascade], abs=1e-12)
            mean = sum(r[measure] for r in randoms) / len(randoms)
            assert strip.random_logit[measure] == pytest.approx(mean, abs=1e-12)
        assert strip.similarity["spearman"][0] == pytest.approx(1.0)  # the original against itself
        assert strip.random_classes == tuple(r["target_class"] for r in randoms)
        assert len(set(strip.random_classes)) == 3 and target not in strip.random_classes
        assert strip.verdict == direct.verdicts[strip.method].describe()
        assert len(strip.maps) == 3 and len(strip.random_maps) == 3
        assert all(m.shape == (16, 16) and 0 <= m.min() and m.max() <= 1 for m in strip.maps + strip.random_maps)
        # the strip's first map is the displayed map of `explain` on the untouched model
        raw = xw.explain(net, X, LAYER, method=strip.method, target=target, **options.get(strip.method, {})).raw
        torch.testing.assert_close(torch.from_numpy(strip.maps[0]), display_map(raw, (16, 16))[0])
        random_raw = xw.explain(
            net, X, LAYER, method=strip.method, target=strip.random_classes[0], **options.get(strip.method, {})
        ).raw
        torch.testing.assert_close(torch.from_numpy(strip.random_maps[0]), display_map(random_raw, (16, 16))[0])


def test_eigencam_is_class_agnostic_and_its_verdict_says_so(net):
    view = Session(net, X).sanity(LAYER, ("eigencam",))
    (strip,) = view.strips
    assert strip.random_logit == pytest.approx({"spearman": 1.0, "ssim": 1.0}, abs=1e-6)
    assert strip.similarity["ssim"] == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)  # A is untouched by the tail
    assert strip.passes_random_logit is False and strip.passes_cascading is False
    assert "Eigen-CAM fails the random-logit check" in strip.verdict


def test_sanity_is_cached_with_the_image_and_a_new_image_recomputes(net):
    s = Session(net, X)
    first = s.sanity(LAYER, ("gradcam",), 1)
    assert s.sanity(LAYER, ["GradCAM"], 1) is first and s.stats["sanity"] == 1  # names are normalised
    s.sanity(LAYER, ("gradcam",), 2)
    assert s.stats["sanity"] == 2
    s.set_image(X * 2)
    again = s.sanity(LAYER, ("gradcam",), 1)
    assert again is not first and s.stats["sanity"] == 3


def test_bad_input_is_a_clear_error_and_the_session_stays_usable(net):
    s = Session(net, X)
    with pytest.raises(ValueError, match="unknown method 'nocam'"):
        s.sanity(LAYER, ("gradcam", "nocam"))
    with pytest.raises(ValueError, match="layer 'features.9' is not a candidate layer"):
        s.sanity("features.9", ("gradcam",))
    with pytest.raises(ValueError, match="options name method 'scorecam', which is not checked"):
        s.sanity(LAYER, ("gradcam",), options={"scorecam": {"batch_size": 4}})
    with pytest.raises(ValueError, match="unknown option 'samples' for method 'scorecam'"):
        s.sanity(LAYER, ("scorecam",), options={"scorecam": {"samples": 4}})
    with pytest.raises(ValueError, match="steps must be one of"):
        s.sanity(LAYER, ("gradcam",), steps="some")
    assert s.stats["sanity"] == 0
    assert len(s.sanity(LAYER, ("gradcam",)).strips) == 1


def test_the_model_is_left_bit_for_bit_as_it_was(net):
    net.train()
    net.features[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    rng = torch.get_rng_state()
    s = Session(net, X)
    s.sanity(LAYER, METHODS, 0)

    def cancel(done: int, total: int) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        s.sanity(LAYER, METHODS, 1, progress=cancel)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert [m.training for m in net.modules()] == flags
    assert [p.requires_grad for p in net.parameters()] == grads
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}
    assert torch.equal(torch.get_rng_state(), rng)
