"""views.display_frame: the photo in the frame of the model's input, for every common kind of preprocess.

References are computed by hand: the photo is 300x240 (W x H); resizing its short side to 200 gives
250x200, and a centre crop of 159 starts at column round(91 / 2) = 46 (torchvision) or ⌊91 / 2⌋ = 45
(Hugging Face), row round(41 / 2) = ⌊41 / 2⌋ = 20.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.v2 as v2
from PIL import Image

from xcam_widgets import views
from xcam_widgets.models.bundle import Preprocess
from xcam_widgets.models.hf_models import ProcessorTransform
from xcam_widgets.shapes import nets

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CROP = 159
TORCHVISION_BOX = (46, 20, 46 + CROP, 20 + CROP)  # left, top, right, bottom in the 250x200 resized photo
HF_BOX = (45, 20, 45 + CROP, 20 + CROP)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """Smooth colour blobs: a one-pixel shift of the frame changes many values by several levels."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    return small.resize((300, 240), Image.Resampling.BICUBIC)


def _by_hand(photo: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(photo.resize((250, 200), Image.Resampling.BILINEAR).crop(box))


def _denormalised(x: torch.Tensor, mean=MEAN, std=STD) -> np.ndarray:
    pixels = (x.permute(1, 2, 0).numpy() * np.asarray(std) + np.asarray(mean)) * 255
    return pixels.round().clip(0, 255)


TORCHVISION_PIPELINES = {
    "v1 resize first": T.Compose([T.Resize(200), T.CenterCrop(CROP), T.ToTensor(), T.Normalize(MEAN, STD)]),
    "v1 ToTensor first": T.Compose(
        [T.ToTensor(), T.Resize(200, antialias=True), T.CenterCrop(CROP), T.Normalize(MEAN, STD)]
    ),
    "v1 nested, PILToTensor": T.Compose(
        [T.PILToTensor(), T.Compose([T.ConvertImageDtype(torch.float32), T.Resize(200)]), T.CenterCrop(CROP)]
    ),
    "v2 ToImage first": v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize(200),
            v2.CenterCrop(CROP),
            v2.Normalize(MEAN, STD),
        ]
    ),
    "v2 resize first": v2.Compose(
        [
            v2.Resize(200),
            v2.CenterCrop(CROP),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.ToPureTensor(),
        ]
    ),
}


@pytest.mark.parametrize("name", list(TORCHVISION_PIPELINES))
def test_torchvision_pipelines_show_the_crop_the_model_saw(name, photo):
    pipeline = TORCHVISION_PIPELINES[name]
    frame = views.display_frame(Preprocess(pipeline), photo, (CROP, CROP))
    assert frame.note is None
    np.testing.assert_array_equal(frame.pixels, _by_hand(photo, TORCHVISION_BOX))
    assert np.array_equal(views.display_image(Preprocess(pipeline), photo, (CROP, CROP)), frame.pixels)
    # The model's own input agrees with the frame far better than with the frame one pixel off.
    x = pipeline(photo).float()
    seen = (
        _denormalised(x) if "Normalize" in repr(pipeline) else x.permute(1, 2, 0).numpy() * (255 if x.max() <= 1 else 1)
    )
    shifted = _by_hand(photo, (47, 20, 47 + CROP, 20 + CROP))
    assert np.abs(seen - frame.pixels).mean() < 0.25 * np.abs(seen - shifted).mean()


class StandInProcessor:
    """The attributes of a Hugging Face image processor (CLIP-like: shortest edge, then centre crop);
    its call computes the pixel values by hand with HF's crop rule."""

    do_resize, size, resample = True, {"shortest_edge": 200}, 2
    do_center_crop, crop_size = True, {"height": CROP, "width": CROP}
    do_rescale, rescale_factor = True, 1 / 255
    do_normalize, image_mean, image_std = True, MEAN, STD

    def __call__(self, images: Image.Image, return_tensors: str) -> dict[str, torch.Tensor]:
        pixels = _by_hand(images, HF_BOX) / 255
        x = (torch.from_numpy(pixels).float() - torch.tensor(MEAN)) / torch.tensor(STD)
        return {"pixel_values": x.permute(2, 0, 1)[None]}


