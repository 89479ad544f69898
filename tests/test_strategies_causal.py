"""Latent features and the causal check of `xw.discover` on the bundled shortcut net (tiny runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.evaluation.specs import shapes_from_spec
from xcam_widgets.shapes.dataset import MARK_SIZE
from xcam_widgets.strategies import compute_latents
from xcam_widgets.strategies.causal import occlusion_masks
from xcam_widgets.strategies.images import image_access, model_source

SPEC = "shapes_shortcut:30:3:random"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    bundle = xw.load_model("shapes_shortcut")
    out = tmp_path_factory.mktemp("run") / "results.csv"
    result = xw.evaluate(bundle, SPEC, methods="xgradcam", target="top1", metrics=["energy"], progress=False, out=out)
    return bundle, result, out


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training for m in model.modules())  # the user's train mode, restored
    assert all(p.requires_grad for p in model.parameters())
    assert not any(xw.hook_counts(model).values())


def test_latent_vectors_recomputed_with_the_model_match_its_maps(run) -> None:
    """Σ_k p_k equals the sum of the runner's stored XGrad-CAM map (16×16, unpooled; float16), and the
    top variant the sum of its hottest 10% (26 of 256 pixels)."""
    bundle, result, _ = run
    latents = compute_latents(
        result.table, bundle.model, model_source(bundle, image_access(None, None, result.meta))[1]
    )
    assert latents.grid == result.maps[0].shape == (16, 16)
    stored = [result.maps[r].astype(np.float64) for r in result.table["row"]]
    np.testing.assert_allclose(latents.vectors["all"].sum(1), [m.sum() for m in stored], rtol=1e-2, atol=1e-2)
    hottest = [np.sort(m.ravel())[::-1][:26].sum() for m in stored]
    np.testing.assert_allclose(latents.vectors["top"].sum(1), hottest, rtol=1e-2, atol=1e-2)


def test_discover_with_latent_features_from_the_run_path(run) -> None:
    bundle, _, out = run
    d = xw.discover(out, by="all", features="latent", model=bundle, clusters=2, min_size=8)
    assert d.features == "latent_top"
    assert len(d.assignments) == 30 and set(d.assignments["cluster"]) == {0, 1}
    for c in (0, 1):
        assert len(d.top_channels[c]) == 3
        crops = d.prototypes[c]
        assert len(crops) == 3 * min(4, int((d.assignments["cluster"] == c).sum()))
        assert all(p.crop.dtype == np.uint8 and p.crop.shape == (16, 16, 3) for p in crops)
        assert {p.channel for p in crops} == set(d.top_channels[c])
    assert d.prototype_note == ""


def test_occluding_the_mark_drops_the_score_more_than_a_random_region_and_leaves_the_model(run) -> None:
    bundle, result, _ = run
    model = bundle.model
    model.train()  # the check must put it back
    before = state(model)
    try:
        d = xw.discover(result, by="all", clusters=2, min_size=8)
        # on this net the maps point at the watermark, top left: the hottest 10% cover it
        masks = occlusion_masks([result.maps[r] for r in d.rows["row"]], (64, 64), 0.1)
        assert masks[:, :MARK_SIZE, :MARK_SIZE].float().mean() > 0.5
        cluster = int(d.clusters.sort_values("size")["cluster"].iloc[-1])
        check = d.causal_check(cluster, model=bundle, how="occlude", area=0.1)
        assert_unchanged(model, before)
        table = check.table.set_index(["who", "removed"])
        assert table.loc[("members", "evidence"), "score_drop"] > table.loc[("members", "random"), "score_drop"] + 0.5
        # hiding the mark flips most predictions; hiding as much elsewhere flips few
        assert table.loc[("members", "evidence"), "kept"] < 0.5 < 0.7 < table.loc[("members", "random"), "kept"]
        assert check.effect == pytest.approx(
            table.loc[("members", "evidence"), "score_drop"] - table.loc[("members", "random"), "score_drop"]
        )
        marks = shapes_from_spec(SPEC).marks.numpy()
        preds = result.table["predicted"].to_numpy()
        assert (preds == marks).mean() > 0.9  # the members are mark-driven
        d_latent = xw.discover(result, by="all", clusters=2, min_size=8, features="latent", model=bundle)
        check = d_latent.causal_check(cluster, model=bundle, how="channels")
        assert_unchanged(model, before)
        assert check.channels == d_latent.top_channels[cluster] and len(check.table) == 4
    finally:
        model.eval()


def test_a_failing_causal_check_leaves_no_hook(run, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, result, _ = run
    d = xw.discover(result, by="all", clusters=2, min_size=8, features="latent", model=bundle)
    before = state(bundle.model)
    calls = {"n": 0}
    forward = type(bundle.model).forward

    def failing(self, x):  # the second pass (channels zeroed) fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory")
        return forward(self, x)

    monkeypatch.setattr(type(bundle.model), "forward", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        d.causal_check(0, model=bundle, how="channels")
    monkeypatch.undo()
    assert not any(xw.hook_counts(bundle.model).values())
    assert not any(m.training for m in bundle.model.modules())
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
