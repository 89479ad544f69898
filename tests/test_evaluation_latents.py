"""The runner's stored latents (issue 21): per row of a gradient method, XGrad-CAM's channel shares over
the whole map and its hottest 10% (float16) and each channel's peak, beside the low-res map; in the part
files (resume), the final files and `open_result`; used by `xw.discover` without a model. Also issue 25
item 6's follow-up: default metrics on a token layer in `evaluate` and in the Gallery, with the note."""

from __future__ import annotations

import html
import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import xcam_widgets as xw
from xcam_widgets.evaluation import EvaluationResult, evaluate, open_images, open_result, run_paths
from xcam_widgets.evaluation.specs import shapes_from_spec
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes
from xcam_widgets.strategies import compute_latents
from xcam_widgets.widgets.gallery import Gallery

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = ["features.block3", "features.block4"]
METHODS = ["gradcam", "eigencam", "xgradcam"]  # eigencam: no channel shares, so no latents
OPTIONS = dict(methods=METHODS, layers=LAYERS, metrics=["energy"], batch_size=4, progress=False)
DIAGNOSTICS = ["conservation_error", "sensitivity_error", "sensitivity_r"]


class TinyViT(nn.Module):
    """tests/test_evaluation_round3.py's: 16×16 patches (a 4×4 `[B, K, h, w]` grid at 64 px) and a class
    token, two pre-norm residual MLP blocks on tokens `[B, N, D]`, a linear head."""

    def __init__(self, dim: int = 8, classes: int = 6) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, stride=16)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) for _ in "ab"))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        for norm, block in zip(self.norms, self.blocks):
            tokens = tokens + block(norm(tokens))
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(dim=1))


