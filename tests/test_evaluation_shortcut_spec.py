"""The images spec "shapes_shortcut:N[:SEED[:MARKS]]": the watermarked shapes by name, as the runner,
the CLI and the Gallery take them (an existing path still wins over the spec)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

import xcam_widgets as xw
from xcam_widgets.evaluation import open_images, open_result
from xcam_widgets.evaluation.sources import ShapesSource, categories_of, is_shapes
from xcam_widgets.shapes import SHAPE_CLASSES, ShortcutBatch, make_shapes, mark_patterns, preprocess
from xcam_widgets.shapes.constants import HELDOUT_SEED


def corner(images: torch.Tensor) -> torch.Tensor:
    return images[..., :8, :8]


def outside_corner(images: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(images.shape[-2:], dtype=torch.bool)
    keep[:8, :8] = False
    return images[..., keep]


def test_the_default_is_the_held_out_shapes_with_the_class_mark():
    source = open_images("shapes_shortcut:5", preprocess)
    clean = make_shapes(5, seed=HELDOUT_SEED)
    assert isinstance(source, ShapesSource) and isinstance(source.data, ShortcutBatch)
    assert source.spec == "shapes_shortcut:5" and len(source) == 5 and source.has_masks
    assert torch.equal(source.data.labels, clean.labels) and torch.equal(source.data.marks, clean.labels[:, 0])
    expected = mark_patterns()[clean.labels[:, 0]][:, None].expand(-1, 3, -1, -1)
    assert torch.equal(corner(source.data.images), expected)
    assert torch.equal(outside_corner(source.data.images), outside_corner(clean.images))
    batch = source.take([4, 0])
    assert batch.labels.tolist() == [int(clean.labels[4, 0]), int(clean.labels[0, 0])]
    assert torch.equal(batch.x, preprocess(source.data.images[[4, 0]]))


@pytest.mark.parametrize("marks", ["label", "random", "none"])
def test_seed_and_marks(marks):
    source = open_images(f"shapes_shortcut:6:31:{marks}", preprocess)
    clean = make_shapes(6, seed=31)
    assert torch.equal(outside_corner(source.data.images), outside_corner(clean.images))
    if marks == "none":
        assert torch.equal(source.data.images, clean.images) and (source.data.marks == -1).all()
    else:
        kinds = source.data.marks
        assert ((kinds >= 0) & (kinds < len(SHAPE_CLASSES))).all()
        if marks == "label":
            assert torch.equal(kinds, clean.labels[:, 0])
        assert torch.equal(corner(source.data.images), mark_patterns()[kinds][:, None].expand(-1, 3, -1, -1))
    assert torch.equal(open_images(f"shapes_shortcut:6:31:{marks}", preprocess).data.images, source.data.images)


def test_the_seed_alone_keeps_the_label_marks():
    assert torch.equal(open_images("shapes_shortcut:3:31", preprocess).data.marks, make_shapes(3, seed=31).labels[:, 0])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("shapes_shortcut:0", "N >= 1"),
        ("shapes_shortcut:x", "'shapes_shortcut:N'"),
        ("shapes_shortcut:3::none", "'shapes_shortcut:N:SEED:MARKS'"),
        ("shapes_shortcut:3:1:labels", r"MARKS must be one of \('label', 'random', 'none'\), got 'labels'"),
        ("shapes_shortcut:3:1:none:2", "'shapes_shortcut:N:SEED:MARKS'"),
        (
            "shapes_shortcut",
            r"neither 'shapes:N', a folder nor an image file \(the watermarked shapes are "
            r"'shapes_shortcut:N'\)",
        ),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        open_images(spec, preprocess)


def test_an_existing_path_wins_over_the_spec(tmp_path, monkeypatch):
    folder = tmp_path / "shapes_shortcut:2"
    folder.mkdir()
    image = make_shapes(1, seed=3).images[0]
    Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / "only.png")
    monkeypatch.chdir(tmp_path)
    source = open_images("shapes_shortcut:2", preprocess)
    assert source.kind == "folder" and source.ids == ["only.png"]
    assert not is_shapes("shapes_shortcut:2")
    monkeypatch.chdir(folder)
    assert is_shapes("shapes_shortcut:2") and categories_of("shapes_shortcut:2") == list(SHAPE_CLASSES)


class Corner(nn.Module):
    """A bare stand-in net (no preprocess of its own): class c's logit is the mean of channel c of a
    1x1 convolution over the top-left 16x16 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 6, 1)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.features.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[..., :16, :16].mean((2, 3))


def test_evaluate_takes_the_spec_with_a_bare_module_and_the_run_reopens(tmp_path):
    """No preprocess is needed (it is the shapes benchmark); the energy in the mask is the runner's
    over the spec's images, equal to `energy_in_mask` of `explain` on `make_shortcut_shapes`'s."""
    model = Corner()
    out = tmp_path / "run.csv"
    result = xw.evaluate(
        model,
        "shapes_shortcut:4:9",
        methods=["gradcam"],
        layers="features",
        metrics=["energy"],
        batch_size=3,
        progress=False,
        out=out,
    )
    data = open_images("shapes_shortcut:4:9", preprocess).data
    labels = data.labels[:, 0]
    maps = xw.explain(model, preprocess(data.images), "features", method="gradcam", target=labels.tolist()).map
    expected = xw.energy_in_mask(maps, data.masks[torch.arange(4), labels])
    assert result.table["energy"].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert result.table["class"].tolist() == labels.tolist()
    reopened = open_result(out)
    assert reopened.meta["images"] == "shapes_shortcut:4:9"
    assert torch.equal(open_images(reopened.meta["images"], preprocess).data.images, data.images)
