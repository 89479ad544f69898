"""xcam_widgets.evaluation.sources: torch Datasets as images, and images given back for display."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_images
from xcam_widgets.models.zoo import Preprocess
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.dataset import make_shapes

LAYER = nets.CAM_LAYER
KWARGS = dict(methods=["gradcam"], layers=LAYER, metrics=["deletion"], steps=2, batch_size=2, progress=False)
VALUES = ["score", "deletion", "predicted", "confidence"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(random_shapes_vgg: xw.ModelBundle) -> xw.ModelBundle:
    return random_shapes_vgg


class Pairs(Dataset):
    """(image, label) items from a list: what a user's Dataset gives."""

    def __init__(self, items, classes=None):
        self.items = items
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def shapes_pngs(folder, n=4, seed=5):
    data = make_shapes(n, seed=seed)
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(data.images):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"img{i}.png")
    return data


def test_a_dataset_of_tensors_gives_the_files_values_and_its_labels(bundle, tmp_path):
    """Float tensors in [0, 1] become 8-bit images, as a PNG stores them: the same values as the files."""
    data = shapes_pngs(tmp_path / "imgs")
    labels = data.labels[:, 0].tolist()
    dataset = Pairs([(data.images[i], labels[i]) for i in range(4)])
    table, summary = evaluate(bundle, dataset, target="top1", **KWARGS)
    files, _ = evaluate(bundle, tmp_path / "imgs", **KWARGS)
    assert table["image"].tolist() == [0, 1, 2, 3] and table["label"].tolist() == labels
    pd.testing.assert_frame_equal(table[VALUES], files[VALUES], rtol=1e-6)
    assert table["correct"].tolist() == [label == p for label, p in zip(labels, table["predicted"])]
    assert summary.set_index("metric").loc["correct", "mean"] == pytest.approx(table["correct"].mean())
    # target None explains the label where there is one.
    by_label, _ = evaluate(bundle, dataset, **KWARGS)
    assert by_label["class"].tolist() == labels


def test_a_dataset_of_pil_images_with_unknown_labels(bundle):
    data = make_shapes(3, seed=2)
    pils = [Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy()) for im in data.images]
    dataset = Pairs([(pils[0], None), (pils[1], 4), (pils[2], -1)], classes=list(nets.SHAPE_CLASSES))
    table, _ = evaluate(bundle.model, dataset, preprocess=nets.preprocess, **KWARGS)
    assert table["label"].tolist() == [-1, 4, -1]
    assert table["class"].tolist() == [table["predicted"][0], 4, table["predicted"][2]]  # label where known
    assert pd.isna(table["correct"][0]) and table["correct"][1] == (table["predicted"][1] == 4)
    assert set(table["class_name"]) <= set(nets.SHAPE_CLASSES)  # the Dataset's `classes`
    with pytest.raises(ValueError, match="no label"):
        evaluate(bundle, dataset, target="label", **KWARGS)


def test_bad_datasets_are_refused_before_any_batch(bundle):
    image = make_shapes(1, seed=0).images[0]
    cases = [
        (Pairs([((image - 0.5) / 0.25, 0)]), ValueError, "preprocessed"),  # normalised tensors
        (Pairs([image]), TypeError, r"\(image, label\) pairs"),
        (Pairs([(image, 1.5)]), TypeError, "label"),
        (Pairs([]), ValueError, "empty"),
    ]
    for dataset, error, message in cases:
        with pytest.raises(error, match=message):
            evaluate(bundle, dataset, **KWARGS)


def test_images_for_display_are_in_the_frame_of_the_model_input(tmp_path):
    data = shapes_pngs(tmp_path / "imgs", n=2)
    expected = (data.images[1].permute(1, 2, 0) * 255).round().byte().numpy()
    shapes = open_images("shapes:2:5", nets.preprocess)
    np.testing.assert_array_equal(shapes.image_for_display(1), expected)
    folder = open_images(tmp_path / "imgs", nets.preprocess)
    np.testing.assert_array_equal(folder.image_for_display("img1.png"), expected)
    np.testing.assert_array_equal(np.asarray(folder.image("img1.png")), expected)
    assert folder.position("img1.png") == 1 and shapes.position(1) == 1
    # A resize-and-crop pipeline: the display replays its geometry (torchvision is the oracle).
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    photo.save(tmp_path / "photo.png")
    geometry = T.Compose([T.Resize(24), T.CenterCrop(20)])
    crop = Preprocess(T.Compose([*geometry.transforms, T.ToTensor()]))
    source = open_images(tmp_path / "photo.png", crop)
    np.testing.assert_array_equal(source.image_for_display("photo.png"), np.asarray(geometry(photo)))
    dataset = open_images(Pairs([(data.images[0], 0), (photo, 1)]), crop)
    np.testing.assert_array_equal(dataset.image_for_display(1), np.asarray(geometry(photo)))
    for src, missing in ((shapes, 2), (folder, "nope.png"), (dataset, 5)):
        with pytest.raises(KeyError):
            src.image_for_display(missing)