class Pairs(Dataset):
    def __init__(self, items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


@pytest.fixture(scope="module")
def run(random_shapes_vgg, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("latents") / "results.csv"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        result = evaluate(random_shapes_vgg, "shapes:10", out=out, **OPTIONS)
    return result, out


def reference(result: EvaluationResult, bundle, layer: str):
    """`strategies.compute_latents` of the gradient rows at `layer`: the model run again, 3 rows a batch."""
    table = result.table[(result.table["layer"] == layer) & result.table["method"].isin(["gradcam", "xgradcam"])]
    source = open_images(shapes_from_spec(result.meta["images"]), bundle.preprocess)
    return compute_latents(table, bundle.model, source, batch_size=3)


@pytest.mark.parametrize("layer", LAYERS)
def test_stored_latents_equal_those_recomputed_with_the_model(run, random_shapes_vgg, layer) -> None:
    result, _ = run
    expected = reference(result, random_shapes_vgg, layer)
    assert len(expected.rows) == 20  # 10 images × (gradcam, xgradcam)
    stored = result.latents.take(expected.rows)
    assert stored.grid == expected.grid and stored.peaks.tolist() == expected.peaks.tolist()
    for region in ("all", "top"):
        assert stored.vectors[region].dtype == np.float16
        assert stored.vectors[region].shape == expected.vectors[region].shape
        np.testing.assert_allclose(
            stored.vectors[region].astype(np.float32),
            expected.vectors[region].astype(np.float16).astype(np.float32),
            rtol=2e-3,
            atol=1e-3 * float(np.abs(expected.vectors[region]).max()),
        )
    # A row's vector depends on its image, layer and class only: gradcam's equals xgradcam's.
    np.testing.assert_array_equal(stored.vectors["all"][0::2], stored.vectors["all"][1::2])


def test_the_whole_map_shares_sum_to_the_stored_xgradcam_map(run) -> None:
    """Conservation: Σ_k p_k = Σ_xy M for the row's own XGrad-CAM map (block4 is 16×16: stored unpooled)."""
    result, _ = run
    table = result.table
    rows = table[(table["method"] == "xgradcam") & (table["layer"] == "features.block4")]["row"].to_numpy()
    latents = result.latents.take(rows)
    assert latents.grid == result.maps[int(rows[0])].shape == (16, 16)
    sums = [result.maps[int(r)].astype(np.float64).sum() for r in rows]
    np.testing.assert_allclose(latents.vectors["all"].astype(np.float64).sum(1), sums, rtol=2e-2, atol=1e-2)


def test_only_gradient_rows_have_latents_and_the_files_reopen_them(run) -> None:
    result, out = run
    table = result.table
    gradient = table[table["method"] != "eigencam"]["row"].to_numpy()
    assert result.latents.covers(gradient.tolist())
    assert len(result.latents) == len(gradient) == 40
    eigen = table[table["method"] == "eigencam"]["row"].tolist()
    assert not any(result.latents.covers([r]) for r in eigen)
    assert run_paths(out).latents.is_file()
    for again in (open_result(out), open_result(run_paths(out).parts)):
        assert again.latents is not None and len(again.latents) == 40
        for l_index in (0, 1):
            keys = gradient[gradient % 2 == l_index]  # row = (position × 3 + method) × 2 + layer
            taken, original = again.latents.take(keys), result.latents.take(keys)
            assert taken.grid == original.grid == (16, 16)
            for region in ("all", "top"):
                np.testing.assert_array_equal(taken.vectors[region], original.vectors[region])
            np.testing.assert_array_equal(taken.peaks, original.peaks)


def test_discover_uses_the_stored_latents_without_a_model(run) -> None:
    result, _ = run
    found = xw.discover(result, method="xgradcam", layer="features.block4", by="all", clusters=2, min_size=6)
    assert found.features == "latent_top" and found.model is None
    # Its top channels are those of the members' stored "top" shares.
    members = found.members(0)
    shares = result.latents.take(members).vectors["top"].astype(np.float32).mean(0)
    assert found.top_channels[0][0] == int(np.argmax(shares))
    # eigencam rows have no latents: "auto" falls back to the maps, "latent" says how to get them.
    assert xw.discover(result, method="eigencam", layer="features.block4", by="all", min_size=6).features == "spatial"
    with pytest.raises(ValueError, match=r"rerun with overwrite=True, or pass model="):
        xw.discover(result, method="eigencam", layer="features.block4", by="all", features="latent", min_size=6)


def test_a_resumed_run_has_the_latents_of_an_uninterrupted_one(run, random_shapes_vgg, tmp_path) -> None:
    result, _ = run
    out = tmp_path / "resumed.csv"
    stop = threading.Event()
    first = evaluate(random_shapes_vgg, "shapes:10", out=out, stop=stop, on_rows=lambda *_: stop.set(), **OPTIONS)
    assert not first.complete and len(first.latents) == 4 * 2 * 2  # one batch: 4 images × 2 methods × 2 layers
    resumed = evaluate(random_shapes_vgg, "shapes:10", out=out, **OPTIONS)
    assert resumed.complete and len(resumed.latents) == len(result.latents)
    rows = result.table[result.table["method"] != "eigencam"]
    for layer in LAYERS:
        keys = rows[rows["layer"] == layer]["row"].to_numpy()
        a, b = resumed.latents.take(keys), result.latents.take(keys)
        np.testing.assert_array_equal(a.peaks, b.peaks)
        for region in ("all", "top"):
            np.testing.assert_allclose(a.vectors[region], b.vectors[region], rtol=1e-3, atol=1e-6)


def test_error_rows_have_no_latents_and_latents_false_stores_none(random_shapes_vgg, tmp_path) -> None:
    data = make_shapes(3, seed=4)
    labels = [int(data.labels[0, 0]), 17, int(data.labels[2, 0])]  # 17: not one of the 6 classes
    options = dict(methods="xgradcam", metrics=["deletion"], steps=2, batch_size=3, progress=False)
    result = evaluate(random_shapes_vgg, Pairs(list(zip(data.images, labels))), **options)
    assert result.table["error"].tolist()[1].startswith("image 1 has label 17")
    assert sorted(result.latents.layers[0].rows.tolist()) == [0, 2]
    out = tmp_path / "none.csv"
    bare = evaluate(random_shapes_vgg, Pairs(list(zip(data.images, labels))), out=out, latents=False, **options)
    assert bare.latents is None and open_result(out).latents is None and not run_paths(out).latents.exists()
    with pytest.raises(ValueError, match=r"rerun with overwrite=True, or pass model="):
        xw.discover(bare, features="latent", by="all", min_size=4)
    with pytest.raises(TypeError, match="latents must be True or False"):
        evaluate(random_shapes_vgg, "shapes:1", latents="yes", progress=False)


@pytest.fixture(scope="module")
def vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


NOTE = "diagnostics (conservation and sensitivity) are left out on token layer(s) ['blocks.0']"


def test_default_metrics_on_a_token_layer_run_with_a_note_in_evaluate_and_the_gallery(vit) -> None:
    data = make_shapes(2, seed=3)
    result = evaluate(vit, data, methods="gradcam", layers=["patch", "blocks.0"], steps=2, progress=False)
    assert result.meta["notes"] == [NOTE + ": their true drops need a [B, K, h, w] layer"]
    token = result.table[result.table["layer"] == "blocks.0"]
    assert (result.table["error"] == "").all() and token[DIAGNOSTICS].isna().all().all()
    # capture reshapes the token layer's 16 patch tokens to a 4×4 grid: it gets latents too.
    assert [result.latents.layers[i].grid for i in (0, 1)] == [(4, 4), (4, 4)]
    gallery = Gallery(vit, data, methods=["gradcam"], layers=["patch", "blocks.0"], steps=2, background=False)
    try:
        assert gallery.run.state == "done" and html.unescape(gallery.status.value) == result.meta["notes"][0]
        frame = gallery.table.frame
        assert len(frame) == 4 and (frame["error"] == "").all()
        assert frame[frame["layer"] == "blocks.0"][DIAGNOSTICS].isna().all().all()
        assert frame[frame["layer"] == "patch"][DIAGNOSTICS].notna().all().all()
    finally:
        gallery.close()


def test_the_maps_and_latents_of_a_tiny_vit_agree_with_explain(vit) -> None:
    """The patch layer's stored shares are XGrad-CAM's contributions summed by hand (an oracle)."""
    data = make_shapes(2, seed=3)
    result = evaluate(vit, data, methods="xgradcam", layers=["patch"], metrics=["energy"], progress=False)
    x, classes = nets.preprocess(data.images), torch.tensor(result.table["class"].tolist())
    contributions = xw.explain(vit, x, "patch", method="xgradcam", target=classes).contributions
    stored = result.latents.take(result.table["row"].to_numpy()).vectors["all"].astype(np.float32)
    np.testing.assert_allclose(stored, contributions.sum(dim=(2, 3)).numpy(), rtol=2e-3, atol=1e-4)


@pytest.mark.timeout(240)
def test_a_ray_run_keeps_the_latents_of_a_local_one(run, random_shapes_vgg, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    result, _ = run
    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning")
    try:
        out = tmp_path / "ray.csv"
        shipped = evaluate(
            random_shapes_vgg, "shapes:10", engine="ray", out=out, engine_options={"workers": 1}, **OPTIONS
        )
    finally:
        ray.shutdown()
    for again in (shipped, open_result(out)):
        assert len(again.latents) == len(result.latents) == 40
        for latents in result.latents.layers.values():
            other = again.latents.take(latents.rows)
            np.testing.assert_array_equal(other.peaks, latents.peaks)
            for region in ("all", "top"):
                np.testing.assert_allclose(other.vectors[region], latents.vectors[region], rtol=1e-3, atol=1e-6)
