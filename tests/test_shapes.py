"""The shapes benchmark: exact masks from the generator, and shipped nets that know the answer."""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from xcam_widgets.shapes import (
    CAM_LAYER,
    CLEAN_MODELS,
    SHAPE_CLASSES,
    SHAPES_MODELS,
    load_shapes_model,
    make_shapes,
    preprocess,
)
from xcam_widgets.shapes.nets import DATA_DIR, build, weights_path
from xcam_widgets.shapes.train import HELDOUT_SEED, accuracy

TEST_SEED = 424_242  # neither a training seed (seed * 1000 + epoch) nor the seed of the recorded accuracies


@pytest.fixture(scope="module")
def batch():
    return make_shapes(400, seed=5, pair_fraction=0.5)


def test_batch_layout(batch):
    n = 400
    assert batch.images.shape == batch.backgrounds.shape == (n, 3, 64, 64)
    assert batch.images.dtype == torch.float32 and batch.labels.dtype == torch.long
    assert batch.labels.shape == (n, 2) and batch.masks.shape == (n, 6, 64, 64) and batch.masks.dtype == torch.bool
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    pairs = (batch.labels[:, 1] >= 0).float().mean().item()
    assert 0.4 < pairs < 0.6
    assert (batch.labels[:, 0] >= 0).all()
    assert torch.bincount(batch.labels[:, 0], minlength=6).min() > 30  # every class is drawn


def test_masks_are_exactly_where_the_image_differs_from_its_background(batch):
    differs = (batch.images != batch.backgrounds).any(1)
    assert torch.equal(differs, batch.masks.any(1))
    contrast = (batch.images - batch.backgrounds).abs().amin(1)  # the weakest channel
    assert contrast[differs].min() >= 0.2 - 1e-6


def test_backgrounds_are_textured_not_flat(batch):
    spread = batch.backgrounds.flatten(2).std(2).amax(1)
    assert (spread > 0.01).all()


def test_each_shape_is_one_flat_colour(batch):
    for i in range(0, 400, 7):
        for c in batch.labels[i][batch.labels[i] >= 0].tolist():
            pixels = batch.images[i][:, batch.masks[i, c]]
            assert torch.equal(pixels.amin(1), pixels.amax(1))


def test_labels_match_masks(batch):
    expected = torch.zeros(400, 6)
    for slot in range(2):
        has = batch.labels[:, slot] >= 0
        expected[has.nonzero().squeeze(1), batch.labels[has, slot]] = 1
    assert torch.equal(batch.present, expected)
    pairs = batch.labels[:, 1] >= 0
    assert (batch.labels[pairs, 0] != batch.labels[pairs, 1]).all()


def test_shapes_neither_touch_each_other_nor_the_border(batch):
    grown = F.max_pool2d(batch.masks.float(), 3, stride=1, padding=1)  # each mask grown by one pixel
    assert grown.sum(1).max() <= 1
    border = batch.masks.clone()
    border[..., 1:-1, 1:-1] = False
    assert not border.any()


def test_mask_areas_and_holes(batch):
    """Areas lie between the smallest star (radius 8) and the largest circle (radius 14); the
    centre of each shape is covered, except for the ring's hole."""
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    for i in range(400):
        for c in batch.labels[i][batch.labels[i] >= 0].tolist():
            mask = batch.masks[i, c]
            area = mask.sum().item()
            assert 60 <= area <= 3.15 * 14**2
            # the centre of the bounding box is the shape's centre for every class but the odd-pointed ones
            if SHAPE_CLASSES[c] in ("circle", "square", "cross", "ring"):
                cy = (ys[mask].min() + ys[mask].max()) / 2
                cx = (xs[mask].min() + xs[mask].max()) / 2
                assert mask[cy.round().long(), cx.round().long()] == (SHAPE_CLASSES[c] != "ring")


def test_same_seed_same_batch_and_different_seed_different_batch():
    a, b, c = make_shapes(20, 3, 0.5), make_shapes(20, 3, 0.5), make_shapes(20, 4, 0.5)
    for field in ("images", "labels", "masks", "backgrounds"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("kwargs", [{"n": -1, "seed": 0}, {"n": 2, "seed": 0, "pair_fraction": 1.5}])
def test_make_shapes_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="n must|pair_fraction"):
        make_shapes(**kwargs)


def test_preprocess_accepts_pil_images_and_tensors(batch):
    x = batch.images[0]
    assert torch.equal(preprocess(x), (x - 0.5) / 0.25)
    assert torch.equal(preprocess(batch.images[:3]), (batch.images[:3] - 0.5) / 0.25)
    pil = Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy())
    assert (preprocess(pil) - preprocess(x)).abs().max() <= 0.51 / 255 / 0.25
    assert preprocess(pil.resize((128, 96))).shape == (3, 64, 64)
    assert preprocess(pil.convert("L")).shape == (3, 64, 64)
    assert preprocess(torch.rand(3, 32, 40)).shape == (3, 64, 64)


@pytest.mark.parametrize(
    "image, error",
    [
        (torch.rand(4, 64, 64), ValueError),
        (torch.rand(64, 64), ValueError),
        (torch.zeros(3, 64, 64, dtype=torch.uint8), TypeError),
        ([0.5], TypeError),
    ],
)
def test_preprocess_rejects_bad_images(image, error):
    with pytest.raises(error, match="image"):
        preprocess(image)


@pytest.mark.parametrize("name", SHAPES_MODELS)
def test_nets_are_fx_traceable_sequentials(name):
    torch.manual_seed(0)
    model = build(name).eval()
    assert [n for n, _ in model.named_children()] == ["features", "pool", "classifier"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x))
        a = model.features(x)
    assert model.get_submodule(CAM_LAYER) is model.features[-1]  # the CAM layer's output is `a`
    assert model(x).shape == (2, len(SHAPE_CLASSES))
    assert a.shape[-2:] == (16, 16)


def test_gap_net_head_is_global_average_pooling_then_linear():
    """logits = W mean_xy(A) + b on the CAM layer's output A."""
    torch.manual_seed(0)
    model = build("shapes_gap").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model.features(x)
        fc = model.classifier.fc
        assert torch.allclose(model(x), a.mean((2, 3)) @ fc.weight.T + fc.bias, atol=1e-5)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="shapes_gap"):
        load_shapes_model("shapes_resnet")


@pytest.mark.parametrize("name", CLEAN_MODELS)
def test_shipped_nets_classify_held_out_single_shapes(name):
    model, pre, categories = load_shapes_model(name)
    assert not model.training and pre is preprocess and categories == list(SHAPE_CLASSES)
    assert accuracy(model, 300, TEST_SEED) >= 0.97


@pytest.mark.parametrize("name", CLEAN_MODELS)
def test_shipped_nets_rank_both_shapes_of_a_pair_on_top(name):
    model, _, _ = load_shapes_model(name)
    assert accuracy(model, 300, TEST_SEED + 1, pair_fraction=1.0) >= 0.9


def test_shipped_weights_are_small_and_their_record_matches():
    sizes = [weights_path(name).stat().st_size for name in SHAPES_MODELS]
    assert sum(sizes) < 5_000_000
    record = json.loads((DATA_DIR / "shapes_models.json").read_text())
    assert record["heldout_seed"] == HELDOUT_SEED
    for name, size in zip(SHAPES_MODELS, sizes):
        assert record[name]["bytes"] == size
    for name in CLEAN_MODELS:
        assert record[name]["heldout_single_accuracy"] >= 0.97