def test_a_hugging_face_processor_stand_in_shows_its_crop(photo):
    frame = views.display_frame(Preprocess(ProcessorTransform(StandInProcessor())), photo, (CROP, CROP))
    assert frame.note is None
    np.testing.assert_array_equal(frame.pixels, _by_hand(photo, HF_BOX))


def test_a_real_transformers_processor_shows_what_it_feeds_the_model(photo):
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 200}, crop_size={"height": CROP, "width": CROP}, resample=2
    )
    frame = views.display_frame(Preprocess(ProcessorTransform(processor)), photo, (CROP, CROP))
    assert frame.note is None
    np.testing.assert_array_equal(frame.pixels, _by_hand(photo, HF_BOX))
    # Oracle: the processor itself, without rescaling and normalising, gives the pixels in its frame.
    raw = processor(images=photo, do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"][0]
    seen = raw.permute(1, 2, 0).numpy()
    shifted = _by_hand(photo, TORCHVISION_BOX)
    assert np.abs(seen - frame.pixels).mean() < 0.25 * np.abs(seen - shifted).mean()


def test_an_unknown_step_shows_the_de_normalised_model_input_and_says_so(photo):
    box = (30, 10, 230, 210)
    pipeline = T.Compose([T.Lambda(lambda im: im.crop(box)), T.Resize((64, 64)), T.ToTensor(), T.Normalize(MEAN, STD)])
    frame = views.display_frame(Preprocess(pipeline), photo, (64, 64))
    assert frame.note is not None and "Lambda" in frame.note and "de-normalised" in frame.note
    expected = np.asarray(photo.crop(box).resize((64, 64), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(frame.pixels.astype(int) - expected).max() <= 1


def test_a_plain_function_that_squashes_the_photo_shows_the_photo(photo):
    """The shapes nets' preprocess: a bilinear resize to 64x64, then (x - 0.5) / 0.25."""
    frame = views.display_frame(nets.preprocess, photo, (64, 64))
    assert frame.note is None
    np.testing.assert_array_equal(frame.pixels, np.asarray(photo.resize((64, 64), Image.Resampling.BILINEAR)))


def test_a_plain_function_that_crops_shows_its_input_min_max_scaled(photo):
    def crop_and_scale(image: Image.Image) -> torch.Tensor:
        return T.functional.to_tensor(image.crop((100, 40, 164, 104))) * 4 - 2

    frame = views.display_frame(crop_and_scale, photo, (64, 64))
    assert frame.note is not None and "min-max" in frame.note
    crop = np.asarray(photo.crop((100, 40, 164, 104))).astype(float)
    expected = (crop - crop.min()) / (crop.max() - crop.min()) * 255
    assert np.abs(frame.pixels - expected).max() <= 1


def test_torchvision_weights_transforms_show_their_resize_and_crop(photo):
    classify = torchvision.models.ResNet18_Weights.DEFAULT.transforms()  # resize 256, crop 224
    frame = views.display_frame(Preprocess(classify), photo, (224, 224))
    assert frame.note is None
    expected = photo.resize((320, 256), Image.Resampling.BILINEAR).crop((48, 16, 272, 240))
    np.testing.assert_array_equal(frame.pixels, np.asarray(expected))
    segment = torchvision.models.segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.transforms()  # short side 520
    frame = views.display_frame(Preprocess(segment), photo, (520, 650))
    assert frame.note is None
    np.testing.assert_array_equal(frame.pixels, np.asarray(photo.resize((650, 520), Image.Resampling.BILINEAR)))


def test_a_random_crop_shows_the_input_the_model_got(photo):
    """A random step cannot be replayed: the view shows the very input the model got, when passed."""
    pipeline = T.Compose([T.RandomResizedCrop(64), T.ToTensor(), T.Normalize(MEAN, STD)])
    torch.manual_seed(0)
    x = pipeline(photo)
    frame = views.display_frame(Preprocess(pipeline), photo, (64, 64), model_input=x)
    assert frame.note is not None and "RandomResizedCrop" in frame.note
    np.testing.assert_array_equal(frame.pixels, _denormalised(x).astype(np.uint8))
